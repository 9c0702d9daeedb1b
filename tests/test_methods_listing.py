"""`harness methods`: every method names its family, the data it needs and its paper; --family filters."""

from __future__ import annotations

import json

from click.testing import CliRunner

from harness.cli.app import cli
from harness.core.registry import METHOD_FAMILIES

NEW = {"simpo", "cpo", "orpo", "rdpo", "dpop", "cdpo", "robust-dpo", "slic-hf", "nca", "apo-zero", "apo-down", "exo",
       "bco", "sppo", "wpo", "discopop", "kto", "grpo", "dr-grpo", "dapo", "raft", "remax", "reinforce-pp"}


def _methods(*args: str):
    return CliRunner().invoke(cli, ["methods", *args], catch_exceptions=False)


def test_methods_json_lists_every_method_with_family_needs_and_paper():
    out = _methods("--json")
    assert out.exit_code == 0
    rows = {r["name"]: r for r in json.loads(out.output)}
    assert len(rows) >= 37 and NEW <= set(rows)
    for name, r in rows.items():
        assert r["family"] in METHOD_FAMILIES, name
        assert r["paper"] and r["needs"], name
    assert rows["kto"]["needs"] == ["feedback"] and rows["kto"]["family"] == "unpaired-feedback"
    assert rows["grpo"]["needs"] == ["prompts", "reward"] and "2402.03300" in rows["grpo"]["paper"]
    assert rows["simpo"]["family"] == rows["dpo"]["family"] == "preference"


def test_family_filter_and_a_family_that_does_not_exist():
    out = _methods("--family", "preference", "--json")
    names = {r["name"] for r in json.loads(out.output)}
    assert {"dpo", "ipo", "simpo", "nca", "exo"} <= names and not names & {"grpo", "sft", "kto"}
    text = _methods("--family", "on-policy").output
    assert "family: on-policy" in text and "paper: Yu et al. 2025" in text and "needs: prompts, reward" in text
    bad = CliRunner().invoke(cli, ["methods", "--family", "prefrence"])
    assert bad.exit_code == 2 and "families: imitation, on-policy, preference" in bad.output


def test_a_parameter_shows_its_declared_range_and_one_without_shows_none():
    rows = {r["name"]: r for r in json.loads(_methods("rloo", "--json").output)[0]["params"]}
    assert rows["n"]["range"] == ">= 2" and rows["kl_coef"]["range"] == ">= 0"
    assert rows["reward_source"]["range"] == ""
    lines = {line.split("=")[0].strip(): line for line in _methods("rloo").output.splitlines() if "--set " in line}
    assert " >= 0 " in lines["--set kl_coef"] and ">=" not in rows["kl_coef"]["help"]
    assert ">" not in lines["--set reward_source"]  # no declared range: the column stays blank
    bench = CliRunner().invoke(cli, ["benchmarks", "gsm8k", "--json"], catch_exceptions=False)
    ranges = {r["name"]: r["range"] for r in json.loads(bench.output)[0]["params"]}
    assert ranges["limit"] == ">= 1" and ranges["path"] == ""
