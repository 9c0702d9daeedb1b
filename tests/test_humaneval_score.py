"""``harness score humaneval --samples FILE.jsonl``: pass@k of completions made elsewhere, same verdict path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.evaluation import sandbox_bwrap

pytestmark = pytest.mark.skipif(bool(sandbox_bwrap.unusable_reason()), reason=sandbox_bwrap.unusable_reason() or "")

SAMPLES = [
    {"task_id": "HumanEval/2", "completion": "    return number % 1.0\n"},  # right
    {"task_id": "HumanEval/2", "completion": "    return 0.0\n"},  # wrong
    {"task_id": "HumanEval/2", "completion": "    import builtins\n    builtins.abs = lambda x: 0.0\n    return 0.0\n"},
    {"task_id": "HumanEval/0", "completion": "    return True\n"},  # wrong
    {"task_id": "HumanEval/0", "completion": "    while True:\n        pass\n"},  # never returns
    {"task_id": "HumanEval/0", "completion": ("    for i, a in enumerate(numbers):\n        for b in numbers[i + 1:]:\n"
                                              "            if abs(a - b) < threshold:\n                return True\n"
                                              "    return False\n")},  # right
]


def _harness(*args: str, env: dict | None = None) -> Any:
    """The real CLI, in process (click's runner): exit code, stdout and stderr apart."""
    from click.testing import CliRunner

    from harness.cli.app import cli

    runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner()
    return runner.invoke(cli, list(args), env={"HARNESS_ALLOW_CODE_EVAL": None, **(env or {})}, catch_exceptions=False)


def test_score_prints_pass_at_k_and_a_json_document(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in SAMPLES))
    proc = _harness("score", "humaneval", "--samples", str(path), "--confirm-unsafe-code", "--timeout", "1",
                    "--json", "--k", "1,2,3,10")
    assert proc.exit_code == 0, proc.stderr
    doc = json.loads(proc.stdout)
    # per problem 3 samples: HumanEval/2 c=1, HumanEval/0 c=1; pass@1 = 1/3, pass@2 = 1 - C(2,2)/C(3,2) = 2/3
    assert doc["pass@k"] == pytest.approx({"pass@1": 1 / 3, "pass@2": 2 / 3, "pass@3": 1.0})  # no k > 3 samples
    assert [s["task_id"] for s in doc["samples"]] == [s["task_id"] for s in SAMPLES]
    assert [s["passed"] for s in doc["samples"]] == [True, False, False, False, False, True]
    assert [s["status"] for s in doc["samples"]] == ["passed", "failed", "failed", "failed", "timeout", "passed"]
    assert all(set(s) == {"task_id", "passed", "status", "reason"} for s in doc["samples"])
    text = _harness("score", "humaneval", "--samples", str(path), "--timeout", "1", "--k", "1",
                    env={"HARNESS_ALLOW_CODE_EVAL": "1"})
    assert text.exit_code == 0, text.stderr
    assert "pass@1: 0.3333" in text.stdout and "6 samples, 2 problems, 2 passed" in text.stdout


def test_bad_samples_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(SAMPLES[0]) + "\n{not json\n")
    proc = _harness("score", "humaneval", "--samples", str(path), "--confirm-unsafe-code")
    assert proc.exit_code == 2 and f"{path}:2: not valid JSON" in proc.stderr
    path.write_text(json.dumps({"task_id": "HumanEval/9999", "completion": ""}) + "\n")
    proc = _harness("score", "humaneval", "--samples", str(path), "--confirm-unsafe-code")
    assert proc.exit_code == 2 and "unknown task_id 'HumanEval/9999'" in proc.stderr
    proc = _harness("score", "humaneval", "--samples", str(path))
    assert proc.exit_code == 2 and "--confirm-unsafe-code" in proc.stderr
