"""MT-Bench (Zheng et al. 2023, arXiv 2306.05685) with FastChat's ``llm_judge`` single-answer grading.

Source: lm-sys/FastChat ``fastchat/llm_judge`` (``gen_model_answer.py``, ``gen_judgment.py --mode
single``, ``common.py``, ``show_result.py``; commit 0e6d3e4). Registered as ``mt-bench``.

**Data** (param ``path``). ``None`` (the default): the **embedded** copy shipped inside this package,
``alignment_harness_plugins/benchmarks/data/mt_bench/`` (FastChat's ``question.jsonl``,
``judge_prompts.jsonl`` and ``reference_answer_gpt-4.jsonl``, Apache-2.0, unmodified; LICENSE and a README
beside them), with no network. Their content hashes are :data:`EMBEDDED_SHA256` (a mismatch, i.e. a damaged
install, is a one-line error; being in this file, they enter the plugin's code hash and so the cell ids).
A local **path**: a directory with FastChat's files. Accepted layouts: flat (``question.jsonl``,
``judge_prompts.jsonl``, ``reference_answer_gpt-4.jsonl``, as the embedded copy) or FastChat's own
(``data/mt_bench/question.jsonl`` with ``reference_answer/gpt-4.jsonl``, and ``judge_prompts.jsonl`` in the
same directory or one level up); ``path`` may also name FastChat's ``data/`` folder. The reference file is
picked by ``reference_model`` (``gpt-4``), as FastChat keys references by judge name. If
``judge_prompts.jsonl`` is absent, FastChat's four single-answer prompts from the embedded copy are used
(:func:`fastchat_judge_prompts`). ``hf:`` (or ``hf:<org/name>``): questions from the
Hugging Face **hub** (by default ``HuggingFaceH4/mt_bench_prompts`` via ``datasets``; ids 81.. in file
order, as H4 built it from ``question.jsonl``) with the embedded judge prompts; GPT-4 reference answers are
not on the hub, so math/reasoning/coding questions then need another copy. An unreachable hub is a one-line
error. An evaluation's result names the copy it read and the SHA-256 of the rows of each file
(``EvalResult.data``, :func:`harness.rows_sha256`: the files' ``sha256sum``). ``limit`` keeps the first N
questions (80 in all, 2 turns each).

**Answers** (``gen_model_answer.py``): per question the temperature of FastChat's
``temperature_config`` (writing/roleplay 0.7, extraction/math/coding/reasoning 0.0, stem/humanities 0.1,
arena-hard-200 0.0, any other category 0.7; below 1e-4 means greedy), ``max_new_tokens`` (1024), one
choice, generation seed = the evaluation's seed. Turn 1 is ``[user q1]``; turn 2 is generated from the
conversation so far, ``[user q1, assistant a1, user q2]``, rendered by the model's chat template
(``apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)``). A
tokenizer without a template gets a plain ``"User: ...\\nAssistant: ..."`` transcript after BOS (see
:func:`harness.evaluation.judge.chat_prompt`) and generation stops at ``"\\nUser:"``. Every prompt carries
``meta["messages"]``, so API engines send the real conversation. Answers are stripped (FastChat strips
too); the engine already cuts stop strings and drops special tokens. No system prompt is added (FastChat
uses the model's conversation template, whose default system prompt an HF chat template also inserts).

**Judging** (``gen_judgment.py``, single mode): turn 1 of general categories -> ``single-v1``; turn 1
of math/reasoning/coding (FastChat's ``NEED_REF_CATS``, plus arena-hard-200) -> ``single-math-v1`` with
``ref_answer_1``; turn 2 -> ``single-v1-multi-turn`` / ``single-math-v1-multi-turn`` (with
``ref_answer_1`` and ``ref_answer_2``), which show the whole conversation and grade the second answer.
Templates are filled with ``str.format`` exactly as FastChat does; the judge gets ``[system prompt,
filled template]`` as chat messages, temperature ``judge_temperature`` (0) and ``judge_max_new_tokens``
(2048, FastChat's OpenAI setting). Ratings are parsed by :func:`harness.evaluation.judge.parse_rating` (``[[x]]``,
then ``[x]``); an unparsable judgment (-1) is dropped and counted. The judge
(:func:`harness.evaluation.judge.make_judge`): ``judge_engine="openai"`` (default) with ``judge_model``,
``judge_base_url``, ``judge_api_key_env``; ``judge_engine="hf"`` + ``judge_model=<load_model name>``
(e.g. ``smollm2-135m``) for a local model; ``judge_engine="self"`` for the evaluated model itself
(never cached); any other registered engine by name. Scores from any judge but GPT-4 are not comparable
with published MT-Bench numbers: records name the judge.

``judge_repeats`` (1) asks the judge that many times per item (seed = repeat index 0, 1, ...); an
item's rating is the mean of its parsable ratings, and ``judge_std`` is the mean over items of the
population std of their ratings. With one repeat everything reduces to FastChat's protocol. Judgments
are cached on disk (:class:`harness.evaluation.judge.JudgmentCache`, ``$HARNESS_CACHE/judgments/``), keyed by the
judge, the full judge messages (question, answer, references, prompt text), decoding settings and the
repeat index; a second evaluation with the same answers makes no judge requests (``cache=False``
turns this off).

**Metrics** (``show_result.py``): ``score`` = mean over every kept judgment (both turns, equal
weight), ``score_turn1``, ``score_turn2``, ``score_<category>`` (that category's turns), ``unparsable``
(judgments without a rating, over all repeats), ``judged`` (items with a rating), ``answer_tokens``
(mean answer length in tokens of the evaluated model's tokenizer, the stripped text re-encoded without
special tokens) and ``answer_words`` (whitespace-split words), ``judge_requests`` / ``judge_cached``
(judge calls made / served from the cache), ``questions``, and ``judge_std`` when ``judge_repeats > 1``.
Records, one per (question, turn): ``question_id, category, turn, temperature, prompt`` (that turn's
user text), ``answer, judge, judge_prompt, judge_prompt_hash, judge_prompts_version, judgment, rating``
(-1 when unparsable), ``ratings`` and ``judgments`` (per repeat), ``cached``. The prompt version is
the four judge prompt names plus a SHA-256 prefix of their text. ``provides`` the turn-1 prompts.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    BenchmarkSpec,
    DataContext,
    DataCopy,
    EvalContext,
    EvalResult,
    HarnessError,
    MetricSpec,
    Prompt,
    benchmark_data,
    digest,
    hookimpl,
    param,
    rows_sha256,
)
from harness.judge import JudgmentCache, chat_prompt, make_judge, parse_rating
from harness.judge import cache_key as judge_cache_key

NAME = "mt-bench"
PAPER = "Zheng et al. 2023, arXiv 2306.05685 (FastChat llm_judge, single-answer grading)"
HUB_QUESTIONS = "HuggingFaceH4/mt_bench_prompts"
PATH_HINT = ("leave path unset for the copy shipped with the package, or --set path=/dir/with/fastchat/files "
             "(question.jsonl, judge_prompts.jsonl, reference_answer_gpt-4.jsonl)")
EMBEDDED_DIR = Path(__file__).resolve().parent / "data" / "mt_bench"
"""The copy shipped with the package (``path=None``): FastChat's files, flat layout."""
EMBEDDED_SHA256 = {
    "questions": "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
    "judge_prompts": "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6",
    "references": "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f",
}
""":func:`harness.rows_sha256` of each embedded file's rows: FastChat's files' ``sha256sum``."""

