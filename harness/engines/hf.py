"""Generation with a live transformers causal LM: batched, left-padded, KV-cached, seedable.

:class:`HFEngine` runs its own small decoding loop (one prefill, then one token per step with a
``DynamicCache``) instead of ``model.generate``, so that seeding, stop strings and EOS handling are
exactly as documented here. It always uses the model's *current* weights (the trainer keeps training the
same object), runs under ``torch.inference_mode()`` with every module in eval mode, and restores each module's
train/eval flag afterwards.

Rules of a completion:

- **EOS** (the tokenizer's ``eos_token_id`` and the model's ``generation_config.eos_token_id``): the EOS id
  *is* the last id in ``ids`` (so that training on the completion teaches stopping); ``text`` excludes
  it; ``finish_reason == "stop"``.
- **Stop strings**: after each new token the tail of the decoded completion is searched for the stop
  strings. When one appears, generation of that completion ends; ``ids`` keeps every generated id up to
  and including the token with which the stop string completed (the ids are never re-tokenised), and
  ``text`` is the decoded completion cut just before the first occurrence of any stop string. So
  ``decode(ids)`` starts with ``text + s`` for the stop string ``s`` that fired, followed by at most the
  rest of the last token's text. ``finish_reason == "stop"``. Stop strings are matched in the text decoded
  with ``skip_special_tokens=True`` and only in the generated part (never in the prompt).
- Otherwise generation ends after ``max_new_tokens`` with ``finish_reason == "length"``; then
  ``text == decode(ids)``.

Decoding is greedy when ``temperature == 0`` (then the ``n`` completions of a prompt are identical and
computed once); otherwise it samples from ``softmax(logits / temperature)`` restricted to the nucleus
``top_p``. All randomness comes from a dedicated ``torch.Generator`` seeded with ``seed`` (fresh entropy
when ``seed is None``); the global torch RNG state is never read or changed. The same seed, prompts,
settings and ``batch_size`` give the same completions (on the same device and build); a prompt's samples
depend on the other prompts of the call, since rows share the generator.

Two decoders, chosen by ``decoder`` (``"auto"`` picks): ``"dynamic"`` (the loop above, a ``DynamicCache``
that grows; fastest on a CPU and for tiny models) and ``"static"`` (:mod:`harness.engines.hf_static`: a
fixed-shape cache with bucketed shapes and, on CUDA, the decode step replayed as a CUDA graph; greedy output
equals the dynamic path's and ``generate``'s). ``"auto"`` uses the static decoder on CUDA for models that
support transformers' ``StaticCache`` and falls back to the dynamic one if it fails.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from harness.core.context import truncate_at_stop
from harness.core.data import Completion, Prompt
from harness.core.errors import HarnessError
from harness.core.progress import generation_progress
from harness.engines import hf_static

warm_up = hf_static.warm_up  # the once-per-process CUDA warm-up hook (see hf_static.warm_up)

# Finished rows are dropped from the batch (and the KV cache) once at least this fraction of it is done.
_PRUNE_FRACTION = 0.25


class HFEngine:
    """The :class:`~harness.engines.base.Engine` protocol over a transformers causal LM (see module doc)."""

    def __init__(
        self, model: Any, tokenizer: Any, *, batch_size: int = 32, name: str = "hf", decoder: str = "auto"
    ) -> None:
        if batch_size < 1:
            raise HarnessError(f"engine '{name}': batch_size must be at least 1, got {batch_size}")
        if decoder not in ("auto", "static", "dynamic"):
            raise HarnessError(f"engine '{name}': decoder must be auto, static or dynamic, got '{decoder}'")
        self.decoder = decoder
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.name = name
        # A peft wrapper's forward hides the model's arguments; it passes them on, so ask the base model.
        params = _forward_params(model.get_base_model() if hasattr(model, "get_base_model") else model)
        # transformers >= 5.24 names the cache argument `cache` (and warns on `past_key_values`).
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._logits_kw: dict[str, int] = {}
        if "logits_to_keep" in params:
            self._logits_kw = {"logits_to_keep": 1}
        elif "num_logits_to_keep" in params:
            self._logits_kw = {"num_logits_to_keep": 1}

    # -- public API ------------------------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int = 1,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions for each prompt, in prompt order (see the module docstring for the rules)."""
        _check_args(self.name, n, temperature, top_p, max_new_tokens)
        if isinstance(stop, str):
            stop = (stop,)
        stops = tuple(s for s in stop if s)
        for i, p in enumerate(prompts):
            if not p.ids:
                raise HarnessError(
                    f"engine '{self.name}': prompt {i} has no token ids; build prompts with PromptEncoder.prompt()"
                )
        if not prompts:
            return []
        if max_new_tokens == 0:
            return [
                [Completion(prompt=p, ids=(), text="", finish_reason="length") for _ in range(n)]
                for p in prompts
            ]

        greedy = temperature == 0
        copies = 1 if greedy else n  # greedy completions of one prompt are identical: compute once
        rows = [pi for pi in range(len(prompts)) for _ in range(copies)]
        # Longest first, so each batch holds prompts of similar length (less padding); stable, so deterministic.
        order = sorted(range(len(rows)), key=lambda r: -len(prompts[rows[r]].ids))

        device = _device_of(self.model)
        generator = torch.Generator(device=device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))

        eos_ids = self._eos_ids()
        pad_id = self._pad_id(eos_ids)
        results: list[tuple[list[int], str]] = [([], "length") for _ in rows]
        # inference_mode, not no_grad: nothing generated here ever enters autograd, and it skips
        # version counters and view tracking (a few per cent per token on a CPU).
        with torch.inference_mode(), _eval_mode(self.model):
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]

                def report(finished: int, token: int, start: int = start) -> None:
                    generation_progress(start + finished, len(order), token, int(max_new_tokens))

                outs = self._generate_batch(
                    [prompts[rows[r]].ids for r in chunk],
                    greedy=greedy,
                    temperature=float(temperature),
                    top_p=float(top_p),
                    max_new_tokens=int(max_new_tokens),
                    stops=stops,
                    eos_ids=eos_ids,
                    pad_id=pad_id,
                    device=device,
                    generator=generator,
                    report=report,
                )
                for r, out in zip(chunk, outs, strict=True):
                    results[r] = out
                generation_progress(start + len(chunk), len(order))

        completions: list[list[Completion]] = [[] for _ in prompts]
        for r, (ids, reason) in enumerate(results):
            completions[rows[r]].append(self._completion(prompts[rows[r]], ids, reason, stops, eos_ids))
        if copies != n:
            completions = [[cs[0]] * n for cs in completions]
        return completions

    def warm(self, *, prompt_len: int = 64, max_new_tokens: int = 256, batch: int | None = None) -> float:
        """Pay this engine's one-off costs now, once per worker process, so that a cell's first call runs at
        warm speed: CUDA set-up (:func:`warm_up`) and, for the static decoder, the graph of the shape bucket
        of ``batch`` (default ``batch_size``) rows of ``prompt_len`` + ``max_new_tokens`` tokens and the
        kernels of its prefill. Returns the seconds spent; a no-op off CUDA."""
        device = _device_of(self.model)
        if device.type != "cuda":
            return 0.0
        t0 = time.perf_counter()
        warm_up(device)
        runner = self._static_runner(device)
        if runner is not None:
            rows = [(0,) * max(1, int(prompt_len))] * int(batch or self.batch_size)
            with torch.inference_mode(), _eval_mode(self.model):
                # Every row "finishes" at the first look (after a few tokens): the graph is captured, little decoded.
                runner.decode(rows, max_new_tokens=max(1, int(max_new_tokens)), pad_id=0,
                              pick=lambda logits: logits.argmax(-1), absorb=lambda i, new: True)
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    # -- internals -------------------------------------------------------------------------------------

    def _static_runner(self, device: torch.device) -> Any:
        """The static decoder's runner for this model, or None where the dynamic path is used."""
        if self.decoder == "dynamic" or (self.decoder == "auto" and device.type != "cuda"):
            return None
        if self.decoder == "auto" and not getattr(self.model, "_supports_static_cache", True):
            return None
        try:
            return hf_static.runner_for(self.model, graphs=hf_static.can_use_graphs(self.model, device))
        except Exception:  # noqa: BLE001 -- an architecture without a static cache: the dynamic path
            if self.decoder == "static":
                raise
            return None

    def _eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        tok_eos = getattr(self.tokenizer, "eos_token_id", None)
        if tok_eos is not None:
            ids.add(int(tok_eos))
        gen_cfg = getattr(self.model, "generation_config", None)
        cfg_eos = getattr(gen_cfg, "eos_token_id", None)
        if isinstance(cfg_eos, int):
            ids.add(cfg_eos)
        elif cfg_eos is not None:
            ids.update(int(i) for i in cfg_eos)
        return frozenset(ids)

    def _pad_id(self, eos_ids: frozenset[int]) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        if pad is not None:
            return int(pad)
        return min(eos_ids) if eos_ids else 0

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _completion(
        self, prompt: Prompt, ids: list[int], reason: str, stops: tuple[str, ...], eos_ids: frozenset[int]
    ) -> Completion:
        body = ids[:-1] if ids and ids[-1] in eos_ids else ids
        text = self._decode(body)
        if reason == "stop":
            text = truncate_at_stop(text, stops)
        return Completion(prompt=prompt, ids=tuple(ids), text=text, finish_reason=reason)

    def _generate_batch(
        self,
        batch: list[tuple[int, ...]],
        *,
        greedy: bool,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        stops: tuple[str, ...],
        eos_ids: frozenset[int],
        pad_id: int,
        device: torch.device,
        generator: torch.Generator,
        report: Callable[[int, int], None] | None = None,
    ) -> list[tuple[list[int], str]]:
        """Decode one batch; returns (generated ids, finish reason) per row, in batch order. ``report(rows
        finished, decode step)`` is called as rows finish and at each step (the evaluation's progress)."""
        size = len(batch)
        stop_window = max((len(s.encode("utf-8")) for s in stops), default=0) + 2
        generated: list[list[int]] = [[] for _ in range(size)]
        reasons = ["length"] * size
        counts = [0, 0]  # rows finished, decode steps

        def absorb(i: int, new: list[int]) -> bool:
            """Append row i's next ids up to its end; True once the row is finished."""
            for tok in new:
                generated[i].append(tok)
                if tok in eos_ids or (stops and _tail_has_stop(self._decode(generated[i][-stop_window:]), stops)):
                    reasons[i] = "stop"
                    counts[0] += 1
                    if report is not None:
                        report(counts[0], counts[1])
                    return True
            return False

        def pick(logits: torch.Tensor) -> torch.Tensor:
            counts[1] += 1
            if report is not None:
                report(counts[0], counts[1])
            return _pick(logits, greedy, temperature, top_p, generator)

        runner = self._static_runner(device)
        if runner is not None:
            try:
                runner.decode(batch, max_new_tokens=max_new_tokens, pad_id=pad_id, pick=pick, absorb=absorb)
                return [(generated[i], reasons[i]) for i in range(size)]
            except Exception:
                if self.decoder == "static" or any(generated):
                    raise
                self.decoder = "dynamic"  # this model has no usable static cache: never try again
        self._decode_dynamic(batch, max_new_tokens, pad_id, device, pick, absorb)
        return [(generated[i], reasons[i]) for i in range(size)]

    def _decode_dynamic(
        self,
        batch: list[tuple[int, ...]],
        max_new_tokens: int,
        pad_id: int,
        device: torch.device,
        pick: Any,
        absorb: Any,
    ) -> None:
        """The dynamic-cache loop: one host look per token, finished rows pruned from the cache."""
        size = len(batch)
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((size, width), pad_id, dtype=torch.long)
        attention = torch.zeros((size, width), dtype=torch.long)
        for i, ids in enumerate(batch):
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[i, width - len(ids) :] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        # Left padding: real tokens are numbered from 0 whatever the padding before them.
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        next_pos = positions[:, -1:] + 1
        # Without padding (equal-length prompts, e.g. the n samples of one prompt) the model needs no mask
        # and no positions: it takes its causal fast path, as a bare loop does.
        unpadded = bool(attention.all())

        active = list(range(size))  # row of the current (possibly pruned) batch -> index into `batch`
        alive = [True] * size  # per row of the current batch
        cache = _new_cache(self.model)
        step_ids, step_pos = input_ids, positions

        for step in range(max_new_tokens):
            masks = {} if unpadded else {"attention_mask": attention, "position_ids": step_pos}
            out = self.model(input_ids=step_ids, use_cache=True, **{self._cache_kw: cache}, **masks,
                             **self._logits_kw)
            logits = out.logits[:, -1, :]
            next_tokens = pick(logits)
            tokens = next_tokens.tolist()

            for r, tok in enumerate(tokens):
                if alive[r] and absorb(active[r], [tok]):
                    alive[r] = False

            n_alive = sum(alive)
            if n_alive == 0 or step == max_new_tokens - 1:
                break
            dead = len(alive) - n_alive
            if dead and dead >= _PRUNE_FRACTION * len(alive) and hasattr(cache, "batch_select_indices"):
                keep = [r for r, a in enumerate(alive) if a]
                index = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(index)
                next_tokens, attention, next_pos = next_tokens[index], attention[index], next_pos[index]
                active = [active[r] for r in keep]
                alive = [True] * len(keep)
            else:
                alive_mask = torch.tensor(alive, dtype=torch.bool, device=device)
                next_tokens = torch.where(alive_mask, next_tokens, torch.full_like(next_tokens, pad_id))
            step_ids = next_tokens[:, None]
            if not unpadded:
                attention = torch.cat([attention, attention.new_ones((attention.shape[0], 1))], dim=1)
                step_pos, next_pos = next_pos, next_pos + 1


