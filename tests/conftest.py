"""Shared fixtures: a tiny real model, a toy benchmark, the plugin host with the built-ins."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.core.context import EvalResult, TrainingData
from harness.core.data import Pair, Sequence
from harness.core.registry import BenchmarkSpec
from harness.evaluation.sandbox import check_isolation
from harness.models.lm import LM
from harness.models.loading import load_model
from harness.models.text import PromptEncoder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _not_quiet() -> Iterator[None]:
    """Every test starts with progress on: a command run in-process with --quiet (CliRunner) sets the
    process-wide quiet flag and HARNESS_QUIET, which would otherwise silence the tests after it."""
    from harness.core.progress import set_quiet

    set_quiet(False)
    yield
    set_quiet(False)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep caches and results of a test out of the repo's results/ folder."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path_factory.getbasetemp() / "results"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def tiny():
    """A fresh tiny:nano model and its tokenizer (seed 0)."""
    return load_model("tiny:nano", seed=0)


PROMPTS = ["add 1 2", "say hi", "count to 3", "name a color", "2 times 2", "opposite of up", "abc", "xyz"]
ANSWERS = ["3", "hi", "1 2 3", "red", "4", "down", "def", "zyx"]


def toy_data(encoder: PromptEncoder, kind: str) -> list:
    """Demonstrations and pairs from fixed strings: enough to train and test the loop."""
    prompts = [encoder.prompt(p, {"answer": a}) for p, a in zip(PROMPTS, ANSWERS, strict=True)]
    if kind == "demonstrations":
        return [Sequence(p, encoder.response(a)) for p, a in zip(prompts, ANSWERS, strict=True)]
    if kind == "preferences":
        return [Pair(p, encoder.response(a), encoder.response("no")) for p, a in zip(prompts, ANSWERS, strict=True)]
    return prompts


def toy_reward(prompt, completion) -> float:
    return float(completion.text.strip() == prompt.meta["answer"])


def toy_benchmark() -> BenchmarkSpec:
    return BenchmarkSpec(
        name="toy",
        description="fixed strings",
        paper="-",
        evaluate=lambda ctx: EvalResult({"zero": 0.0}),
        provides=frozenset({"demonstrations", "preferences", "prompts", "reward"}),
        data=lambda kind, ctx: toy_data(ctx.encoder, kind),
        reward=toy_reward,
    )


def toy_training_data(encoder: PromptEncoder) -> TrainingData:
    return TrainingData(
        loader=lambda kind: toy_data(encoder, kind),
        reward_fn=toy_reward,
        provides=frozenset({"demonstrations", "preferences", "prompts", "reward"}),
    )


@pytest.fixture
def tiny_lm(tiny) -> LM:
    from harness.engines.hf import HFEngine

    return LM(tiny.model, tiny.tokenizer, HFEngine(tiny.model, tiny.tokenizer))


def run_harness(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 300):
    """Run the real `harness` CLI in a subprocess (the way a user does)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd or ROOT, timeout=timeout,
    )


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None,
            command: object = None) -> subprocess.CompletedProcess:
    """Run a `harness` command (or another click ``command``) in this process: the same click command a
    subprocess runs, without the seconds of Python, torch and transformers start-up each subprocess pays.
    For commands that start no process of their own (listings, leaderboard, export, compare, report, runs on
    the tiny model); keep `run_harness` where a test needs a process of its own (kill, exit, a sweep's
    workers). ``env`` is set for the command only; ``cwd`` (default: the repo) is its working directory; what
    the command changes of this process's environment variables and quiet flag is put back afterwards.
    Returns what `run_harness` returns; an uncaught exception's traceback ends ``stderr``."""
    import traceback

    from click.testing import CliRunner

    from harness.core.progress import quiet, set_quiet

    if command is None:
        from harness.cli.app import cli as command
    here, environ, was_quiet = os.getcwd(), dict(os.environ), quiet()
    os.chdir(cwd or ROOT)
    try:
        res = CliRunner(env=env).invoke(command, list(args))  # type: ignore[arg-type]
    finally:
        os.chdir(here)
        set_quiet(was_quiet)
        os.environ.clear()
        os.environ.update(environ)
    err = res.stderr
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        err += "".join(traceback.format_exception(res.exception))
    return subprocess.CompletedProcess(["harness", *args], res.exit_code, res.stdout, err)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Every test runs torch on one thread (set again for each test, in case one changed it): the models
    are tiny, so intra-op threads only add overhead, and on a busy 2-core machine they make training
    many times slower. Restored after each test."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- sandbox isolation fixtures (test_sandbox.py, test_sandbox_hostile.py) --------------------------


@pytest.fixture(scope="module")
def iso() -> dict:
    return check_isolation()


@pytest.fixture
def hostile_ok(iso: dict) -> dict:
    """Skip unless model code really runs unprivileged (as root: the drop to nobody works)."""
    if iso["root"] and not iso["privilege_drop_works"]:
        pytest.skip(f"the privilege drop does not work here, not running hostile code: {iso['reason']}")
    if not iso["unprivileged"]:
        pytest.skip(f"the sandboxed program is not unprivileged here: {iso['reason']}")
    return iso


@pytest.fixture
def other_user(hostile_ok: dict) -> dict:
    """Skip unless the program runs as a different uid from the test (so file permissions bind it)."""
    if not hostile_ok["separate_uid"]:
        pytest.skip("the sandboxed program runs as the test's own uid (harness not started as root)")
    return hostile_ok