# FastChat gen_model_answer.py / common.py.
TEMPERATURE_CONFIG: dict[str, float] = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
}
DEFAULT_TEMPERATURE = 0.7
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")
# (reference-guided, turn) -> judge prompt name
JUDGE_PROMPT_FOR: dict[tuple[bool, int], str] = {
    (False, 1): "single-v1",
    (True, 1): "single-math-v1",
    (False, 2): "single-v1-multi-turn",
    (True, 2): "single-math-v1-multi-turn",
}
JUDGE_PROMPT_NAMES = ("single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn")

_JUDGE_PROMPT_KEYS = ("name", "type", "system_prompt", "prompt_template", "output_format")
FASTCHAT_JUDGE_PROMPTS_SHA256 = "ae8e3ad333cd462d6dcd4a3f3b3066e87c24ba9491718eff2f8397ec95ddb9b2"
""":func:`harness.rows_sha256` of the four single-answer prompts (the fields of :data:`_JUDGE_PROMPT_KEYS`)."""


def fastchat_judge_prompts() -> dict[str, dict[str, str]]:
    """FastChat's four single-answer judge prompts (Apache-2.0), from the embedded ``judge_prompts.jsonl``: used
    when a data directory has none and for hub questions. A damaged copy is a one-line error."""
    file = EMBEDDED_DIR / "judge_prompts.jsonl"
    rows = benchmark_data.read_rows(file, required=_JUDGE_PROMPT_KEYS)
    by_name = {r["name"]: {k: r[k] for k in _JUDGE_PROMPT_KEYS} for r in rows}
    prompts = {n: by_name[n] for n in JUDGE_PROMPT_NAMES if n in by_name}
    got = rows_sha256(prompts.values()) if len(prompts) == len(JUDGE_PROMPT_NAMES) else "missing prompts"
    benchmark_data.check_shipped({"judge_prompts": got}, {"judge_prompts": FASTCHAT_JUDGE_PROMPTS_SHA256}, file,
                                 where=f"benchmark '{NAME}'", hint="pass --set path=/dir/with/fastchat/files")
    return prompts


