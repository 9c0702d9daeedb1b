"""Defaults that fit the model, the learning-rate warning, and the suite JSON Schema."""

from __future__ import annotations

import json
import re
import textwrap

import jsonschema
import pytest
import tomllib

from harness.cell.run import CellConfig, resolve
from harness.core.errors import HarnessError
from harness.core.plugins import load
from harness.suite.schema import suite_schema
from harness.training.defaults import GENERIC_REAL_LR, update_warning
from tests.conftest import ROOT

SHIPPED = ROOT / "docs" / "suite.schema.json"


@pytest.fixture(scope="module")
def host():
    return load()


def test_real_models_get_the_papers_settings_and_tiny_the_toys(host):
    toy = resolve(CellConfig(model="tiny:nano", method="dpo", benchmark="didactic-r1"), host)
    real = resolve(CellConfig(model="smollm2-135m", method="dpo", benchmark="didactic-r1"), host)
    assert toy.train.lr == 1e-3 and toy.train.optimizer == "adamw"
    assert real.train.lr == 5e-7 and real.train.optimizer == "rmsprop"  # DPO / SPIN / GSIL papers
    assert resolve(CellConfig(model="smollm2-135m", method="sft", benchmark="gsm8k-chat"), host).train.lr == 2e-5
    # what the user sets still wins
    mine = resolve(CellConfig(model="smollm2-135m", method="dpo", benchmark="didactic-r1", train={"lr": "1e-4"}), host)
    assert mine.train.lr == 1e-4
    online = resolve(CellConfig(model="org/some-llm", method="online-dpo", benchmark="didactic-r1"), host)
    assert online.method_params.beta == 0.1
    assert resolve(CellConfig(model="tiny:nano", method="online-dpo", benchmark="didactic-r1"), host).method_params.beta == 0.05


THIRD_PARTY = '''
from dataclasses import dataclass

from harness import MethodSpec, hookimpl, param


@dataclass(frozen=True)
class Params:
    beta: float = param(0.5, "strength")


@hookimpl
def register_methods(register):
    register(MethodSpec(name="my-method", description="d", paper="p", sampler=lambda ctx: [],
                        objective=lambda b, p: (b, {}), params=Params, train_defaults={"lr": 1e-3, "steps": 7},
                        real_train_defaults=REAL_TRAIN, real_params=REAL_PARAMS))
'''


def _third_party(tmp_path, real_train: dict, real_params: dict):
    path = tmp_path / "my_method.py"
    path.write_text(textwrap.dedent(THIRD_PARTY).replace("REAL_TRAIN", repr(real_train))
                    .replace("REAL_PARAMS", repr(real_params)))
    return load([str(path)])


def test_a_third_party_method_declares_its_real_model_defaults_on_its_spec(tmp_path):
    host = _third_party(tmp_path, {"lr": 3e-6, "optimizer": "rmsprop"}, {"beta": 0.1})
    cell = {"method": "my-method", "benchmark": "didactic-r1"}
    toy, real = resolve(CellConfig(model="tiny:nano", **cell), host), resolve(CellConfig(model="org/llm", **cell), host)
    assert (toy.train.lr, toy.train.optimizer, toy.train.steps, toy.method_params.beta) == (1e-3, "adamw", 7, 0.5)
    assert (real.train.lr, real.train.optimizer, real.train.steps, real.method_params.beta) == (3e-6, "rmsprop", 7, 0.1)
    mine = resolve(CellConfig(model="org/llm", method_params={"beta": "0.2"}, train={"lr": "1e-4"}, **cell), host)
    assert (mine.train.lr, mine.method_params.beta) == (1e-4, 0.2)  # the suite / --set still wins


def test_a_method_without_paper_values_gets_the_generic_real_lr(tmp_path):
    host = _third_party(tmp_path, {}, {})
    real = resolve(CellConfig(model="org/llm", method="my-method", benchmark="didactic-r1"), host)
    assert (real.train.lr, real.train.steps, real.method_params.beta) == (GENERIC_REAL_LR, 7, 0.5)


