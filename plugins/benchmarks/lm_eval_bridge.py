"""Any lm-evaluation-harness task on the cell's model: ``lm-eval`` (``--set task=<name>``) and
``lm-eval:<task>`` for a few common tasks.

Source: EleutherAI lm-evaluation-harness (``lm_eval`` >= 0.4.8; written against 0.4.13): the task runs
through ``lm_eval.simple_evaluate(model=<LM instance>, tasks=[task], ...)`` with OUR model wrapped as an
``lm_eval.api.model.LM`` subclass (:func:`harness_lm_class`), so lm-eval does the prompting, few-shot
sampling, filtering and metrics exactly as for its own backends.

**Registered names.** ``lm-eval`` (generic; ``task`` is required) and ``lm-eval:<task>`` for
:data:`COMMON_TASKS` (gsm8k, hellaswag, arc_easy, arc_challenge, mmlu, truthfulqa_mc2, winogrande, ifeval,
humaneval). Names must be registered before anything runs, so every other task (and any task defined
by a YAML in ``include_path``) goes through ``--benchmark lm-eval --set task=<name>``. The specs are
registered whether or not lm-eval is installed: the module imports nothing from it until a task runs,
and then a missing install is the one-line error ``pip install 'alignment-harness[lm-eval]'``.

**The model adapter** mirrors lm-eval's ``HFLM`` (``lm_eval/models/huggingface.py``):

- tokenisation: ``tokenizer.encode(text)`` with the tokenizer's default special tokens, except that a
  text already starting with the BOS string is encoded without them. ``loglikelihood`` moves trailing
  whitespace of the context to the continuation, encodes ``context + continuation`` and ``context``,
  and takes the continuation ids as the whole's ids after the context's (HFLM's causal rule; the two
  parts are split on the context's token count, not encoded on their own). An empty context is
  replaced by the prefix token (BOS, else EOS), as in ``LM.loglikelihood``. Inputs longer than
  ``max_length + 1`` tokens lose tokens on the left.
- ``loglikelihood``: the continuation's summed log-prob is ``harness.models.logprobs.sequence_logprobs`` of
  ``Sequence(Prompt(context ids), continuation ids)``, i.e. what ``ctx.lm.logprobs`` returns, computed
  in batches of ``batch_size`` (longest first) under ``torch.no_grad`` with the model in eval mode;
  ``is_greedy`` is true when every continuation token is the argmax of its position's logits.
- ``loglikelihood_rolling``: lm-eval's own ``get_rolling_token_windows`` / ``make_disjoint_window``
  (prefix token, windows of ``max_length``, context length 1), each window scored as above and summed.
- ``generate_until``: ``ctx.engine.generate`` (so any engine: hf, vllm, openai). Gen kwargs are
  normalised as lm-eval 0.4.13 does: ``until`` (a string or a list), ``max_gen_toks`` (aliases
  ``max_new_tokens``, ``max_tokens``, ``max_completion_tokens``; default ``max_gen_toks`` = 256, HFLM's),
  ``do_sample`` / ``temperature`` (greedy unless ``do_sample`` is true, or unset with a temperature > 0),
  ``top_p``. The context is left-truncated to ``max_length - max_gen_toks`` tokens, the engine stops at
  EOS and at the ``until`` strings, and the text is cut at each ``until`` string again afterwards
  (``postprocess_generated_text``), so engines that ignore stop strings agree. Requests with equal
  settings go to the engine in one call; the engine seed is the evaluation's seed.
- ``max_length``: the ``max_length`` param, else the model config's ``n_positions`` /
  ``max_position_embeddings`` / ``n_ctx``, else the tokenizer's ``model_max_length``, else 2048
  (lm-eval's ``resolve_max_length``).
- ``apply_chat_template(history)``: ``tokenizer.apply_chat_template(..., tokenize=False)``; a template
  that refuses the system role gets it merged into the first user turn (as HFLM does).

**Run settings.** ``simple_evaluate`` with ``num_fewshot`` (None: the task's own), ``limit`` (documents
per task; our ``limit``), ``apply_chat_template``, ``fewshot_as_multiturn``, ``system_instruction``,
``gen_kwargs`` (a ``k=v,k=v`` string applied to every generate task, as lm-eval's ``--gen_kwargs``),
``confirm_run_unsafe_code`` (needed for code-execution tasks such as humaneval), ``bootstrap_iters``,
``log_samples`` and lm-eval's default seeds (random 0, numpy/torch/few-shot 1234, so few-shot examples
match published runs). ``simple_evaluate`` re-seeds Python's, numpy's and torch's global RNGs; we
restore all three (and CUDA's) afterwards so training after an evaluation is unaffected. Tasks come
from ``TaskManager(include_path=include_path, include_defaults=include_defaults)``, kept per process;
indexing lm-eval's built-in tasks takes 15-30 s, so ``include_defaults=false`` with an ``include_path``
of your own YAMLs starts at once.

**Offline.** Built-in tasks download their data from the Hub. Without it, point a task YAML at local
files (``dataset_path: json`` and ``dataset_kwargs: {data_files: {test: /abs/test.jsonl, ...}}``; use
absolute paths, ``datasets`` resolves relative ones against the working directory) in a directory given
as ``include_path``. Dataset loading failures become one-line errors saying so. lm-eval's built-in
``humaneval`` cannot run offline at all (its metric script comes from the Hub).

**Results.** Every numeric ``"<metric>,<filter>"`` entry of ``results[task]`` becomes a metric under
that key (``exact_match,strict-match``, ``exact_match_stderr,strict-match``, ``acc,none``...); entries of
subtasks and groups (mmlu) are prefixed ``<subtask>/``; ``n_samples`` is the number of documents
evaluated; non-numeric stderrs ("N/A") are left out. With ``log_samples`` each logged sample becomes a
record: ``task, doc_id, filter, target, prompt`` (the first request's context), ``arguments`` (each
request's arguments after the context: continuations or gen kwargs), ``resps, filtered_resps`` and the
sample's metric values; the documents themselves are not copied.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import (
    BenchmarkSpec,
    EvalContext,
    EvalResult,
    HarnessError,
    MetricSpec,
    Prompt,
    Sequence,
    hookimpl,
    param,
)
from harness.lm import sequence_logprobs

NAME = "lm-eval"
PAPER = "EleutherAI lm-evaluation-harness (Gao et al., doi:10.5281/zenodo.5371628)"
INSTALL_HINT = "pip install 'alignment-harness[lm-eval]'"
COMMON_TASKS = (
    "gsm8k", "hellaswag", "arc_easy", "arc_challenge", "mmlu", "truthfulqa_mc2", "winogrande", "ifeval", "humaneval",
)
DEFAULT_MAX_LENGTH = 2048  # lm-eval's, when neither the config nor the tokenizer says
DEFAULT_MAX_GEN_TOKS = 256  # HFLM.max_gen_toks
_TOKENIZER_INFINITY = 1000000000000000019884624838656
_SAMPLE_KEYS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics", "doc_hash",
                "prompt_hash", "target_hash"}


@dataclass(frozen=True)
class LMEvalTaskParams:
    """Settings of one lm-eval run (the task is fixed by the benchmark name)."""

    num_fewshot: int | None = param(None, "few-shot examples (None: the task's default)")
    limit: int | None = param(None, "evaluate only the first N documents of each task")
    include_path: str | None = param(None, "directory of extra task YAMLs (e.g. local-data copies of tasks)")
    include_defaults: bool = param(True, "also index lm-eval's built-in tasks (takes 15-30 s)")
    apply_chat_template: bool = param(False, "render prompts with the model's chat template")
    fewshot_as_multiturn: bool = param(True, "with a chat template: shots as user/assistant turns")
    system_instruction: str | None = param(None, "system instruction prepended to every prompt")
    gen_kwargs: str | None = param(None, "k=v,k=v overriding every generate task's settings (lm-eval --gen_kwargs)")
    max_gen_toks: int = param(DEFAULT_MAX_GEN_TOKS, "generation cap when a task sets none (HFLM default 256)", ge=1)
    max_length: int | None = param(None, "context window in tokens (None: from the model config, else 2048)")
    batch_size: int = param(16, "sequences per forward pass when scoring log-likelihoods", ge=1)
    confirm_run_unsafe_code: bool = param(False, "allow tasks that execute model-written code (humaneval...)")
    bootstrap_iters: int = param(100000, "bootstrap iterations for non-mean stderrs (0: none)")
    log_samples: bool = param(True, "keep per-document samples as records")


@dataclass(frozen=True)
class LMEvalParams(LMEvalTaskParams):
    """Settings of the generic ``lm-eval`` benchmark: any task by name."""

    task: str = param("", "lm-eval task (or group) name, e.g. gsm8k, or one defined in include_path")


# -- lm-eval, lazily -------------------------------------------------------------------------------------


def _import_lm_eval() -> Any:
    try:
        import lm_eval
        import lm_eval.api.model  # noqa: F401
        import lm_eval.tasks  # noqa: F401
        import lm_eval.utils  # noqa: F401
    except ImportError as exc:
        raise HarnessError(f"benchmark '{NAME}' needs lm-eval, which is not installed ({exc}); {INSTALL_HINT}") from None
    return lm_eval


@functools.cache
def _task_manager(include_path: str | None, include_defaults: bool) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=include_defaults)


def resolve_max_length(model: Any, tokenizer: Any, default: int = DEFAULT_MAX_LENGTH) -> int:
    """lm-eval's rule: config ``n_positions`` / ``max_position_embeddings`` / ``n_ctx``, then the
    tokenizer's ``model_max_length``, then ``default``."""
    config = getattr(model, "config", None)
    cfg = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if value is not None:
            return int(value)
    mml = getattr(tokenizer, "model_max_length", None)
    if mml is not None and mml != _TOKENIZER_INFINITY:
        return int(mml)
    return default