def _pick(
    logits: torch.Tensor, greedy: bool, temperature: float, top_p: float, generator: torch.Generator
) -> torch.Tensor:
    """The next token of each row: argmax, or a sample from the temperature-scaled nucleus."""
    if greedy:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if top_p < 1.0:
        sorted_scores, sorted_idx = scores.sort(dim=-1, descending=True)
        probs = sorted_scores.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        # Keep the smallest prefix whose mass reaches top_p (the most likely token is always kept).
        sorted_scores = sorted_scores.masked_fill(mass_before >= top_p, float("-inf"))
        scores = torch.full_like(scores, float("-inf")).scatter(-1, sorted_idx, sorted_scores)
    probs = scores.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def _tail_has_stop(tail: str, stops: tuple[str, ...]) -> bool:
    return any(s in tail for s in stops)


def _check_args(name: str, n: int, temperature: float, top_p: float, max_new_tokens: int) -> None:
    if n < 1:
        raise HarnessError(f"engine '{name}': n must be at least 1, got {n}")
    if temperature < 0:
        raise HarnessError(f"engine '{name}': temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise HarnessError(f"engine '{name}': top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 0:
        raise HarnessError(f"engine '{name}': max_new_tokens must be >= 0, got {max_new_tokens}")


def _forward_params(model: Any) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError, AttributeError):
        return set()


def _device_of(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _new_cache(model: Any) -> Any:
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except (TypeError, AttributeError):  # older transformers: no config argument
        return DynamicCache()


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Every module in eval mode inside; each module's own train/eval flag restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