def test_a_real_default_outside_the_params_is_a_one_line_error(tmp_path):
    host = _third_party(tmp_path, {}, {"betta": 0.1})
    with pytest.raises(HarnessError, match="method my-method: unknown parameter 'betta'.*did you mean 'beta'"):
        resolve(CellConfig(model="org/llm", method="my-method", benchmark="didactic-r1"), host)


def test_the_host_names_no_method_in_its_defaults(host):
    """Paper defaults live on each MethodSpec; the host's defaults module knows no method by name."""
    text = (ROOT / "harness" / "training" / "defaults.py").read_text()
    named = {n for n in host.registry.specs["method"] if re.search(rf"[\"']{re.escape(n)}[\"']", text)}
    assert not named, named


def test_warning_when_the_update_is_far_outside_the_usual_range():
    assert update_warning("tiny:nano", 10_000, 1e-2) is None
    msg = update_warning("smollm2-135m", 135_000_000, 1e-3)
    assert msg and "train.lr=0.001" in msg and "135M" in msg
    assert update_warning("smollm2-135m", 135_000_000, 2e-5) is None
    assert update_warning("llama-7b", 7_000_000_000, 1e-4) is not None  # bigger models: lower range
    assert update_warning("llama-7b", 7_000_000_000, 1e-4, lora=True) is None


def test_shipped_schema_is_current_and_every_suite_validates(host):
    generated = suite_schema(host)
    assert json.loads(SHIPPED.read_text()) == generated, \
        "docs/suite.schema.json is stale: run `harness schema --out docs/suite.schema.json`"
    validator = jsonschema.Draft202012Validator(generated)
    suites = sorted((ROOT / "suites").glob("*.toml"))
    assert len(suites) >= 5
    for path in suites:
        errors = [e.message for e in validator.iter_errors(tomllib.loads(path.read_text()))]
        assert not errors, (path.name, errors)


def test_schema_catches_typos_and_wrong_types(host):
    validator = jsonschema.Draft202012Validator(suite_schema(host))
    good = {"models": ["tiny:nano"], "benchmarks": ["didactic-r1"], "train": {"lr": 1e-3},
            "methods": {"dpo": {"beta": 0.1, "grid": {"train": {"lr": [1e-3, 1e-4]}}}}}
    assert not list(validator.iter_errors(good))
    for bad in ({**good, "modles": ["x"]}, {**good, "train": {"lrr": 1}}, {**good, "train": {"steps": "many"}},
                {**good, "benchmark_params": {"didactic-r1": {"n_statez": 3}}}):
        assert list(validator.iter_errors(bad)), bad


def test_schema_carries_each_methods_and_benchmarks_declared_ranges(host):
    """A table named after its method, a labelled entry (method = NAME) and a grid axis get that method's ranges
    (param(..., gt=0)); benchmark_params get the benchmark's."""
    validator = jsonschema.Draft202012Validator(suite_schema(host))
    base = {"models": ["tiny:nano"], "benchmarks": ["didactic-r1"]}
    for methods in ({"dpo": {"beta": 0.1}}, {"strong": {"method": "dpo", "beta": 0.5}},
                    {"dpo": {"grid": {"beta": [0.05, 0.1]}}}, {"rloo": {"n": 2}}):
        assert not list(validator.iter_errors({**base, "methods": methods})), methods
    for methods in ({"dpo": {"beta": -1.0}}, {"strong": {"method": "dpo", "beta": 0.0}},
                    {"dpo": {"grid": {"beta": [0.05, -0.1]}}}, {"rloo": {"n": 1}}):
        assert list(validator.iter_errors({**base, "methods": methods})), methods
    bad_bench = {**base, "methods": {"sft": {}}, "benchmark_params": {"didactic-r1": {"n_states": 0}}}
    assert list(validator.iter_errors(bad_bench))

