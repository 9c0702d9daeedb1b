"""Strict parameter overrides: defaults -> suite -> --set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from harness.core.errors import HarnessError
from harness.core.params import apply_overrides, describe, param, parse_set


@dataclass(frozen=True)
class P:
    beta: float = param(0.1, "strength")
    n: int = param(4, "samples")
    loss: Literal["logistic", "hinge"] = param("logistic", "loss")
    limit: int | None = param(None, "cap")
    greedy: bool = param(True, "decode greedily")
    ks: tuple[int, ...] = param((1, 10), "k values")


def test_overrides_from_strings_convert_types():
    p = apply_overrides(P, parse_set(["beta=0.5", "n=8", "loss=hinge", "limit=none", "greedy=false", "ks=1,5"]),
                        where="--set", from_string=True)
    assert p == P(beta=0.5, n=8, loss="hinge", limit=None, greedy=False, ks=(1, 5))


def test_overrides_from_a_suite_keep_types_strict():
    assert apply_overrides(P(), {"beta": 1, "limit": 3}, where="suite").beta == 1.0
    with pytest.raises(HarnessError, match=r"suite: parameter 'n' expects int, got 2.5"):
        apply_overrides(P(), {"n": 2.5}, where="suite")
    with pytest.raises(HarnessError, match=r"parameter 'loss' expects 'logistic' \| 'hinge', got 'brier'"):
        apply_overrides(P(), {"loss": "brier"}, where="suite")
    with pytest.raises(HarnessError, match="expects bool"):
        apply_overrides(P(), {"greedy": "maybe"}, where="--set", from_string=True)


def test_unknown_key_lists_valid_keys_and_suggests():
    with pytest.raises(HarnessError) as err:
        apply_overrides(P(), {"betta": 0.2}, where="method dpo")
    msg = str(err.value.message)
    assert "method dpo: unknown parameter 'betta' (did you mean 'beta'?)" in msg
    assert "valid keys: beta, n, loss, limit, greedy, ks" in msg


def test_parse_set_rejects_malformed():
    with pytest.raises(HarnessError, match="expected key=value"):
        parse_set(["beta"])


def test_describe_lists_types_defaults_help():
    rows = {r["name"]: r for r in describe(P)}
    assert rows["beta"] == {"name": "beta", "type": "float", "default": 0.1, "help": "strength", "range": ""}
    assert rows["limit"]["type"] == "int | None"


def test_describe_words_each_declared_range_and_leaves_the_rest_empty():
    rows = {r["name"]: r["range"] for r in describe(Bounded)}
    assert rows == {"beta": "> 0", "n": ">= 2", "eps": "in [0, 0.5)", "gamma": "in (0, 1]", "limit": ">= 1"}


def test_params_are_frozen():
    with pytest.raises(AttributeError):
        P().beta = 1.0  # type: ignore[misc]


@dataclass(frozen=True)
class Bounded:
    beta: float = param(0.1, "strength", gt=0)
    n: int = param(4, "samples", ge=2)
    eps: float = param(0.1, "flip rate", ge=0, lt=0.5)
    gamma: float = param(1.0, "discount", gt=0, le=1)
    limit: int | None = param(None, "cap", ge=1)


@pytest.mark.parametrize(("key", "value", "range_"), [
    ("beta", "0", "> 0"), ("beta", "-1", "> 0"), ("beta", "nan", "> 0"), ("n", "1", ">= 2"),
    ("eps", "0.5", "in [0, 0.5)"), ("eps", "-0.1", "in [0, 0.5)"), ("gamma", "0", "in (0, 1]"),
    ("gamma", "1.5", "in (0, 1]"), ("limit", "0", ">= 1"),
])
def test_a_value_outside_its_declared_bounds_is_one_line_naming_the_place_and_the_range(key, value, range_):
    with pytest.raises(HarnessError) as err:
        apply_overrides(Bounded, {key: value}, where="method m", from_string=True)
    got = repr(float(value)) if key != "n" and key != "limit" else value
    assert err.value.message == f"method m: parameter '{key}' must be {range_}, got {got}"


def test_values_on_the_inclusive_edges_and_none_pass():
    p = apply_overrides(Bounded, {"n": 2, "eps": 0, "gamma": 1, "limit": None, "beta": 1e-9}, where="suite")
    assert (p.n, p.eps, p.gamma, p.limit, p.beta) == (2, 0.0, 1.0, None, 1e-9)


def test_bounds_are_declared_sensibly():
    with pytest.raises(TypeError, match="default 0 is not >= 1"):
        param(0, "n", ge=1)
    with pytest.raises(TypeError, match="at most one lower bound"):
        param(1, "n", ge=0, gt=0)
    with pytest.raises(TypeError):
        param(1, "n", min=0)  # the old spelling is gone: ge= / le=


def test_train_ranges_are_declared_once_on_trainconfig_and_both_paths_use_them(tmp_path):
    """TrainConfig's param(ge=...) is the one place a train range lives, and check_value the one check: ``harness
    run`` (apply_overrides) and a suite key refuse the same values with the same words (the suite naming its key),
    and the suite schema shows the same minimum."""
    import dataclasses

    from harness.core.params import apply_overrides, check_value
    from harness.core.plugins import get_host
    from harness.suite.expand import load_suite
    from harness.suite.schema import params_schema
    from harness.training.trainer import TrainConfig

    declared = {f.name: f.metadata["bounds"] for f in dataclasses.fields(TrainConfig) if "bounds" in f.metadata}
    assert {"rounds", "steps", "batch_size", "grad_accum", "lr", "weight_decay", "warmup_ratio", "max_grad_norm",
            "lora_r", "ref_batch_size"} <= set(declared)
    schema = params_schema(TrainConfig, ranges=True)
    suite = tmp_path / "s.toml"
    for key, value in (("steps", 0), ("batch_size", -2), ("rounds", -1), ("lr", 0.0), ("lr", float("inf")),
                       ("warmup_ratio", 1.5), ("weight_decay", -0.1), ("lr", float("nan"))):
        with pytest.raises(HarnessError, match=rf"^train: parameter '{key}' must be ") as by_run:
            apply_overrides(TrainConfig, {key: value}, where="train")
        written = {float("inf"): "inf", float("nan"): "nan"}.get(value, repr(value)) if isinstance(value, float) \
            else str(value)
        suite.write_text(f'models = ["tiny:nano"]\nbenchmarks = ["didactic-r1"]\n[methods.sft]\n'
                         f'[methods.dpo.grid.train]\n{key} = [{written}]\n')
        with pytest.raises(HarnessError) as by_suite:
            load_suite(suite, get_host())
        assert str(by_suite.value) == f"{suite}: methods.dpo.grid.train.{key}" + str(by_run.value)[len("train"):]
    for key, value in (("steps", 1), ("rounds", 0), ("lr", 1e-9), ("warmup_ratio", 1.0), ("max_grad_norm", 0.0)):
        assert getattr(apply_overrides(TrainConfig, {key: value}, where="train"), key) == value
        assert check_value(TrainConfig, key, value, where="t") == value
    assert schema["steps"]["minimum"] == 1 and schema["lr"]["exclusiveMinimum"] == 0
    assert schema["warmup_ratio"]["minimum"] == 0 and schema["warmup_ratio"]["maximum"] == 1
