"""A JSON Schema of the suite format, for editors (completion and checking of suite TOML files).

Generated from the code: the suite's top-level keys (:mod:`harness.suite.expand`), the trainer's settings
(:class:`~harness.training.trainer.TrainConfig`), and the parameters of every registered method and benchmark. The
built-ins' schema ships as ``docs/suite.schema.json`` (a test keeps it in sync and validates every suite
in ``suites/`` against it); ``harness schema --out FILE`` writes it for the plugins loaded here.

In VS Code with *Even Better TOML* (taplo), put ``#:schema ./docs/suite.schema.json`` on a suite's first
line, or map ``suites/*.toml`` to it in the settings.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from harness.core.plugins import PluginHost

SCHEMA_ID = "https://alignment-harness.invalid/suite.schema.json"


def type_schema(tp: Any) -> dict[str, Any]:
    """A JSON Schema for a parameter's annotation (TOML has no null: ``None`` means "leave it out")."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        parts = [type_schema(a) for a in typing.get_args(tp) if a is not type(None)]
        return parts[0] if len(parts) == 1 else {"anyOf": parts}
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return {"type": "array", **({"items": type_schema(args[0])} if args else {})}
    if origin is dict or tp is dict:
        return {"type": "object"}
    return {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
            str: {"type": "string"}}.get(tp, {})


_RANGE_KEYS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


def params_schema(cls: Any, *, grid: bool = False, ranges: bool = False) -> dict[str, dict[str, Any]]:
    """Properties for a params dataclass; with ``grid`` each may also be a list of values (a grid axis); with
    ``ranges`` a field's declared bounds (``param(..., ge=1)``) become JSON Schema ``minimum`` & co."""
    if cls is None or not dataclasses.is_dataclass(cls):
        return {}
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        s = dict(type_schema(hints.get(f.name, Any)))
        if ranges and f.metadata.get("bounds"):
            s.update({_RANGE_KEYS[k]: v for k, v in f.metadata["bounds"].items()})
        if grid:
            s = {"type": "array", "items": s} if s else {"type": "array"}
        help_ = f.metadata.get("help") if f.metadata else None
        default = f.default if f.default is not dataclasses.MISSING else None
        if help_:
            s["description"] = help_ + (f" (default {default!r})" if default is not None else "")
        out[f.name] = s
    return out


def _rule(names: dict[str, list[str]]) -> dict[str, Any]:
    def one_or_many(s: dict[str, Any]) -> dict[str, Any]:
        return {"anyOf": [s, {"type": "array", "items": s}]}

    return {"type": "object", "properties": {
        "method": one_or_many({"type": "string"}),
        "benchmark": one_or_many({"enum": names["benchmark"]}),
        "model": one_or_many({"type": "string"}),
        "seed": one_or_many({"type": "integer"}),
    }}


