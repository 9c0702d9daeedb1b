"""GSM8K (Cobbe et al. 2021, arXiv 2110.14168), scored the way lm-evaluation-harness scores it.

GSM8K has 8.8K grade-school maths word problems: 7473 train and 1319 test. Each has a worked solution
with ``<<a*b=c>>`` calculator annotations and a last line ``#### <final answer>``. Every final answer
is an integer.

**Data.** Three copies, chosen by the parameter ``path``:

- ``None`` (the default): the **embedded** copy shipped inside this package
  (``alignment_harness_plugins/benchmarks/data/gsm8k/{train,test}.jsonl.gz``: the files of
  ``openai/grade-school-math``, MIT, gzip-compressed; see the README and LICENSE beside them). It needs no
  network. Its content hashes are :data:`EMBEDDED_SHA256`; a copy that does not match them (a damaged
  install) is a one-line error. Because the hashes are in this file, changing the shipped data changes the
  plugin's code hash and with it every cell id that uses it.
- a local **path**: a directory holding ``train.jsonl`` and ``test.jsonl`` (fields ``question`` and
  ``answer``; ``.jsonl.gz`` works too) or a single JSONL file. A single file serves as every split; see
  the same-split rule below.
- ``hf:`` (or ``hf:<org/name>[:config]``): the Hugging Face **hub** through
  ``datasets.load_dataset(name, config)``, by default ``hub_name`` = ``openai/gsm8k`` config
  ``hub_config`` = ``main``, which holds the same rows as the embedded copy and as lm-eval's source. If the
  hub can't be reached and the dataset isn't in the local ``datasets`` cache, the result is one error line
  that says how to use the embedded copy or a local ``path`` (an unreachable hub is found at once; with
  ``HF_HUB_OFFLINE=1`` only the cache is read).

The host reads every copy (:mod:`harness.evaluation.benchmark_data`); this module names the files and fields.

An evaluation's result names the copy it read (``EvalResult.data``: ``embedded``, ``path`` or ``hub``, the
source, and the SHA-256 of each split's rows written as canonical JSONL, :func:`harness.rows_sha256`, which
is the ``sha256sum`` of the original files); the harness records it with the evaluation and the leaderboard
notes when a sweep's cells read different copies. Identical rows hash the same from any copy. A row without
``question`` or ``answer`` is an error that names ``file:line``. Splits are read lazily (only the ones a
call needs) and cached per file and modification time.

Registered benchmarks:

``gsm8k`` follows lm-eval's task ``gsm8k`` (``lm_eval/tasks/gsm8k/gsm8k.yaml``, version 3.0), which
is why its version is "3.0".

- *Prompt.* ``num_fewshot`` (5) shots from the train split, each ``"Question: {q}\\nAnswer: {full
  solution}"``. That is doc_to_text, then the target delimiter ``" "``, then doc_to_target = the whole
  ``answer`` including its ``#### N`` line. Each shot is followed by ``"\\n\\n"`` (the few-shot
  delimiter). The test question comes last as ``"Question: {q}\\nAnswer:"``. The text is raw: no chat
  template (``encoder.prompt(text, raw=True)``), as lm-eval runs without ``--apply_chat_template``.
- *Shots.* lm-eval's default sampler uses one ``random.Random(fewshot_random_seed)``, seeded **once**
  per task with ``simple_evaluate``'s default seed 1234, and calls ``rnd.sample(train_docs, k)`` per
  test doc in doc order. So **every item gets different shots**, and they are reproducible. This
  module does the same: ``random.Random(fewshot_seed).sample(range(len(train)), k)`` per item in
  test-file order. Sampling indices gives the same picks as sampling the list, because
  ``random.sample`` depends only on the population size. Item ``i`` therefore gets the same shots
  whatever ``limit`` is, as in lm-eval, which also takes the first ``limit`` docs. The ``fewshot_seed``
  is separate from the run's seed, as lm-eval's ``fewshot_random_seed`` is separate from its
  ``random_seed``. Like lm-eval, a drawn shot equal to the test item (same question and answer) is
  dropped. When the few-shot pool *is* the eval split (a single ``path`` file), it draws k + 1 and drops
  the item itself, as lm-eval does when ``fewshot_split == test_split``. The shot pool is always the
  whole train split; ``train_limit`` doesn't change it. A record's ``shots`` lists the train indices
  used.
- *Generation.* Greedy (``temperature=0``), ``max_new_tokens`` = 256, which is lm-eval's backend default
  ``max_gen_toks`` (the YAML doesn't set it). The stop strings are ``["Question:", "</s>",
  "<|im_end|>"]`` plus the tokenizer's EOS text, which lm-eval's HF backend appends to ``until``. The
  engine cuts the text before the first stop string.

``gsm8k-chat`` (version "1") is a zero-shot chat variant. It isn't an lm-eval task, so its number can't
be compared with ``gsm8k``'s. The user turn is :data:`CHAT_INSTRUCTION` with the question filled in,
rendered through the tokenizer's chat template (``encoder.prompt(text)``; raw text when the tokenizer
has no template). It is greedy, with ``max_new_tokens`` = 512 by default, more than ``gsm8k``'s 256
because step-by-step answers without shots run longer. It stops only at EOS: the engine stops at the
tokenizer's and the model's EOS ids, and no stop strings are passed.

**Scoring (both variants).** Both of lm-eval's filters are applied to each completion, exactly:

- ``strict-match``: ``re.findall(r"#### (\\-?[0-9\\.\\,]+)")`` takes the **first** match.
- ``flexible-extract``: ``re.findall(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")`` takes the **last** match and,
  within it, the first non-empty group.
- Either filter then applies ``.strip()``. When nothing matches the answer is ``"[invalid]"``.
- ``exact_match`` (lm-eval's ``exact_match_hf_evaluate``) applies ``re.sub(p, "", x)`` for ``p`` in
  ``[",", r"\\$", r"(?s).*#### ", r"\\.$"]``, in that order, to both the extracted answer and the
  reference. The reference is the full solution, so ``(?s).*#### `` cuts it down to its number. Then
  both are lowercased (``ignore_case``), with no stripping and no punctuation removal, and compared
  for equality.
- Metrics use lm-eval's keys: ``exact_match,strict-match`` and ``exact_match,flexible-extract`` are
  the means over items. ``exact_match_stderr,<filter>`` is lm-eval's ``mean_stderr``: the sample
  standard deviation (n - 1) divided by sqrt(n). lm-eval reports "N/A" for a single item; this module
  gives NaN there.
- ``answered,<filter>`` (ours, not lm-eval's): the share of items where the filter extracted an answer
  at all (not ``"[invalid]"``). For strict-match it is format compliance, the share of completions
  with a ``#### N`` line, right or wrong: what training on demonstrations should move first.
- Each record holds index, question, shots (``gsm8k``), completion, finish_reason, target (the
  reference's final answer), extracted (per filter) and correct (per filter).

**Training data** (``provides``: demonstrations, prompts and reward; GSM8K has no preference pairs):

- Both kinds come from the train split, in file order; ``train_limit`` keeps the first N.
  ``DataContext.split == "test"`` gives the test split instead.
- ``gsm8k``: the prompt is the *zero-shot* raw ``"Question: {q}\\nAnswer:"``. The response is
  ``" " + full solution`` (the target delimiter and the target) followed by EOS, so the model learns
  lm-eval's answer format and to stop. At evaluation the 5 shots only add context in that same format.
- ``gsm8k-chat``: the prompt is the chat prompt used at evaluation. The response (the assistant turn)
  is the full solution followed by EOS. The solution is kept verbatim, calculator annotations
  included, as in lm-eval's shots; it ends with the ``#### N`` line the instruction asks for.
- Each prompt's ``meta`` holds ``{"index": i, "answer": final answer}``. ``reward(prompt,
  completion)`` is 1.0 when the flexible-extract answer of ``completion.text`` equals
  ``meta["answer"]`` after the normalisation above, else 0.0. This is correctness for on-policy
  methods; flexible is used so that a policy isn't rewarded only for the ``####`` format.
  :func:`score` is the pure per-filter check.

**Known differences from lm-eval.**

- lm-eval left-truncates a context longer than ``max_length - max_gen_toks``; this module never
  truncates.
- BOS comes from :class:`harness.models.text.PromptEncoder`, which prepends the tokenizer's BOS when it has
  one. That is also the tokenizer's default for Llama/Mistral-style tokenizers, and Qwen has no BOS.
  Recent lm-eval follows the tokenizer's default, so the two differ only for tokenizers that define a
  BOS they don't add (e.g. GPT-2).
- Stop strings are matched in text decoded without special tokens (see the engine). A literal
  ``</s>`` produced as a special token therefore stops through the EOS id or not at all.
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Callable, Iterable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from harness import (
    BenchmarkSpec,
    Completion,
    DataContext,
    DataCopy,
    EvalContext,
    EvalResult,
    HarnessError,
    MetricSpec,
    Prompt,
    Sequence,
    benchmark_data,
    hookimpl,
    item_id,
    param,
)

PAPER = "Cobbe et al. 2021, arXiv 2110.14168; protocol: lm-evaluation-harness gsm8k v3.0"

# -- lm-eval's gsm8k.yaml, verbatim --------------------------------------------------------------------------
QUESTION_TEMPLATE = "Question: {question}\nAnswer:"  # doc_to_text
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
UNTIL = ("Question:", "</s>", "<|im_end|>")
STRICT = "strict-match"
FLEXIBLE = "flexible-extract"
FILTERS = (STRICT, FLEXIBLE)
STRICT_REGEX = re.compile(r"#### (\-?[0-9\.\,]+)")  # group_select 0: first match
FLEXIBLE_REGEX = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")  # group_select -1: last match
FALLBACK = "[invalid]"
REGEXES_TO_IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")
DEFAULT_FEWSHOT_SEED = 1234  # simple_evaluate(fewshot_random_seed=1234)

# -- the chat variant ----------------------------------------------------------------------------------------
CHAT_INSTRUCTION = (
    "Solve the following math word problem. Reason step by step, then give the final answer "
    'as a number on the last line, in the form "#### <number>".\n\n{question}'
)


class Problem(NamedTuple):
    """One GSM8K row: the question and its full worked solution (ending with ``#### N``)."""

    question: str
    answer: str


# -- parameters ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GSM8KChatParams:
    """Parameters of ``gsm8k-chat`` (and the data parameters that ``gsm8k`` shares)."""

    path: str | None = param(
        None, "None: the copy shipped with the package; a directory with train.jsonl and test.jsonl, or one "
        "JSONL file; or hf: / hf:<org/name>[:config] for the Hugging Face hub"
    )
    hub_name: str = param("openai/gsm8k", "Hugging Face dataset read when path is hf:")
    hub_config: str | None = param("main", "its config name")
    limit: int | None = param(None, "evaluate on the first N test items (None = all 1319)", ge=1)
    train_limit: int | None = param(
        None, "demonstrations / prompts: the first N train items (None = all 7473)", ge=1
    )
    max_new_tokens: int = param(512, "greedy generation length cap", ge=1)
    chunk_size: int = param(32, "prompts per engine.generate call; progress is reported after each", ge=1)


@dataclass(frozen=True)
class GSM8KParams(GSM8KChatParams):
    """Parameters of ``gsm8k`` (lm-eval's protocol): few-shot settings and lm-eval's max_gen_toks."""

    max_new_tokens: int = param(256, "greedy generation length cap (lm-eval's max_gen_toks)", ge=1)
    num_fewshot: int = param(5, "shots from the train split before each test question", ge=0)
    fewshot_seed: int = param(
        DEFAULT_FEWSHOT_SEED, "seed of the one random.Random that draws every item's shots, in order"
    )


# -- scoring (pure) ------------------------------------------------------------------------------------------


def regex_filter(text: str, regex: re.Pattern[str], group_select: int = 0) -> str:
    """lm-eval's ``RegexFilter`` on one response: ``findall``, pick a match, first non-empty group, strip."""
    matches = regex.findall(text)
    if not matches:
        return FALLBACK
    match = matches[group_select]
    if isinstance(match, tuple):
        groups = [g for g in match if g]
        match = groups[0] if groups else FALLBACK
    return match.strip()


def extract(text: str) -> dict[str, str]:
    """The answer each filter extracts from a completion: ``{"strict-match": .., "flexible-extract": ..}``."""
    return {STRICT: regex_filter(text, STRICT_REGEX, 0), FLEXIBLE: regex_filter(text, FLEXIBLE_REGEX, -1)}


def normalize(text: str) -> str:
    """lm-eval's exact_match normalisation: the ignore-regexes removed in order, then lowercase."""
    for pattern in REGEXES_TO_IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def exact_match(prediction: str, reference: str) -> bool:
    """``exact_match`` of one extracted prediction against a reference (full solution or final number)."""
    return normalize(prediction) == normalize(reference)


def score(completion_text: str, reference_answer: str) -> dict[str, bool]:
    """Correctness of a completion under each filter; ``reference_answer`` may be the full solution."""
    return {name: exact_match(pred, reference_answer) for name, pred in extract(completion_text).items()}


def final_answer(solution: str) -> str:
    """The final answer of a GSM8K solution: the text after its last ``####`` (e.g. ``"1,000"``)."""
    return solution.split("####")[-1].strip()


def mean_stderr(values: Seq[float]) -> float:
    """lm-eval's ``mean_stderr``: sample standard deviation (n - 1) / sqrt(n); NaN below two values."""
    n = len(values)
    if n < 2:
        return math.nan
    mu = sum(values) / n
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


# -- prompts -------------------------------------------------------------------------------------------------


def question_text(question: str) -> str:
    """lm-eval's doc_to_text: ``"Question: {q}\\nAnswer:"``."""
    return QUESTION_TEMPLATE.format(question=question)


def chat_text(question: str) -> str:
    """The user turn of ``gsm8k-chat``: :data:`CHAT_INSTRUCTION` with the question filled in."""
    return CHAT_INSTRUCTION.format(question=question)


def fewshot_text(question: str, shots: Iterable[Problem]) -> str:
    """The few-shot prompt: each shot ``Question: ..\\nAnswer: <solution>`` then ``\\n\\n``, then the question."""
    context = ""
    for shot in shots:
        context += question_text(shot.question) + TARGET_DELIMITER
        if shot.answer != "":
            context += shot.answer + FEWSHOT_DELIMITER
    return context + question_text(question)


def sample_shots(
    pool: Seq[Problem], doc: Problem, k: int, rng: random.Random, *, same_split: bool = False
) -> list[int]:
    """Indices into ``pool`` of the shots for ``doc`` (one draw from ``rng``, as lm-eval's sampler).

    Draws ``k`` (``k + 1`` when the pool is the eval split) with ``rng.sample`` and drops shots equal to
    ``doc``. Call it once per item, in item order, with one ``random.Random(seed)``.
    """
    if k <= 0:
        return []
    n = k + 1 if same_split else k
    if n > len(pool):
        raise HarnessError(
            f"gsm8k: num_fewshot={k} needs {n} few-shot examples but the train split has {len(pool)}; "
            f"lower num_fewshot or give a larger train.jsonl"
        )
    drawn = rng.sample(range(len(pool)), n)
    return [j for j in drawn if pool[j] != doc][:k]


def stop_strings(tokenizer: Any) -> tuple[str, ...]:
    """lm-eval's ``until`` for gsm8k plus the tokenizer's EOS text (as its HF backend appends it)."""
    eos = getattr(tokenizer, "eos_token", None)
    extra = (eos,) if isinstance(eos, str) and eos and eos not in UNTIL else ()
    return (*UNTIL, *extra)


# -- data ----------------------------------------------------------------------------------------------------

_HINT = "--set path=/path/to/gsm8k (a directory with train.jsonl and test.jsonl, fields question and answer)"
EMBEDDED_DIR = Path(__file__).resolve().parent / "data" / "gsm8k"
"""The copy shipped with the package (``path=None``): ``train.jsonl.gz`` and ``test.jsonl.gz``."""
EMBEDDED_SHA256 = {
    "train": "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
    "test": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
}
""":func:`harness.rows_sha256` of each embedded split: the ``sha256sum`` of openai/grade-school-math's files."""


def data_source(params: GSM8KChatParams) -> benchmark_data.Source:
    """The copy ``params.path`` names (see :mod:`harness.evaluation.benchmark_data`)."""
    return benchmark_data.source(params.path, embedded=EMBEDDED_DIR, hub=params.hub_name, hub_config=params.hub_config)


def hub_source(params: GSM8KChatParams) -> tuple[str, str | None] | None:
    """``(name, config)`` when ``path`` names the hub (``hf:`` or ``hf:<org/name>[:config]``), else None."""
    src = data_source(params)
    return (src.location, src.config) if src.copy == "hub" else None


def _rows(params: GSM8KChatParams, split: str) -> benchmark_data.Rows:
    if split not in ("train", "test"):
        raise HarnessError(f"gsm8k: unknown split '{split}'; use train or test")
    return benchmark_data.load_part(
        data_source(params), split, files=(f"{split}.jsonl", f"{split}.jsonl.gz"), required=("question", "answer"),
        types={"question": str, "answer": str}, shipped=EMBEDDED_SHA256, where="gsm8k", hint=_HINT,
    )


def load_split(params: GSM8KChatParams, split: str) -> tuple[Problem, ...]:
    """The problems of ``split`` ("train" or "test") from the copy ``params.path`` names, in file order."""
    return tuple(Problem(row["question"], row["answer"]) for row in _rows(params, split))


def data_copy(params: GSM8KChatParams) -> DataCopy:
    """Which copy ``params.path`` names (embedded / path / hub), with the content hash of both splits."""
    return data_source(params).data_copy({split: _rows(params, split).sha256 for split in ("test", "train")})


def _same_source(params: GSM8KChatParams) -> bool:
    """True when train and test are one file (then shots come from the eval split itself)."""
    src = data_source(params)
    return src.copy == "path" and src.local.is_file()


def _train_prompt_text(question: str, chat: bool) -> str:
    return chat_text(question) if chat else question_text(question)


def _data(kind: str, ctx: DataContext, *, chat: bool) -> list[Any]:
    p = ctx.params
    problems = load_split(p, getattr(ctx, "split", "train") or "train")[: p.train_limit]
    prompts = [
        ctx.encoder.prompt(
            _train_prompt_text(pr.question, chat),
            {"index": i, "answer": final_answer(pr.answer)},
            raw=not chat,
        )
        for i, pr in enumerate(problems)
    ]
    if kind == "prompts":
        return prompts
    if kind == "demonstrations":
        prefix = "" if chat else TARGET_DELIMITER
        return [
            Sequence(prompt, ctx.encoder.response(prefix + pr.answer))
            for prompt, pr in zip(prompts, problems, strict=True)
        ]
    raise HarnessError(f"gsm8k provides demonstrations, prompts and a reward, not {kind}")


def reward(prompt: Prompt, completion: Completion) -> float:
    """1.0 when the flexible-extract answer of the completion matches ``prompt.meta["answer"]``, else 0.0."""
    meta = prompt.meta or {}
    if "answer" not in meta:
        raise HarnessError("gsm8k reward: the prompt has no meta['answer']; use prompts from the gsm8k data")
    return 1.0 if score(completion.text, str(meta["answer"]))[FLEXIBLE] else 0.0




# -- evaluation ----------------------------------------------------------------------------------------------


def _running_scores(outs: list[list[Completion]], items: Seq[Problem]) -> str:
    """The exact_match of the completions so far, for the progress line after each chunk."""
    hits = dict.fromkeys(FILTERS, 0)
    for item, out in zip(items, outs, strict=False):
        for key, ok in score(out[0].text, item.answer).items():
            hits[key] += ok
    return f"exact_match {hits[STRICT] / len(outs):.3f} strict, {hits[FLEXIBLE] / len(outs):.3f} flexible"


def _evaluate(ctx: EvalContext, *, name: str, chat: bool) -> EvalResult:
    p = ctx.params
    items = benchmark_data.select(load_split(p, "test"), ctx.limit, where=name)
    shots: list[list[int]] | None = None
    if chat:
        prompts = [ctx.encoder.prompt(chat_text(it.question), {"index": i}) for i, it in enumerate(items)]
        stop: tuple[str, ...] = ()
    else:
        pool = load_split(p, "train") if p.num_fewshot > 0 else ()
        same = p.num_fewshot > 0 and _same_source(p)
        rng = random.Random(p.fewshot_seed)
        shots = [sample_shots(pool, it, p.num_fewshot, rng, same_split=same) for it in items]
        prompts = [
            ctx.encoder.prompt(fewshot_text(it.question, [pool[j] for j in idx]), {"index": i}, raw=True)
            for i, (it, idx) in enumerate(zip(items, shots, strict=True))
        ]
        stop = stop_strings(ctx.encoder.tokenizer)
    outs = ctx.generate(prompts, max_new_tokens=p.max_new_tokens, stop=stop, chunk=p.chunk_size, desc=name,
                        note=lambda done: _running_scores(done, items))

    records: list[dict[str, Any]] = []
    for i, (item, (comp,)) in enumerate(zip(items, outs, strict=True)):
        extracted = extract(comp.text)
        record: dict[str, Any] = {"item_id": item_id(item.question, item.answer), "index": i, "question": item.question}
        if shots is not None:
            record["shots"] = shots[i]
        record.update(
            completion=comp.text,
            finish_reason=comp.finish_reason,
            target=final_answer(item.answer),
            extracted=extracted,
            correct={key: exact_match(pred, item.answer) for key, pred in extracted.items()},
        )
        records.append(record)

    metrics: dict[str, float] = {}
    for key in FILTERS:
        values = [float(r["correct"][key]) for r in records]
        metrics[f"exact_match,{key}"] = sum(values) / len(values)
        metrics[f"exact_match_stderr,{key}"] = mean_stderr(values)
        metrics[f"answered,{key}"] = sum(r["extracted"][key] != FALLBACK for r in records) / len(records)
    return EvalResult(metrics=metrics, records=records, data=data_copy(p))


# -- registration --------------------------------------------------------------------------------------------


METRICS = (
    MetricSpec("exact_match", item="correct.{filter}"),
    MetricSpec("exact_match_stderr", lower_is_better=True, role="diagnostic"),
    MetricSpec("answered", role="diagnostic"),
)
"""exact_match (per filter) is the goal, per item in ``record["correct"][filter]``; ``answered`` (format
compliance) and the standard error are diagnostics."""


def make_spec(chat: bool = False) -> BenchmarkSpec:
    """The spec of ``gsm8k`` (lm-eval's 5-shot protocol) or ``gsm8k-chat`` (zero-shot, chat template)."""
    name = "gsm8k-chat" if chat else "gsm8k"
    description = (
        "GSM8K zero-shot through the chat template, step by step with a final '#### N' line; "
        "greedy; lm-eval's strict-match and flexible-extract exact_match"
        if chat
        else "GSM8K as lm-eval's gsm8k v3.0: 5-shot raw 'Question: ..\\nAnswer:' prompts, greedy, "
        "strict-match and flexible-extract exact_match"
    )
    return BenchmarkSpec(
        name=name,
        description=description,
        paper=PAPER,
        evaluate=functools.partial(_evaluate, name=name, chat=chat),
        params=GSM8KChatParams if chat else GSM8KParams,
        version="1" if chat else "3.0",
        provides=frozenset({"demonstrations", "prompts", "reward"}),
        data=functools.partial(_data, chat=chat),
        reward=reward,
        metrics=METRICS,
    )


@hookimpl
def register_benchmarks(register: Callable[[BenchmarkSpec], None]) -> None:
    """Register ``gsm8k`` and ``gsm8k-chat``."""
    register(make_spec(chat=False))
    register(make_spec(chat=True))


__all__ = [
    "CHAT_INSTRUCTION",
    "EMBEDDED_DIR",
    "EMBEDDED_SHA256",
    "FILTERS",
    "FLEXIBLE",
    "GSM8KChatParams",
    "GSM8KParams",
    "Problem",
    "STRICT",
    "chat_text",
    "data_copy",
    "exact_match",
    "extract",
    "fewshot_text",
    "final_answer",
    "hub_source",
    "load_split",
    "make_spec",
    "mean_stderr",
    "normalize",
    "question_text",
    "regex_filter",
    "register_benchmarks",
    "reward",
    "sample_shots",
    "score",
    "data_source",
    "stop_strings",
]