def normalize_gen_kwargs(gen_kwargs: dict[str, Any], default_max_gen_toks: int) -> dict[str, Any]:
    """``until`` (list), ``max_gen_toks``, ``temperature`` (0 = greedy) and ``top_p``, as lm-eval 0.4.13's
    ``normalize_gen_kwargs`` + HFLM read them."""
    kw = dict(gen_kwargs)
    until = kw.pop("until", None)
    until = [] if until is None else [until] if isinstance(until, str) else list(until)
    max_gen_toks = next(
        (kw.pop(k) for k in ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")
         if kw.get(k) is not None),
        default_max_gen_toks,
    )
    do_sample = kw.get("do_sample")
    temperature = float(kw.get("temperature", 0.0) or 0.0)
    sample = do_sample is True or (do_sample is None and temperature > 0)
    if sample and "temperature" not in kw:
        temperature = 1.0  # transformers' default when sampling without a temperature
    return {
        "until": [s for s in until if isinstance(s, str)],
        "max_gen_toks": int(max_gen_toks),
        "temperature": temperature if sample else 0.0,
        "top_p": float(kw.get("top_p", 1.0) or 1.0) if sample else 1.0,
    }


@contextlib.contextmanager
def _preserved_rng() -> Iterator[None]:
    """Restore Python's, numpy's, torch's (and CUDA's) global RNG states after the block."""
    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@functools.cache