def suite_schema(host: PluginHost) -> dict[str, Any]:
    """The schema of a suite file for the methods and benchmarks that ``host`` registered."""
    from harness.suite.parse import TOP_KEYS
    from harness.training.trainer import TrainConfig

    reg = host.registry
    methods = dict(sorted(reg.specs["method"].items()))
    benches = dict(sorted(reg.specs["benchmark"].items()))
    names = {"method": list(methods), "benchmark": list(benches)}
    train = {"type": "object", "properties": params_schema(TrainConfig, ranges=True), "additionalProperties": False}
    train_grid = {"type": "object", "properties": params_schema(TrainConfig, grid=True, ranges=True),
                  "additionalProperties": False}
    all_method_params: dict[str, Any] = {}
    for spec in methods.values():
        for k, v in params_schema(spec.params).items():
            all_method_params.setdefault(k, v)

    def own(spec: Any) -> dict[str, Any]:
        """One method's parameters with their declared ranges, as values and as grid axes (the descriptions are
        the entry's)."""
        def bare(props: dict[str, Any]) -> dict[str, Any]:
            return {k: {kk: vv for kk, vv in v.items() if kk != "description"} for k, v in props.items()}

        return {"properties": {**bare(params_schema(spec.params, ranges=True)), "grid": {
            "properties": bare(params_schema(spec.params, grid=True, ranges=True))}}}

    entry = {
        "type": "object",
        "description": "A method entry: the table name is the method (or a label, with `method = NAME`); "
                       "other keys are the method's parameters.",
        "properties": {
            "method": {"enum": names["method"], "description": "the method, when the table name is a label"},
            "train": train,
            "grid": {"type": "object", "description": "grid axes: a list of values each (train = { lr = [...] })",
                     "properties": {"train": train_grid}},
            **all_method_params,
        },
        # a labelled entry (method = NAME) gets NAME's ranges; a table named after its method, below
        "allOf": [{"if": {"properties": {"method": {"const": name}}, "required": ["method"]},
                   "then": {"$ref": f"#/$defs/method-{name}"}} for name in methods],
    }
    named_entries = {name: {"allOf": [{"$ref": "#/$defs/entry"}, {"if": {"not": {"required": ["method"]}},
                                                                   "then": {"$ref": f"#/$defs/method-{name}"}}]}
                     for name in methods}
    defs = {"entry": entry, **{f"method-{name}": own(spec) for name, spec in methods.items()}}
    bench_params = {
        "type": "object",
        "properties": {name: {"type": "object", "properties": params_schema(spec.params, ranges=True),
                              "additionalProperties": False, "description": spec.description}
                       for name, spec in benches.items()},
        "additionalProperties": {"type": "object"},
    }
    props: dict[str, Any] = {
        "name": {"type": "string", "description": "the sweep's name (default: the file's stem)"},
        "description": {"type": "string"},
        "models": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                   "description": "tiny:<preset>, smollm2-135m, a hub name, a local directory or a .gguf file"},
        "benchmarks": {"type": "array", "items": {"anyOf": [{"enum": names["benchmark"]}, {"type": "string"}]},
                       "minItems": 1, "description": "each cell trains on and evaluates its benchmark"},
        "eval": {"type": "array", "items": {"type": "string"}, "description": "extra benchmarks evaluated in every cell"},
        "train_data": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                       "description": "datasets (or benchmarks) to train on, instead of `benchmarks`; each cell is "
                                      "evaluated on every `eval` benchmark (see `harness datasets`)"},
        "reward": {"type": "string", "description": "reward for prompt-only data: rm:<hub id or path>, "
                                                    "irl:<folder an irl-rm cell saved> or benchmark:<name>"},
        "seeds": {"type": "array", "items": {"type": "integer"}},
        "engine": {"type": "string", "description": "generation engine (see `harness engines`)"},
        "dtype": {"enum": ["float32", "bfloat16", "float16", "auto"]},
        "device": {"type": "string", "description": "cpu, cuda, cuda:N or auto"},
        "cell_timeout": {"type": "number", "exclusiveMinimum": 0, "description": "seconds per cell"},
        "jobs": {"type": "integer", "minimum": 1, "description": "local worker processes"},
        "threads": {"type": "integer", "minimum": 1, "description": "torch threads per worker"},
        "train": train,
        "data": {"type": "object", "description": "benchmark params for every benchmark of `benchmarks`"},
        "benchmark_params": bench_params,
        "methods": {"type": "object", "properties": named_entries, "additionalProperties": {"$ref": "#/$defs/entry"},
                    "propertyNames": {"pattern": "^[^.]+$"}},
        "exclude": {"type": "array", "items": _rule(names)},
        "include": {"type": "array", "items": {**_rule(names), "required": ["method"]}},
        "resources": {"type": "object", "properties": {"num_cpus": {"type": "number"}, "num_gpus": {"type": "number"}},
                      "additionalProperties": False},
        "leaderboard": {"type": "object", "additionalProperties": False, "properties": {
            "metrics": {"type": "array", "items": {"type": "string"}},
            "baseline": {"type": "string"},
            "correction": {"enum": ["holm", "bonferroni", "none"],
                           "description": "multiple-comparison correction of the leaderboard's tests (default holm)"},
            **{k: {"type": "array", "items": {"type": "string"}}
               for k in ("lower_is_better", "higher_is_better", "goals", "diagnostics")}}},
    }
    for key in TOP_KEYS:  # a key the suite loader knows and this file does not: allow it (kept in sync by a test)
        props.setdefault(key, {})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "alignment-harness suite",
        "description": "A sweep: models x benchmarks x method entries x seeds (see harness/suite/expand.py). Generated by "
                       "`harness schema`.",
        "type": "object",
        "required": ["models"],
        "anyOf": [{"required": ["benchmarks"]}, {"required": ["train_data"]}],
        "properties": props,
        "additionalProperties": False,
        "$defs": defs,
    }
