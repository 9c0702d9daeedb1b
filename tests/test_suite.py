"""Suite files: expansion (grids, variants, exclude/include, --set) and validation before any training."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.core.errors import HarnessError
from harness.core.plugins import load
from harness.suite.expand import load_suite
from harness.suite.parse import make_label, parse_assignment
from tests.conftest import ROOT

SUITE = """\
name = "t"
models = ["tiny:nano"]
benchmarks = ["didactic-r1", "didactic-r2"]
seeds = [0, 1]
[train]
steps = 5
[benchmark_params.didactic-r1]
warm_steps = 3
[methods.sft]
[methods.dpo]
beta = 0.1
[methods.dpo.grid]
beta = [0.05, 0.1]
[methods."dpo-strong"]
method = "dpo"
beta = 0.5
[methods."dpo-strong".train]
lr = 1e-4
[[exclude]]
method = "sft"
benchmark = "didactic-r2"
[[exclude]]
method = "dpo-strong"
seed = 1
[[include]]
method = "dpo"
benchmark = "didactic-r2"
seed = 0
beta = 0.3
steps = 7
"""

NO_DEMOS = '''\
"""A benchmark that provides preferences only."""
from harness import hookimpl
from harness.core.context import EvalResult
from harness.core.registry import BenchmarkSpec


@hookimpl
def register_benchmarks(register):
    register(BenchmarkSpec(name="prefs-only", description="-", paper="-",
                           evaluate=lambda ctx: EvalResult({"x": 0.0}), provides=frozenset({"preferences"}),
                           data=lambda kind, ctx: []))
'''


@pytest.fixture(scope="module")
def host():
    return load()


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_expansion_grid_variants_exclude_include(tmp_path, host):
    suite = load_suite(write(tmp_path, SUITE), host)
    got = sorted((c.label, c.config.benchmark, c.config.seed) for c in suite.cells)
    want = sorted(
        [("sft", "didactic-r1", s) for s in (0, 1)]
        + [(f"dpo(beta={b})", bench, s) for b in ("0.05", "0.1") for bench in ("didactic-r1", "didactic-r2")
           for s in (0, 1)]
        + [("dpo-strong", bench, 0) for bench in ("didactic-r1", "didactic-r2")]
        + [("dpo(beta=0.3, steps=7)", "didactic-r2", 0)]
    )
    assert got == want
    by_label = {(c.label, c.config.benchmark, c.config.seed): c for c in suite.cells}
    strong = by_label[("dpo-strong", "didactic-r1", 0)]
    assert strong.resolved["method_params"]["beta"] == 0.5 and strong.resolved["train"]["lr"] == 1e-4
    assert strong.resolved["train"]["steps"] == 5
    assert strong.resolved["benchmark_params"]["warm_steps"] == 3
    inc = by_label[("dpo(beta=0.3, steps=7)", "didactic-r2", 0)]
    assert inc.resolved["method_params"]["beta"] == 0.3 and inc.resolved["train"]["steps"] == 7
    assert len({c.id for c in suite.cells}) == len(suite.cells)
    # ids are stable, and the sweep id too
    again = load_suite(write(tmp_path, SUITE), host)
    assert [c.id for c in again.cells] == [c.id for c in suite.cells] and again.id == suite.id
    assert suite.id.startswith("t-")
    # the id covers plugin versions: same resolved config, other plugin version -> other id
    from harness.suite.expand import sweep_cell_id

    c = suite.cells[0]
    assert sweep_cell_id(c.base_id, c.plugins) == c.id
    assert sweep_cell_id(c.base_id, {k: "9.9" for k in c.plugins}) != c.id
    assert set(c.plugins) >= {"didactic", "engines"}


def test_each_suite_value_is_checked_once_however_many_cells_use_it(tmp_path, host, monkeypatch):
    """The typed pass: a value is checked (type, declared range) once where the suite gives it, not once per cell
    that uses it; the cells combine typed values. Counts the calls of the one check, per (key, value)."""
    import collections

    import harness.core.params as params
    import harness.suite.plan as plan

    calls: collections.Counter = collections.Counter()
    real = params.check_value

    def counted(cls, key, value, **kw):
        calls[key, str(value)] += 1
        return real(cls, key, value, **kw)

    monkeypatch.setattr(params, "check_value", counted)  # check_values and apply_overrides call it by this name
    monkeypatch.setattr(plan, "check_value", counted)
    suite = load_suite(write(tmp_path, """
        models = ["tiny:nano", "tiny:micro"]
        benchmarks = ["didactic-r1", "didactic-r2"]
        seeds = [0, 1, 2]
        train = {steps = 3}
        data = {warm_steps = 2}
        [methods.dpo.grid]
        beta = [0.05, 0.1, 0.2]
        [methods.dpo.grid.train]
        lr = ["1e-3", 2e-3]
        [[include]]
        method = "dpo"
        beta = 0.4
        """), host)
    assert len(suite.cells) == 2 * 2 * 3 * 3 * 2 + 2 * 2 * 3  # 84 cells, each typed
    assert {c.resolved["train"]["lr"] for c in suite.cells} == {1e-3, 2e-3}
    assert {c.resolved["method_params"]["beta"] for c in suite.cells} == {0.05, 0.1, 0.2, 0.4}
    for key, value in (("beta", 0.05), ("beta", 0.1), ("beta", 0.2), ("lr", "1e-3"), ("lr", 0.002),
                       ("steps", 3), ("beta", 0.4)):
        assert calls[key, str(value)] == 1, (key, value, calls[key, str(value)])
    assert calls["warm_steps", "2"] == 2  # data applies to each of the two benchmarks, checked against each's params


def test_set_overrides_apply_before_expansion(tmp_path, host):
    path = write(tmp_path, SUITE)
    suite = load_suite(path, host, ["seeds=[0]", "train.steps=9", "methods.dpo-strong.beta=0.7",
                                    'methods."dpo-strong".train.lr=0.01'])
    assert {c.config.seed for c in suite.cells} == {0}
    assert all(c.resolved["train"]["steps"] in (9, 7) for c in suite.cells)
    strong = [c for c in suite.cells if c.label == "dpo-strong"]
    assert strong and all(c.resolved["method_params"]["beta"] == 0.7 for c in strong)
    assert all(c.resolved["train"]["lr"] == 0.01 for c in strong)
    assert parse_assignment("methods.dpo.grid.beta=[0.1, 0.2]") == (
        "methods.dpo.grid.beta", {"methods": {"dpo": {"grid": {"beta": [0.1, 0.2]}}}})
    assert parse_assignment("name=plain words")[1] == {"name": "plain words"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('beta = [0.05, 0.1]', 'beta = [0.05, "high"]'),
         "s.toml: methods.dpo.grid.beta: parameter 'beta' expects float, got 'high'"),
        (('[methods.sft]', '[methods.sfft]'), "s.toml: methods.sfft: unknown method 'sfft' (did you mean 'sft'?)"),
        (('"didactic-r2"]', '"didactic-r3"]'),
         "s.toml: benchmarks: unknown benchmark 'didactic-r3' (did you mean 'didactic-r2'?)"),
        (('seeds = [0, 1]', 'seeds = [0, 1]\nsteps = 3'), "s.toml: steps: unknown top-level key"),
        (('[train]\nsteps = 5', '[train]\nstepz = 5'), "s.toml: train.stepz: unknown parameter 'stepz' (did you "
                                                      "mean 'steps'?)"),
        (('lr = 1e-4', 'lr = "fast"'), "s.toml: methods.dpo-strong.train.lr: parameter 'lr' expects float"),
        (('warm_steps = 3', 'warm_stepz = 3'), "s.toml: benchmark_params.didactic-r1.warm_stepz: unknown parameter"),
        (('beta = [0.05, 0.1]', 'beta = 0.05'), "s.toml: methods.dpo.grid.beta: a grid axis is a non-empty list"),
        (('seed = 1\n', 'sed = 1\n'), "s.toml: exclude[1].sed: unknown key (did you mean 'seed'?)"),
        (('seeds = [0, 1]', 'seeds = [0, "1"]'), "s.toml: seeds: expected a non-empty list of integers"),
        (('models = ["tiny:nano"]', 'models = ["tiny:nanoo"]'), "s.toml: models.0: unknown tiny preset 'nanoo'"),
    ],
)
def test_errors_name_file_key_and_fix(tmp_path, host, edit, message):
    old, new = edit
    assert old in SUITE
    path = write(tmp_path, SUITE.replace(old, new, 1))
    with pytest.raises(HarnessError) as err:
        load_suite(path, host)
    assert message in err.value.message.replace(str(tmp_path) + "/", "")


def test_benchmark_params_reach_eval_only_benchmarks(tmp_path, host):
    """An eval-only benchmark takes its benchmark_params (e.g. an lm-eval task's shot count); the cell's
    evaluation uses them, the ids of cells without them do not change, bad keys are one-line errors."""
    text = SUITE.replace('seeds = [0, 1]', 'seeds = [0]\neval = ["didactic-multi-r1"]')
    plain = load_suite(write(tmp_path, text), host)
    withp = load_suite(write(tmp_path, text + '[benchmark_params.didactic-multi-r1]\neval_samples = 64\n', "p.toml"),
                       host)
    for c in withp.cells:
        (name, _, params), = [e for e in c.resolved["evals"] if e[0] == "didactic-multi-r1"]
        assert params["eval_samples"] == 64 and c.config.eval_params == {"didactic-multi-r1": {"eval_samples": 64}}
    assert all(dict(e[2])["eval_samples"] != 64 for c in plain.cells for e in c.resolved["evals"]
               if e[0] == "didactic-multi-r1")
    assert {c.base_id for c in plain.cells}.isdisjoint({c.base_id for c in withp.cells})
    bad = write(tmp_path, text + '[benchmark_params.didactic-multi-r1]\neval_sampels = 64\n', "b.toml")
    with pytest.raises(HarnessError, match=r"b.toml: benchmark_params.didactic-multi-r1.eval_sampels: unknown parameter"):
        load_suite(bad, host)
    nowhere = write(tmp_path, text + '[benchmark_params.didactic-multi-r2]\neval_samples = 64\n', "n.toml")
    with pytest.raises(HarnessError, match="neither in benchmarks nor in eval"):
        load_suite(nowhere, host)
    from harness.cell.run import CellConfig, resolve

    with pytest.raises(HarnessError, match="eval_params for 'didactic-r2', which is not among the eval benchmarks"):
        resolve(CellConfig(model="tiny:nano", method="sft", benchmark="didactic-r1",
                           eval_params={"didactic-r2": {"warm_steps": 1}}), host)


def test_set_errors_say_it_was_set(tmp_path, host):
    with pytest.raises(HarnessError, match=r"s.toml \(--set\): methods.dpo.beta: parameter 'beta' expects float"):
        load_suite(write(tmp_path, SUITE), host, ["methods.dpo.beta=high"])
    with pytest.raises(HarnessError, match="expected KEY=VALUE"):
        load_suite(write(tmp_path, SUITE), host, ["seeds"])


def test_toml_syntax_error_names_file(tmp_path, host):
    with pytest.raises(HarnessError, match=r"s.toml: invalid TOML: .*line 2"):
        load_suite(write(tmp_path, 'name = "x"\nmodels = ]\n'), host)
    with pytest.raises(HarnessError, match="no such suite file"):
        load_suite(tmp_path / "missing.toml", host)


def test_needs_vs_provides_checked_with_fix(tmp_path):
    plugin = write(tmp_path, NO_DEMOS, "prefs_only.py")
    host = load([str(plugin)])
    text = """\
        models = ["tiny:nano"]
        benchmarks = ["didactic-r1", "prefs-only"]
        [methods.sft]
        [methods.dpo]
    """
    with pytest.raises(HarnessError) as err:
        load_suite(write(tmp_path, text), host)
    msg = err.value.message
    assert "methods.sft: method 'sft' needs demonstrations, which benchmark 'prefs-only' does not provide" in msg
    assert '[[exclude]] method = "sft" benchmark = "prefs-only"' in msg
    fixed = text + '[[exclude]]\nmethod = "sft"\nbenchmark = "prefs-only"\n'
    suite = load_suite(write(tmp_path, fixed), host)
    assert sorted((c.label, c.config.benchmark) for c in suite.cells) == [
        ("dpo", "didactic-r1"), ("dpo", "prefs-only"), ("sft", "didactic-r1")]
    assert not suite.warnings


def test_everything_excluded_and_unmatched_rules(tmp_path, host):
    base = 'models = ["tiny:nano"]\nbenchmarks = ["didactic-r1"]\n[methods.sft]\n'
    with pytest.raises(HarnessError, match="expands to no cells"):
        load_suite(write(tmp_path, base + '[[exclude]]\nmethod = "sft"\n'), host)
    suite = load_suite(write(tmp_path, base + '[[exclude]]\nmethod = "sft"\nseed = 7\n'), host)
    assert len(suite.cells) == 1 and "exclude[0]: matches no cell" in suite.warnings[0]


def test_labels():
    assert make_label("dpo", {}) == "dpo"
    assert make_label("dpo", {"beta": 0.05, "lr": 1e-4, "loss": "sigmoid"}) == "dpo(beta=0.05, lr=0.0001, loss=sigmoid)"


@pytest.mark.parametrize("suite_file", sorted((ROOT / "suites").glob("*.toml")), ids=lambda p: p.name)
def test_dry_run_every_suite(suite_file, tmp_path):
    """CI's check: every suite in suites/ expands and validates (`harness sweep --dry-run`)."""
    from harness.cli.app import cli

    store = tmp_path / "db.sqlite"
    result = CliRunner().invoke(cli, ["sweep", "--dry-run", str(suite_file), "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert " cells in sweep " in result.output and "valid" in result.output
    assert not store.exists()  # a dry run writes nothing