@dataclass(frozen=True)
class MTBenchParams:
    """MT-Bench settings (defaults: FastChat's)."""

    path: str | None = param(
        None, "None: the copy shipped with the package; a directory with FastChat's question.jsonl, "
        "judge_prompts.jsonl, reference answers; or hf: / hf:<org/name> for the hub's questions"
    )
    limit: int | None = param(None, "evaluate only the first N questions (80 in all, 2 turns each)", ge=1)
    max_new_tokens: int = param(1024, "answer length cap per turn (FastChat --max-new-token)", ge=1)
    judge_engine: str = param("openai", "judge engine: 'openai', 'hf' (local model), 'self', or any engine")
    judge_model: str = param("gpt-4", "judge model: the served name (openai) or a load_model name (hf)")
    judge_base_url: str = param("https://api.openai.com/v1", "OpenAI-compatible endpoint of the judge")
    judge_api_key_env: str = param("OPENAI_API_KEY", "environment variable holding the judge's API key")
    judge_repeats: int = param(1, "judgments per item; their mean is the rating, their spread judge_std", ge=1)
    judge_temperature: float = param(0.0, "judge sampling temperature (FastChat: 0)", ge=0)
    judge_max_new_tokens: int = param(2048, "judge output cap (FastChat: 2048 for OpenAI judges)", ge=1)
    judge_dtype: str = param("auto", "dtype of a local (hf) judge: float32, bfloat16, float16 or auto")
    reference_model: str = param("gpt-4", "reference answers file: reference_answer/<name>.jsonl")
    cache: bool = param(True, "reuse judgments cached under $HARNESS_CACHE/judgments")


@dataclass
class MTBenchData:
    """Questions (``question_id``, ``category``, ``turns``), judge prompts by name, references by id."""

    questions: list[dict[str, Any]]
    judge_prompts: dict[str, dict[str, str]]
    references: dict[int, list[str]]
    source: str
    judge_prompts_source: str
    copy: str = "path"  # embedded / path / hub
    parts: dict[str, str] = field(default_factory=dict)  # file -> rows_sha256 of its rows

    def data_copy(self) -> DataCopy:
        """Which copy was read and the content hash of each of its files."""
        return DataCopy(self.copy, self.source, self.parts)


# -- data ------------------------------------------------------------------------------------------------


