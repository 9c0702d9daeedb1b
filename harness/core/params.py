"""Frozen parameter dataclasses and strict overrides (defaults -> suite file -> ``--set k=v``).

A method's or benchmark's parameters are a frozen dataclass with defaults; a field's
``metadata["help"]`` is its one-line description and ``metadata["bounds"]`` its declared range
(``param(..., ge=1)``). Overrides are strict and checked once, here: an unknown key lists the valid keys, a
wrong type names the expected one, a number outside its bounds names the range.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Union

from harness.core.errors import HarnessError, did_you_mean


def param(default: Any, help: str = "", *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field with a default and a one-line help text.

    ``ge=`` / ``gt=`` / ``le=`` / ``lt=`` bound a number (>=, >, <=, <): :func:`apply_overrides` checks them
    once, where the suite file or ``--set`` gives the value, and a value outside is a one-line error naming
    the place and the allowed range. The default itself must lie inside (checked here)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or a frozen value as a parameter default")
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if ("ge" in bounds and "gt" in bounds) or ("le" in bounds and "lt" in bounds):
        raise TypeError("give at most one lower bound (ge or gt) and one upper bound (le or lt)")
    meta = {"help": help, **({"bounds": bounds} if bounds else {})}
    if bounds and (problem := _out_of_range(default, bounds)):
        raise TypeError(f"parameter default {default!r} is not {problem}")
    return dataclasses.field(default=default, metadata=meta)


def _out_of_range(value: Any, bounds: Mapping[str, float]) -> str | None:
    """None if ``value`` (a number; anything else passes, e.g. None) lies inside ``bounds``, else the range in
    words (``>= 1``, ``in (0, 1]``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    lo, hi = bounds.get("ge", bounds.get("gt")), bounds.get("le", bounds.get("lt"))
    if isinstance(value, float) and not math.isfinite(value):  # nan and inf lie in no declared range
        return _in_words(bounds, lo, hi)
    inside = ((lo is None or (value >= lo if "ge" in bounds else value > lo))
              and (hi is None or (value <= hi if "le" in bounds else value < hi)))
    if inside:
        return None
    return _in_words(bounds, lo, hi)


def _in_words(bounds: Mapping[str, float], lo: float | None, hi: float | None) -> str:
    if hi is None:
        return f"{'>=' if 'ge' in bounds else '>'} {lo:g}"
    if lo is None:
        return f"{'<=' if 'le' in bounds else '<'} {hi:g}"
    return f"in {'[' if 'ge' in bounds else '('}{lo:g}, {hi:g}{']' if 'le' in bounds else ')'}"


@functools.lru_cache(maxsize=512)  # read-only; get_type_hints is most of a suite cell's expansion time
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def type_name(tp: Any) -> str:
    """A readable name for a type annotation (``float``, ``int | None``, ``'a' | 'b'``)."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        return f"tuple[{', '.join(type_name(a) for a in args)}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, from_string: bool) -> Any:
    """Convert ``value`` to ``tp`` or raise ValueError. Strings come from ``--set``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is typing.Literal:
        for choice in typing.get_args(tp):
            if value == choice or (from_string and str(choice) == value):
                return choice
        raise ValueError
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (from_string and value.lower() in ("none", "null"))):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, from_string)
            except ValueError:
                continue
        raise ValueError
    if origin is tuple:
        args = typing.get_args(tp)
        if from_string:
            value = [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
        if not isinstance(value, (list, tuple)):
            raise ValueError
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, from_string) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_string and value.lower() in ("true", "1", "yes", "on"):
            return True
        if from_string and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError
    if tp is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            return value
        if from_string:
            return int(value)
        raise ValueError
    if tp is float:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, (int, float)):
            return float(value)
        if from_string:
            return float(value)
        raise ValueError
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ValueError


def check_value(params: Any, key: str, value: Any, *, where: str, from_string: bool = False) -> Any:
    """The one check a value gets: ``value`` for field ``key`` of the params dataclass ``params`` (a class or an
    instance), converted to the field's type (strings from ``--set`` parsed when ``from_string``) and checked
    against its declared range; returns the typed value, or raises a one-line error naming ``where``. Typed
    values combine afterwards with :func:`dataclasses.replace`, with no second check."""
    cls = params if isinstance(params, type) else type(params)
    fields = _field_types(cls)
    if key not in fields:
        valid = ", ".join(fields) or "(none)"
        raise HarnessError(f"{where}: unknown parameter '{key}'{did_you_mean(key, fields)}; valid keys: {valid}")
    try:
        typed = _coerce(value, fields[key], from_string and isinstance(value, str))
    except (ValueError, TypeError):
        raise HarnessError(f"{where}: parameter '{key}' expects {type_name(fields[key])}, got {value!r}") from None
    _check_range(cls, key, typed, where)
    return typed