def harness_lm_class() -> type:
    """The ``lm_eval.api.model.LM`` subclass over an :class:`EvalContext` (built on first use: lazy import)."""
    _import_lm_eval()
    from lm_eval.api.model import LM as LMEvalLM
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    class HarnessLM(LMEvalLM):
        """lm-eval's model API over the harness's engine and log-prob scorer (see the module docstring)."""

        def __init__(self, ctx: EvalContext, *, max_length: int | None = None, max_gen_toks: int = 256,
                     batch_size: int = 16) -> None:
            super().__init__()
            self.ctx = ctx
            self.tokenizer = ctx.encoder.tokenizer
            model = getattr(ctx.lm, "model", None)
            self._max_length = int(max_length) if max_length else resolve_max_length(model, self.tokenizer)
            self.max_gen_toks = int(max_gen_toks)
            self.batch_size = max(1, int(batch_size))

        # -- tokenisation (HFLM) --------------------------------------------------------------------

        @property
        def max_length(self) -> int:
            return self._max_length

        @property
        def prefix_token_id(self) -> int:
            bos = self.tokenizer.bos_token_id
            return int(bos if bos is not None else self.tokenizer.eos_token_id)

        def tok_encode(self, text: str) -> list[int]:
            bos = self.tokenizer.bos_token
            if bos and text.startswith(bos):
                return list(self.tokenizer.encode(text, add_special_tokens=False))
            return list(self.tokenizer.encode(text))

        def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
            """Context and continuation ids as lm-eval's causal ``_encode_pair`` (+ the empty-context rule)."""
            if context == "":
                cont = list(self.tokenizer.encode(continuation, add_special_tokens=False))
                prefix = self.prefix_token_id
                return ([prefix], cont) if not cont or cont[0] != prefix else (cont[:1], cont[1:])
            n_spaces = len(context) - len(context.rstrip())
            if n_spaces > 0:
                continuation = context[-n_spaces:] + continuation
                context = context[:-n_spaces]
            whole = self.tok_encode(context + continuation)
            ctx_ids = self.tok_encode(context)
            return ctx_ids, whole[len(ctx_ids):]

        # -- scoring ------------------------------------------------------------------------------------

        def _score(self, pairs: list[tuple[list[int], list[int]]], greedy: bool) -> list[tuple[float, bool]]:
            """Summed log-prob (and greedy flag) of each continuation after its context, in input order."""
            lm = self.ctx.lm
            if lm is None or getattr(lm, "model", None) is None:
                raise HarnessError(f"benchmark '{NAME}': log-likelihood tasks need the model's weights (ctx.lm)")
            seqs = []
            for ctx_ids, cont in pairs:
                whole = (list(ctx_ids) + list(cont))[-(self.max_length + 1):]
                prompt_ids = whole[: len(whole) - len(cont)]
                if not prompt_ids:
                    raise HarnessError(f"benchmark '{NAME}': a continuation of {len(cont)} tokens leaves no context "
                                       f"within max_length={self.max_length}")
                seqs.append(Sequence(Prompt(tuple(prompt_ids)), tuple(cont)))
            order = sorted(range(len(seqs)), key=lambda i: -(len(seqs[i].prompt.ids) + len(seqs[i].response)))
            out: list[tuple[float, bool]] = [(0.0, True)] * len(seqs)
            with lm.scoring():  # eval mode, no gradients, the LM's scope (e.g. LoRA adapters off for a reference)
                for start in range(0, len(order), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    batch = [seqs[i] for i in idx]
                    t = sequence_logprobs(lm.model, batch, pad_id=lm.pad_id, with_logits=greedy)
                    sums = t.sum().double().cpu().tolist()
                    for row, i in enumerate(idx):
                        is_greedy = True
                        if greedy and t.logits is not None:
                            n = len(batch[row].response)
                            top = t.logits[row, :n].argmax(-1).cpu().tolist()
                            is_greedy = top == list(batch[row].response)
                        out[i] = (float(sums[row]), bool(is_greedy))
            return out

        def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
            pairs = [self.encode_pair(*req.args) for req in requests]
            results = self._score(pairs, greedy=True)
            for req, res in zip(requests, results, strict=True):
                self.cache_hook.add_partial("loglikelihood", req.args, res)
            return results

        def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
            windows: list[tuple[list[int], list[int]]] = []
            owner: list[int] = []
            for i, req in enumerate(requests):
                (text,) = req.args
                for ctx_ids, cont in map(make_disjoint_window, get_rolling_token_windows(
                        token_list=self.tok_encode(text), prefix_token=self.prefix_token_id,
                        max_seq_len=self.max_length, context_len=1)):
                    windows.append((list(ctx_ids), list(cont)))
                    owner.append(i)
            totals = [0.0] * len(requests)
            for i, (logp, _) in zip(owner, self._score(windows, greedy=False), strict=True):
                totals[i] += logp
            for req, total in zip(requests, totals, strict=True):
                self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
            return totals

        # -- generation ---------------------------------------------------------------------------------

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            if self.ctx.engine is None:
                raise HarnessError(f"benchmark '{NAME}': generation tasks need a generation engine")
            groups: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
            for i, req in enumerate(requests):
                context, gen_kwargs = req.args
                kw = normalize_gen_kwargs(gen_kwargs or {}, self.max_gen_toks)
                groups.setdefault(json.dumps(kw, sort_keys=True), []).append((i, context, kw))
            out = [""] * len(requests)
            for items in groups.values():
                kw = items[0][2]
                room = self.max_length - kw["max_gen_toks"]
                if room <= 0:
                    raise HarnessError(f"benchmark '{NAME}': max_gen_toks={kw['max_gen_toks']} leaves no room for the "
                                       f"prompt within max_length={self.max_length}")
                prompts = [Prompt(tuple(self.tok_encode(context)[-room:]), text=context) for _, context, _ in items]
                comps = self.ctx.generate(prompts, temperature=kw["temperature"], top_p=kw["top_p"],
                                          max_new_tokens=kw["max_gen_toks"], stop=tuple(kw["until"]),
                                          total=len(requests), desc=f"benchmark '{NAME}'")
                for (i, _, _), cs in zip(items, comps, strict=True):
                    out[i] = text = cs[0].text  # cut before the first of the until strings
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
            return out

        # -- chat templates -----------------------------------------------------------------------------

        @property
        def tokenizer_name(self) -> str:
            return str(getattr(self.tokenizer, "name_or_path", "") or "harness").replace("/", "__")

        def chat_template(self, chat_template: bool | str = False) -> str | None:
            template = getattr(self.tokenizer, "chat_template", None)
            if isinstance(template, dict):
                name = chat_template if isinstance(chat_template, str) else "default"
                return template.get(name) or next(iter(template.values()), "")
            return template or ""

        def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
            def render(history: list[dict[str, str]]) -> str:
                return self.tokenizer.apply_chat_template(
                    history, tokenize=False, add_generation_prompt=add_generation_prompt,
                    continue_final_message=not add_generation_prompt,
                )

            try:
                return render(chat_history)
            except Exception:  # noqa: BLE001 - jinja's TemplateError: e.g. no system role
                if not chat_history or chat_history[0]["role"] != "system" or len(chat_history) < 2:
                    raise
                system, first, *rest = chat_history
                merged = {"role": first["role"], "content": system["content"] + "\n\n" + first["content"]}
                return render([merged, *rest])

    return HarnessLM


# -- results -> metrics and records ----------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def map_results(results: dict[str, Any], task: str) -> dict[str, float]:
    """``results[task]["<metric>,<filter>"]`` -> metrics (see the module docstring)."""
    metrics: dict[str, float] = {}
    tables = {**results.get("results", {}), **results.get("groups", {})}
    for name, entries in tables.items():
        prefix = "" if name == task else f"{name}/"
        for key, value in entries.items():
            if "," not in key or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metrics[prefix + key] = float(value)
    counts = results.get("n-samples", {})
    effective = [c.get("effective") for c in counts.values() if isinstance(c, dict)]
    if effective and all(isinstance(e, int) for e in effective):
        metrics["n_samples"] = float(sum(effective))
    return metrics


def map_samples(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per logged sample (see the module docstring)."""
    records = []
    for task, samples in (results.get("samples") or {}).items():
        for s in samples:
            args = s.get("arguments") or []
            first = args[0] if args else ()
            rec: dict[str, Any] = {
                "item_id": f"{task}/{s.get('doc_id')}" + (f"/{s['filter']}" if s.get("filter") else ""),
                "task": task,
                "doc_id": s.get("doc_id"),
                "filter": s.get("filter"),
                "target": _json_safe(s.get("target")),
                "prompt": first[0] if first else None,
                "arguments": _json_safe([list(a)[1:] for a in args]),
                "resps": _json_safe(s.get("resps")),
                "filtered_resps": _json_safe(s.get("filtered_resps")),
            }
            for key, value in s.items():
                if key not in _SAMPLE_KEYS and key not in rec:
                    rec[key] = _json_safe(value)
            records.append(rec)
    return records


# -- the benchmark ---------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def evaluate(ctx: EvalContext, *, task: str | None = None) -> EvalResult:
    """Run one lm-eval task (or group) on the cell's model and map its results (see the module docstring)."""
    p = ctx.params
    task = task or getattr(p, "task", "")
    where = f"benchmark '{NAME}:{task}'" if task else f"benchmark '{NAME}'"
    if not task:
        raise HarnessError(f"{where}: name the task: --set task=<lm-eval task>, e.g. --set task=gsm8k")
    if p.include_path is not None and not Path(p.include_path).expanduser().is_dir():
        raise HarnessError(f"{where}: include_path {p.include_path} is not a directory of task YAMLs")
    lm_eval = _import_lm_eval()
    include = str(Path(p.include_path).expanduser().resolve()) if p.include_path else None
    if not include and not p.include_defaults:
        raise HarnessError(f"{where}: include_defaults=false needs an include_path with your task YAMLs")
    manager = _task_manager(include, p.include_defaults)
    if task not in manager.all_tasks:
        from harness import did_you_mean

        raise HarnessError(
            f"{where}: lm-eval knows no task '{task}'{did_you_mean(task, manager.all_tasks)}"
            + ("" if p.include_defaults else " (include_defaults=false: only include_path is searched)")
        )
    lm = harness_lm_class()(ctx, max_length=p.max_length, max_gen_toks=p.max_gen_toks, batch_size=p.batch_size)
    ctx.progress(f"{where}: running lm-eval {getattr(lm_eval, '__version__', '?')}"
                 + (f" on {ctx.limit} documents" if ctx.limit is not None else ""))
    try:
        with _preserved_rng():
            results = lm_eval.simple_evaluate(
                model=lm, tasks=[task], num_fewshot=p.num_fewshot, limit=ctx.limit, task_manager=manager,
                apply_chat_template=p.apply_chat_template, fewshot_as_multiturn=p.fewshot_as_multiturn,
                system_instruction=p.system_instruction, gen_kwargs=p.gen_kwargs,
                confirm_run_unsafe_code=p.confirm_run_unsafe_code, bootstrap_iters=p.bootstrap_iters,
                log_samples=p.log_samples,
            )
    except HarnessError:
        raise
    except (ConnectionError, FileNotFoundError, OSError) as exc:
        raise HarnessError(
            f"{where}: the task's data could not be loaded ({_first_line(exc)}); offline, copy the task into a YAML "
            f"with dataset_path: json and local data_files and pass its directory as --set include_path=DIR"
        ) from None
    if results is None:  # a non-zero rank
        return EvalResult(metrics={})
    metrics = map_results(results, task)
    if not metrics:
        raise HarnessError(f"{where}: lm-eval returned no numeric results for '{task}'")
    for name, value in list(metrics.items()):
        if math.isnan(value):
            del metrics[name]
    return EvalResult(metrics=metrics, records=map_samples(results) if p.log_samples else [])


METRICS = (MetricSpec("*_stderr", lower_is_better=True, role="diagnostic"),)
"""lm-eval's metrics differ per task (acc, acc_norm, exact_match, ...): the leaderboard reads their
direction from the name; the standard errors are diagnostics."""


def make_spec(task: str | None = None) -> BenchmarkSpec:
    """``lm-eval`` (task=None: the generic benchmark) or ``lm-eval:<task>``."""
    if task is None:
        return BenchmarkSpec(
            name=NAME,
            description="Any lm-evaluation-harness task on the cell's model: --set task=<name> "
            "(include_path for local task YAMLs)",
            paper=PAPER,
            evaluate=evaluate,
            params=LMEvalParams,
            version="1",
            metrics=METRICS,
        )
    return BenchmarkSpec(
        name=f"{NAME}:{task}",
        description=f"lm-evaluation-harness task '{task}' on the cell's model (extra: lm-eval)",
        paper=PAPER,
        evaluate=functools.partial(evaluate, task=task),
        params=LMEvalTaskParams,
        version="1",
        metrics=METRICS,
    )


@hookimpl
def register_benchmarks(register: Callable[[BenchmarkSpec], None]) -> None:
    """Register ``lm-eval`` and ``lm-eval:<task>`` for each of :data:`COMMON_TASKS`."""
    register(make_spec())
    for task in COMMON_TASKS:
        register(make_spec(task))


__all__ = [
    "COMMON_TASKS",
    "INSTALL_HINT",
    "LMEvalParams",
    "LMEvalTaskParams",
    "harness_lm_class",
    "make_spec",
    "map_results",
    "map_samples",
    "normalize_gen_kwargs",
    "register_benchmarks",
    "resolve_max_length",
]