def load_data(path: str | None, reference_model: str = "gpt-4") -> MTBenchData:
    """FastChat's files from the copy ``path`` names (see the module docstring; None: the embedded one)."""
    src = benchmark_data.source(path, embedded=EMBEDDED_DIR, hub=HUB_QUESTIONS)
    if src.copy == "hub":
        return _load_hub(src.location)
    root = src.local
    if not root.is_dir():
        raise HarnessError(f"benchmark '{NAME}': path {root} is not a directory; {PATH_HINT}")
    qdir = next((d for d in (root, root / "mt_bench") if (d / "question.jsonl").is_file()), None)
    if qdir is None:
        raise HarnessError(f"benchmark '{NAME}': no question.jsonl in {root} or {root / 'mt_bench'}; {PATH_HINT}")
    questions = []
    parts: dict[str, str] = {}
    rows = benchmark_data.read_rows(qdir / "question.jsonl", required=("question_id", "category", "turns"))
    parts["questions"] = rows.sha256
    for row in rows:
        turns = row["turns"]
        if not isinstance(turns, list) or len(turns) != 2 or not all(isinstance(t, str) for t in turns):
            raise HarnessError(
                f"{qdir / 'question.jsonl'}: question {row['question_id']} needs 2 turns (strings)"
            )
        questions.append({"question_id": int(row["question_id"]), "category": str(row["category"]), "turns": turns})

    jp_file = next((d / "judge_prompts.jsonl" for d in (root, qdir, qdir.parent)
                    if (d / "judge_prompts.jsonl").is_file()), None)
    if jp_file is None:
        prompts, jp_source = fastchat_judge_prompts(), "embedded FastChat copy"
        parts["judge_prompts"] = FASTCHAT_JUDGE_PROMPTS_SHA256
    else:
        jp_rows = benchmark_data.read_rows(jp_file, required=("name", "system_prompt", "prompt_template"))
        parts["judge_prompts"] = jp_rows.sha256
        by_name = {r["name"]: r for r in jp_rows}
        missing = [n for n in JUDGE_PROMPT_NAMES if n not in by_name]
        if missing:
            raise HarnessError(f"{jp_file}: missing judge prompt(s) {', '.join(missing)}; use FastChat's file")
        prompts, jp_source = {n: by_name[n] for n in JUDGE_PROMPT_NAMES}, str(jp_file)

    references: dict[int, list[str]] = {}
    ref_file = next((f for f in (qdir / "reference_answer" / f"{reference_model}.jsonl",
                                 qdir / f"reference_answer_{reference_model}.jsonl") if f.is_file()), None)
    if ref_file is not None:
        ref_rows = benchmark_data.read_rows(ref_file, required=("question_id", "choices"))
        parts["references"] = ref_rows.sha256
        for row in ref_rows:
            try:
                references[int(row["question_id"])] = list(row["choices"][0]["turns"])
            except (KeyError, IndexError, TypeError):
                raise HarnessError(
                    f"{ref_file}: question {row['question_id']}: expected choices[0].turns (FastChat answer format)"
                ) from None
    if src.copy == "embedded":  # another reference_model: no references to check
        benchmark_data.check_shipped(parts, EMBEDDED_SHA256, EMBEDDED_DIR, where=f"benchmark '{NAME}'",
                                     hint="pass --set path=/dir/with/fastchat/files")
    return MTBenchData(questions, prompts, references, str(qdir.resolve()), jp_source, src.copy, parts)


def _load_hub(name: str = HUB_QUESTIONS) -> MTBenchData:
    rows = benchmark_data.hub_rows(name, None, "train", required=("category", "prompt"), where=f"benchmark '{NAME}'",
                                   hint=PATH_HINT)
    questions = [
        {"question_id": 81 + i, "category": str(r["category"]), "turns": list(r["prompt"])} for i, r in enumerate(rows)
    ]
    parts = {"questions": rows.sha256, "judge_prompts": FASTCHAT_JUDGE_PROMPTS_SHA256}
    return MTBenchData(questions, fastchat_judge_prompts(), {}, name, "embedded FastChat copy", "hub", parts)


def temperature_for(category: str) -> float:
    """FastChat's temperature for a category (0.7 for one it does not list); below 1e-4 means greedy."""
    t = TEMPERATURE_CONFIG.get(category, DEFAULT_TEMPERATURE)
    return 0.0 if t < 1e-4 else t


