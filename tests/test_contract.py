"""The objective contract: every wrong objective gets one line naming the method, its file, what was seen
and the rule; `harness run` shows that line and the path of the full log, `--debug` the traceback."""

from __future__ import annotations

import textwrap

import pytest

from harness.core.contract import PluginError
from harness.core.plugins import load
from harness.training.trainer import TrainConfig
from tests.conftest import run_harness
from tests.test_train import make_trainer

# Each case: an objective body (batch b, params p) and what its one line must say.
CASES = {
    "b_by_3": ("loss = -b.logps['demo'][:, None].expand(-1, 3)\n    return loss, {}",
               ["has shape [4, 3]", "for a batch of B=4 rows", "rule: one value per row, shape [4]"]),
    "broadcast": ("loss = -b.logps['demo'][:, None] + b.logps['demo'][None, :]\n    return loss, {}",
                  ["has shape [4, 4]", "[B, B] broadcast", "rule: one value per row"]),
    "half_batch": ("loss = -b.logps['demo'][:2]\n    return loss, {}",
                   ["has shape [2]", "2 values for 4 rows", "rule: one value per row"]),
    "nan": ("return -b.logps['demo'] * float('nan'), {'logp': b.logps['demo'].mean() * float('nan')}",
            ["the loss is nan at step 1 of round 1", "metric 'logp' went non-finite first", "rule: the loss stays finite"]),
    "non_scalar_metric": ("return -b.logps['demo'], {'logp': b.logps['demo'].detach()}",
                          ["metric 'logp' is shape [4]", "rule: a metric is one number"]),
    "no_metrics": ("return -b.logps['demo']",
                   ["objective returned a tensor of shape [4]", "rule: return (loss, metrics)"]),
    "detached": ("return -b.logps['demo'].detach(), {}",
                 ["the loss carries no gradient", "rule: compute it from batch.logps"]),
}

PLUGIN = '''\
"""A method whose objective breaks the contract: {case}."""
from harness import hookimpl
from harness.core.registry import MethodSpec
from harness.training.samplers import offline_demonstrations


def objective(b, p):
    {body}


def sampler(ctx):
    {sampler}


@hookimpl
def register_methods(register):
    register(MethodSpec(name="wrong", description="breaks the contract", paper="-", sampler=sampler,
                        objective=objective, needs=frozenset({{"demonstrations"}}), reference="none"))
'''


def write_plugin(tmp_path, case: str, body: str = "return -b.logps['demo'], {}",
                 sampler: str = "return offline_demonstrations(ctx)"):
    path = tmp_path / f"wrong_{case}.py"
    path.write_text(PLUGIN.format(case=case, body=body, sampler=sampler))
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_wrong_objective_is_one_line_naming_method_file_and_rule(case, tmp_path):
    body, expected = CASES[case]
    path = write_plugin(tmp_path, case, body)
    host = load([str(path)], env={"HARNESS_LOAD_PLUGINS": "sft"})
    trainer = make_trainer(host, "wrong", TrainConfig(steps=2, batch_size=4))
    with pytest.raises(PluginError) as info:
        trainer.train_round(0)
    line = info.value.message
    assert "\n" not in line
    assert "method 'wrong'" in line and str(path) in line, line
    for part in expected:
        assert part in line, (part, line)


def test_a_raising_sampler_is_one_line(tmp_path):
    path = write_plugin(tmp_path, "sampler", sampler="raise KeyError('no such column: answer')")
    host = load([str(path)], env={"HARNESS_LOAD_PLUGINS": "sft"})
    trainer = make_trainer(host, "wrong", TrainConfig(steps=1, batch_size=4))
    with pytest.raises(PluginError) as info:
        trainer.train_round(0)
    line = info.value.message
    assert "method 'wrong'" in line and str(path) in line and "its sampler raised KeyError" in line
    assert "no such column: answer" in line and "in round 1" in line and "rule: sampler(ctx) returns" in line


def test_nan_later_names_the_step_and_the_metric_that_went_first(tmp_path):
    """Finite at step 1, a metric goes NaN at step 2, the loss at step 3."""
    body = textwrap.dedent('''\
        n = p_state.setdefault("n", 0) + 1
            p_state["n"] = n
            loss = -b.logps['demo'] * (float('nan') if n >= 3 else 1.0)
            return loss, {"ratio": float('nan') if n >= 2 else 1.0, "ok": 1.0}''')
    path = write_plugin(tmp_path, "late", "global p_state\n    " + body)
    path.write_text("p_state = {}\n" + path.read_text())
    host = load([str(path)], env={"HARNESS_LOAD_PLUGINS": "sft"})
    trainer = make_trainer(host, "wrong", TrainConfig(steps=5, batch_size=4))
    with pytest.raises(PluginError, match=r"the loss is nan at step 3 of round 1; metric 'ratio' went non-finite "
                                          r"first, at step 2 of round 1"):
        trainer.train_round(0)


def test_builtin_methods_return_one_value_per_row(tmp_path):
    """The first step of sft and dpo passes the contract (a per-row loss, scalar metrics)."""
    host = load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo"})
    for name in ("sft", "dpo"):
        trainer = make_trainer(host, name, TrainConfig(steps=1, batch_size=4))
        trainer.train_round(0)
        assert trainer.objective.checked


def test_harness_run_prints_one_line_and_the_log_and_debug_the_traceback(tmp_path):
    path = write_plugin(tmp_path, "b_by_3", CASES["b_by_3"][0])
    out = tmp_path / "cell"
    args = ("--plugin", str(path), "run", "--method", "wrong", "--benchmark", "didactic-r1", "--set", "train.steps=2",
            "--quiet", "--out", str(out))
    res = run_harness(*args, env={"OMP_NUM_THREADS": "1", "HARNESS_LOAD_PLUGINS": "didactic"})
    assert res.returncode == 1, res.stderr  # a plugin's bug at run time: 1, as in a sweep (2 is bad input)
    assert "Traceback" not in res.stderr
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("Error")]  # (progress lines go to stderr too)
    assert len(err) == 1 and res.stderr.rstrip().endswith(err[0]), res.stderr
    assert "method 'wrong'" in err[0] and "has shape [8, 3]" in err[0] and f"full traceback: {out / 'error.log'}" in err[0]
    assert "Traceback" in (out / "error.log").read_text()
    res = run_harness("--debug", *args, env={"OMP_NUM_THREADS": "1", "HARNESS_LOAD_PLUGINS": "didactic"})
    assert res.returncode != 0 and "Traceback" in res.stderr and "has shape [8, 3]" in res.stderr


def test_check_plugin_passes_a_builtin_and_fails_a_wrong_objective(tmp_path):
    from harness.authoring.checkplugin import check

    lines: list[str] = []
    rep = check("sft", base=load(env={"HARNESS_LOAD_PLUGINS": "sft"}), echo=lines.append)
    assert rep.failed == 0 and rep.passed == 6, lines
    assert any("loss shape [4] for B=4 rows" in ln for ln in lines)
    assert any("the gradient reaches" in ln for ln in lines) and any("same seed gives the same loss" in ln for ln in lines)
    path = write_plugin(tmp_path, "broadcast", CASES["broadcast"][0])
    lines.clear()
    rep = check(str(path), echo=lines.append)
    assert rep.failed == 1 and lines[0].startswith("ok    plugin 'wrong_broadcast'")
    assert lines[1].startswith("FAIL  method 'wrong'") and "[B, B] broadcast" in lines[1]
