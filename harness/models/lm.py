"""A handle on one model for the rest of the harness: generate, and score log-probs.

Benchmarks and samplers use this narrow protocol (lm-eval's ``LM`` idea) rather than tensors: the
trainer keeps training ``model`` in place, so a handle always reflects the current weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from collections.abc import Sequence as Seq
from typing import Any

import torch

from harness.core.cache import weight_versions
from harness.core.data import Completion, Prompt, Sequence
from harness.models.logprobs import sequence_logprobs
from harness.models.text import PromptEncoder


class LM:
    """``model`` + ``tokenizer`` + a generation ``engine``.

    ``adapters_off=True`` makes the handle the base model of a peft (LoRA) ``model``: every call runs
    with the adapters disabled (the reference of a LoRA run). An engine with its own copy of the weights
    (``engine.own_weights``, e.g. vLLM) is synced from ``model`` whenever it is read after the weights
    changed or after another handle used it (see :mod:`harness.engines.base`), so ``lm.engine`` never
    generates from stale or foreign weights.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        engine: Any = None,
        *,
        name: str = "policy",
        adapters_off: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.adapters_off = adapters_off
        self.engine = engine
        self.encoder = PromptEncoder(tokenizer)
        # the model's context (tokens): training data longer than this is refused before training starts
        self.encoder.context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.syncs = 0  # how many times an own-weights engine was reloaded from the model

    def _scope(self) -> contextlib.AbstractContextManager[Any]:
        return self.model.disable_adapter() if self.adapters_off else contextlib.nullcontext()

    def _versions(self) -> tuple[int, ...]:
        """Version counters of the weights this handle generates from (LoRA's, unless adapters are off)."""
        return weight_versions(p for n, p in self.model.named_parameters() if not (self.adapters_off and "lora_" in n))

    @property
    def engine(self) -> Any:
        """The generation engine; one with its own weights is synced first unless it holds this handle's
        weights as they are now (``engine.holder``: which handle, at which weight versions)."""
        engine = self._engine
        if engine is not None and getattr(engine, "own_weights", False):
            state = (id(self), self._versions())
            if getattr(engine, "holder", None) != state:
                engine.sync(self.model, self.tokenizer, adapters_off=self.adapters_off)
                engine.holder = state
                self.syncs += 1
        return engine

    @engine.setter
    def engine(self, engine: Any) -> None:
        """An own-weights engine that no handle holds yet was just built from this model's weights.

        One such engine may serve several handles (policy and reference share one vLLM instance per
        cell); it then reloads whenever the handle using it changes, once per phase rather than per call.
        An engine assigned again (e.g. after LoRA wraps the model) keeps its holder, so it syncs on its
        next use if the weights moved meanwhile (a warm start).
        """
        self._engine = engine
        if engine is not None and getattr(engine, "own_weights", False) and getattr(engine, "holder", None) is None:
            engine.holder = (id(self), self._versions())

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @contextlib.contextmanager
    def scoring(self) -> Iterator[None]:
        """No gradients, eval mode and the LM's scope (e.g. LoRA adapters off); the train flag is restored."""
        was_training = self.model.training
        self.model.eval()
        try:
            with self._scope(), torch.no_grad():
                yield
        finally:
            self.model.train(was_training)

    def generate(self, prompts: Seq[Prompt], **kwargs: Any) -> list[list[Completion]]:
        """Completions from the engine (see :class:`harness.engines.base.Engine`)."""
        if self.engine is None:
            raise RuntimeError(f"{self.name} has no generation engine")
        with self._scope():
            return self.engine.generate(prompts, **kwargs)

    def logprobs(self, seqs: Seq[Sequence], *, batch_size: int = 16, mean: bool = False) -> torch.Tensor:
        """Summed (or mean) response log-probs of each sequence, ``[N]`` on the CPU, no gradients."""
        out = []
        with self.scoring():
            for start in range(0, len(seqs), batch_size):
                t = sequence_logprobs(self.model, seqs[start : start + batch_size], pad_id=self.pad_id)
                out.append((t.mean() if mean else t.sum()).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def next_token_logprobs(self, prompts: Seq[Prompt], *, batch_size: int = 64) -> torch.Tensor:
        """Log-probs of the next token after each prompt over the whole vocabulary, ``[N, V]`` on the CPU."""
        out = []
        with self.scoring():
            for start in range(0, len(prompts), batch_size):
                chunk = prompts[start : start + batch_size]
                width = max(len(p.ids) for p in chunk)
                ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
                attn = torch.zeros_like(ids)
                for i, p in enumerate(chunk):  # left-pad so the last position is each prompt's end
                    ids[i, width - len(p.ids) :] = torch.tensor(p.ids)
                    attn[i, width - len(p.ids) :] = 1
                pos = (attn.cumsum(-1) - 1).clamp(min=0)
                logits = self.model(
                    input_ids=ids.to(self.device),
                    attention_mask=attn.to(self.device),
                    position_ids=pos.to(self.device),
                    use_cache=False,
                ).logits[:, -1, :]
                out.append(torch.log_softmax(logits.float(), -1).cpu())
        return torch.cat(out)