def prompt_hash(prompt: Mapping[str, str]) -> str:
    """SHA-256 prefix (12 hex) of one judge prompt's system prompt and template."""
    blob = json.dumps([prompt["system_prompt"], prompt["prompt_template"]], ensure_ascii=False)
    return digest(blob, 12)


def prompts_version(prompts: Mapping[str, Mapping[str, str]]) -> str:
    """``single-v1+single-math-v1+...@<sha12>``: the four prompt names and a hash of their text."""
    blob = json.dumps([[n, prompts[n]["system_prompt"], prompts[n]["prompt_template"]] for n in JUDGE_PROMPT_NAMES],
                      ensure_ascii=False)
    return "+".join(JUDGE_PROMPT_NAMES) + "@" + digest(blob, 12)


def judge_messages(
    judge_prompt: Mapping[str, str], question: Mapping[str, Any], answers: list[str], turn: int,
    reference: list[str] | None,
) -> list[dict[str, str]]:
    """``[system, user]`` for the judge, filled exactly as FastChat's ``run_judge_single``."""
    kwargs: dict[str, str] = {}
    if reference is not None:
        kwargs["ref_answer_1"] = reference[0]
        if turn == 2:
            kwargs["ref_answer_2"] = reference[1]
    template = judge_prompt["prompt_template"]
    if turn == 2:
        user = template.format(question_1=question["turns"][0], question_2=question["turns"][1],
                               answer_1=answers[0], answer_2=answers[1], **kwargs)
    else:
        user = template.format(question=question["turns"][0], answer=answers[0], **kwargs)
    return [{"role": "system", "content": judge_prompt["system_prompt"]}, {"role": "user", "content": user}]


# -- evaluation ------------------------------------------------------------------------------------------


def _check_api_key(p: MTBenchParams) -> None:
    """Refuse the OpenAI API without a key before any answer is generated."""
    if (p.judge_engine == "openai" and "api.openai.com" in p.judge_base_url
            and not os.environ.get(p.judge_api_key_env)):
        raise HarnessError(
            f"benchmark '{NAME}': the judge is {p.judge_base_url} but {p.judge_api_key_env} is not set; set it, or "
            f"judge with a local server (--set judge_base_url=http://host:port/v1 --set judge_model=<name>) "
            f"or a local model (--set judge_engine=hf --set judge_model=smollm2-135m)"
        )


def _generate_turn(ctx: EvalContext, questions: list[dict[str, Any]], answers: dict[int, list[str]], turn: int,
                   max_new_tokens: int) -> None:
    """Generate ``turn`` (1 or 2) for every question, one engine call per temperature; appends to answers."""
    tokenizer = ctx.encoder.tokenizer
    by_temp: dict[float, list[tuple[dict[str, Any], Prompt]]] = {}
    for q in questions:
        qid = q["question_id"]
        messages = [{"role": "user", "content": q["turns"][0]}]
        if turn == 2:
            messages += [{"role": "assistant", "content": answers[qid][0]}, {"role": "user", "content": q["turns"][1]}]
        temp = temperature_for(q["category"])
        meta = {"question_id": qid, "category": q["category"], "turn": turn}
        by_temp.setdefault(temp, []).append((q, chat_prompt(tokenizer, messages, meta)))
    for temp, items in by_temp.items():
        prompts = [pr for _, pr in items]
        stop = ("\nUser:",) if any(pr.meta.get("plain_chat") for pr in prompts) else ()
        outs = ctx.generate(prompts, temperature=temp, max_new_tokens=max_new_tokens, stop=stop,
                            total=2 * len(questions), desc=f"benchmark '{NAME}'")
        for (q, _), comps in zip(items, outs, strict=True):
            answers.setdefault(q["question_id"], []).append(comps[0].text.strip())


def _mean(values: list[float]) -> float:
    return float(statistics.fmean(values)) if values else float("nan")


