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
    assert rows["beta"] == {"name": "beta", "type": "float", "default": 0.1, "help": "strength"}
    assert rows["limit"]["type"] == "int | None"


def test_params_are_frozen():
    with pytest.raises(AttributeError):
        P().beta = 1.0  # type: ignore[misc]