def check_values(params: Any, values: Mapping[str, Any], *, where: str, from_string: bool = False) -> dict[str, Any]:
    """:func:`check_value` for each of ``values``: the typed values, keyed as given."""
    return {k: check_value(params, k, v, where=where, from_string=from_string) for k, v in values.items()}


def apply_overrides(params: Any, overrides: Mapping[str, Any], *, where: str, from_string: bool = False) -> Any:
    """Return a copy of the frozen dataclass ``params`` (or class) with ``overrides`` applied, each value
    checked once (:func:`check_value`)."""
    if isinstance(params, type):
        params = params()
    return dataclasses.replace(params, **check_values(params, overrides, where=where, from_string=from_string))


def _check_range(cls: type, key: str, value: Any, where: str) -> None:
    """A number outside its field's declared bounds is a one-line error."""
    declared = _field_meta(cls).get(key, {}).get("bounds")
    if declared and (problem := _out_of_range(value, declared)):
        raise HarnessError(f"{where}: parameter '{key}' must be {problem}, got {value!r}")


@functools.lru_cache(maxsize=512)
def _field_meta(cls: type) -> dict[str, Any]:
    return {f.name: f.metadata for f in dataclasses.fields(cls)}


def parse_set(items: Iterable[str], where: str = "--set") -> dict[str, str]:
    """Parse ``key=value`` strings (values stay strings; :func:`apply_overrides` converts them)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HarnessError(f"{where}: expected key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def describe(cls: type) -> list[dict[str, Any]]:
    """Name, type, default, help and declared range in words (``> 0``, ``in [0, 1]``; ``""`` for none) of each
    parameter, for ``harness methods`` and docs."""
    types_ = _field_types(cls)
    return [
        {
            "name": f.name,
            "type": type_name(types_[f.name]),
            "default": f.default if f.default is not dataclasses.MISSING else None,
            "help": f.metadata.get("help", ""),
            "range": _in_words(b, b.get("ge", b.get("gt")), b.get("le", b.get("lt")))
            if (b := f.metadata.get("bounds")) else "",
        }
        for f in dataclasses.fields(cls)
    ]


def as_dict(params: Any) -> dict[str, Any]:
    """A frozen params dataclass as a plain dict (tuples become lists, for JSON)."""
    names = _field_names(type(params))
    values = [getattr(params, n) for n in names]
    if all(v is None or type(v) in _SCALARS for v in values):  # the usual case: what asdict gives, 10x faster
        return dict(zip(names, values, strict=True))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()}


_SCALARS = frozenset({str, int, float, bool})  # immutable: asdict's deep copy returns them unchanged


@functools.lru_cache(maxsize=512)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@dataclasses.dataclass(frozen=True)
class NoParams:
    """For plugins without parameters."""


def route_sets(sets: Mapping[str, str], owners: Mapping[str, set[str]], hint: str = "") -> dict[str, dict[str, str]]:
    """Route ``--set`` keys to their owners (e.g. method, benchmark, train): ``owner.key`` explicitly, or a bare
    key that exactly one owner has; ambiguous or unknown keys are one-line errors (``hint`` ends the latter)."""
    out: dict[str, dict[str, str]] = {k: {} for k in owners}
    for key, value in sets.items():
        scope, dot, rest = key.partition(".")
        if dot and scope in owners:
            out[scope][rest] = value
            continue
        found = [s for s, names in owners.items() if key in names]
        if len(found) > 1:
            raise HarnessError(f"--set {key}: ambiguous, it is a {' and a '.join(found)} parameter; write "
                               f"{found[0]}.{key}=... or {found[1]}.{key}=...")
        if not found:
            valid = sorted(f"{s}.{n}" for s, names in owners.items() for n in names)
            raise HarnessError(f"--set {key}: unknown parameter{did_you_mean(key, [v.split('.')[1] for v in valid])};"
                               f" valid keys: {', '.join(valid)}{hint}")
        out[found[0]][key] = value
    return out