def evaluate(ctx: EvalContext) -> EvalResult:
    """Answer both turns with the evaluated model, judge every turn, aggregate (see the module docstring)."""
    p: MTBenchParams = ctx.params
    data = load_data(p.path, p.reference_model)
    questions = benchmark_data.select(data.questions, ctx.limit, where=f"benchmark '{NAME}'")
    lacking = [q["question_id"] for q in questions
               if q["category"] in NEED_REF_CATS and q["question_id"] not in data.references]
    if lacking:
        raise HarnessError(
            f"benchmark '{NAME}': no {p.reference_model} reference answers for question(s) "
            f"{', '.join(map(str, lacking[:5]))}{'...' if len(lacking) > 5 else ''} (reference-guided categories); "
            f"{PATH_HINT}"
        )
    _check_api_key(p)
    device = str(ctx.lm.device) if ctx.lm is not None else "cpu"
    judge = make_judge(
        p.judge_engine, p.judge_model, base_url=p.judge_base_url, api_key_env=p.judge_api_key_env,
        self_engine=ctx.engine, self_tokenizer=ctx.encoder.tokenizer, device=device, dtype=p.judge_dtype,
    )

    ctx.progress(f"{NAME}: answering {len(questions)} questions x 2 turns")
    answers: dict[int, list[str]] = {}
    _generate_turn(ctx, questions, answers, 1, p.max_new_tokens)
    _generate_turn(ctx, questions, answers, 2, p.max_new_tokens)

    version = prompts_version(data.judge_prompts)
    items: list[dict[str, Any]] = []
    for q in questions:
        qid = q["question_id"]
        ref = q["category"] in NEED_REF_CATS
        for turn in (1, 2):
            name = JUDGE_PROMPT_FOR[(ref, turn)]
            jp = data.judge_prompts[name]
            messages = judge_messages(jp, q, answers[qid], turn, data.references[qid] if ref else None)
            items.append({"q": q, "turn": turn, "name": name, "hash": prompt_hash(jp), "messages": messages})

    cache = JudgmentCache() if (p.cache and judge.cacheable) else None
    requests = cached = 0
    for r in range(p.judge_repeats):
        settings = {"temperature": p.judge_temperature, "max_new_tokens": p.judge_max_new_tokens, "seed": r}
        todo = []
        for item in items:
            key = judge_cache_key(judge=judge.key, messages=item["messages"], settings=settings, repeat=r)
            hit = cache.get(key) if cache is not None else None
            if hit is not None and isinstance(hit.get("judgment"), str):
                item.setdefault("judgments", []).append(hit["judgment"])
                item.setdefault("from_cache", []).append(True)
                cached += 1
            else:
                item.setdefault("judgments", []).append(None)
                item.setdefault("from_cache", []).append(False)
                todo.append((item, key))
        if todo:
            ctx.progress(f"{NAME}: judging {len(todo)} turns with {judge.name} (repeat {r + 1}/{p.judge_repeats})")
        for start in range(0, len(todo), _JUDGE_CHUNK):
            chunk = todo[start : start + _JUDGE_CHUNK]
            texts = judge.generate([it["messages"] for it, _ in chunk], temperature=p.judge_temperature,
                                   max_new_tokens=p.judge_max_new_tokens, seed=r)
            requests += len(chunk)
            ctx.report(start + len(chunk), len(todo), what=f"judging {r + 1}/{p.judge_repeats}")
            for (item, key), text in zip(chunk, texts, strict=True):
                item["judgments"][r] = text
                if cache is not None:
                    cache.put(key, {"judgment": text, "judge": judge.name, "judge_prompt": item["name"],
                                    "rating": parse_rating(text)})

    result = _aggregate(ctx, items, answers, judge.name, version, p.judge_repeats, requests, cached, len(questions))
    result.data = data.data_copy()
    return result


_JUDGE_CHUNK = 32  # judgments per engine call; the cache is written after each call


def _aggregate(ctx: EvalContext, items: list[dict[str, Any]], answers: dict[int, list[str]], judge_name: str,
               version: str, repeats: int, requests: int, cached: int, n_questions: int) -> EvalResult:
    tokenizer = ctx.encoder.tokenizer
    kept: list[tuple[int, str, float]] = []  # (turn, category, rating)
    unparsable = 0
    stds: list[float] = []
    records: list[dict[str, Any]] = []
    for item in items:
        q, turn = item["q"], item["turn"]
        ratings = [parse_rating(t) for t in item["judgments"]]
        valid = [x for x in ratings if x != -1]
        unparsable += len(ratings) - len(valid)
        rating = _mean(valid) if valid else -1.0
        if valid:
            kept.append((turn, q["category"], rating))
            if repeats > 1:
                stds.append(statistics.pstdev(valid) if len(valid) > 1 else 0.0)
        answer = answers[q["question_id"]][turn - 1]
        records.append({
            "item_id": f"{q['question_id']}/turn{turn}",
            "question_id": q["question_id"],
            "category": q["category"],
            "turn": turn,
            "temperature": temperature_for(q["category"]),
            "prompt": q["turns"][turn - 1],
            "answer": answer,
            "judge": judge_name,
            "judge_prompt": item["name"],
            "judge_prompt_hash": item["hash"],
            "judge_prompts_version": version,
            "judgment": item["judgments"][0],
            "rating": rating,
            "ratings": ratings,
            "judgments": item["judgments"],
            "cached": all(item["from_cache"]),
        })
    all_answers = [a for qa in answers.values() for a in qa]
    metrics: dict[str, float] = {
        "score": _mean([x for _, _, x in kept]),
        "score_turn1": _mean([x for t, _, x in kept if t == 1]),
        "score_turn2": _mean([x for t, _, x in kept if t == 2]),
    }
    for cat in sorted({it["q"]["category"] for it in items}):
        metrics[f"score_{cat}"] = _mean([x for _, c, x in kept if c == cat])
    metrics.update({
        "unparsable": float(unparsable),
        "judged": float(len(kept)),
        "questions": float(n_questions),
        "answer_tokens": _mean([float(len(tokenizer.encode(a, add_special_tokens=False))) for a in all_answers]),
        "answer_words": _mean([float(len(a.split())) for a in all_answers]),
        "judge_requests": float(requests),
        "judge_cached": float(cached),
    })
    if repeats > 1:
        metrics["judge_std"] = _mean(stds)
    if math.isnan(metrics["score"]):
        ctx.progress(f"{NAME}: no judgment had a rating; check the judge ({judge_name})")
    return EvalResult(metrics=metrics, records=records)


def _data(kind: str, ctx: DataContext) -> list[Prompt]:
    if kind != "prompts":
        raise HarnessError(f"benchmark '{NAME}' provides prompts (turn 1), not '{kind}'")
    p: MTBenchParams = ctx.params
    data = load_data(p.path, p.reference_model)
    return [
        chat_prompt(ctx.encoder.tokenizer, [{"role": "user", "content": q["turns"][0]}],
                    {"question_id": q["question_id"], "category": q["category"], "turn": 1})
        for q in data.questions
    ]


SPEC = BenchmarkSpec(
    name=NAME,
    description="MT-Bench: 80 two-turn questions, FastChat single-answer LLM-judge grading (1-10)",
    paper=PAPER,
    evaluate=evaluate,
    params=MTBenchParams,
    version="1",
    provides=frozenset({"prompts"}),
    data=_data,
    metrics=(MetricSpec("score", item="rating"), MetricSpec("score_*", role="diagnostic"),
             MetricSpec("unparsable", lower_is_better=True, role="diagnostic"),
             MetricSpec("judge_std", lower_is_better=True, role="diagnostic"),
             MetricSpec("*", role="diagnostic")),
)


@hookimpl
def register_benchmarks(register: Callable[[BenchmarkSpec], None]) -> None:
    """Register ``mt-bench``."""
    register(SPEC)


__all__ = [
    "EMBEDDED_DIR",
    "EMBEDDED_SHA256",
    "FASTCHAT_JUDGE_PROMPTS_SHA256",
    "JUDGE_PROMPT_FOR",
    "MTBenchData",
    "MTBenchParams",
    "NEED_REF_CATS",
    "SPEC",
    "TEMPERATURE_CONFIG",
    "evaluate",
    "fastchat_judge_prompts",
    "judge_messages",
    "load_data",
    "prompt_hash",
    "prompts_version",
    "register_benchmarks",
    "temperature_for",
]
