"""Reading a suite: the TOML file, ``--set`` assignments, and the small checks every key goes through
(``_Where`` names the file and dotted key, or the ``--set`` that set it). Validation of the whole suite is
:mod:`harness.suite.plan`; expansion into cells is :mod:`harness.suite.expand`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError, did_you_mean

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:  # pragma: no cover
        tomllib = None  # type: ignore[assignment]

TOP_KEYS = (
    "name", "description", "models", "benchmarks", "eval", "seeds", "engine", "dtype", "device", "cell_timeout",
    "jobs", "threads", "train", "data", "benchmark_params", "methods", "exclude", "include", "resources",
    "leaderboard", "train_data", "reward",
)
ENTRY_KEYS = ("method", "train", "grid")
RULE_KEYS = ("method", "benchmark", "model", "seed")
RESOURCE_KEYS = ("num_cpus", "num_gpus")
LEADERBOARD_KEYS = ("metrics", "baseline", "lower_is_better", "higher_is_better", "goals", "diagnostics", "correction")
CORRECTIONS = ("holm", "bonferroni", "none")  # = harness.results.intervals.CORRECTIONS (a test checks)


def _toml() -> Any:
    if tomllib is None:  # pragma: no cover
        raise HarnessError("reading suite files needs Python >= 3.11 (tomllib) or `pip install tomli`")
    return tomllib


def read_suite(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a suite file; a syntax error names the file and the line."""
    p = Path(path)
    if p.is_dir():
        found = sorted(q.name for q in p.glob("*.toml"))[:5]
        raise HarnessError(f"{p}: is a folder; give one suite file"
                           + (f", e.g. {p / found[0]} (it holds {', '.join(found)})" if found else " (*.toml)"))
    if not p.is_file():
        raise HarnessError(f"{p}: no such suite file; suites live in suites/*.toml")
    try:
        return _toml().loads(decode_utf8(p.read_bytes(), p))
    except OSError as exc:
        raise HarnessError(f"{p}: can't read the suite file ({exc.strerror or exc})") from None
    except _toml().TOMLDecodeError as exc:
        raise HarnessError(f"{p}: invalid TOML: {exc}; fix the file") from None


def parse_assignment(item: str) -> tuple[str, dict[str, Any]]:
    """``a.b.c=VALUE`` -> (``a.b.c``, nested dict). VALUE is TOML (``[0, 1]``, ``0.2``, ``"x"``) or a bare
    string."""
    key, sep, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise HarnessError(f"--set {item!r}: expected KEY=VALUE, e.g. train.steps=5 or seeds=[0,1]")
    toml = _toml()
    try:
        nested = toml.loads(f"{key} = {value}")
    except toml.TOMLDecodeError as exc:
        if value[:1] in ("[", "{", '"', "'"):  # meant as a list, table or string: not a bare string
            raise HarnessError(f"--set {item!r}: the value is not valid TOML ({exc}); close the brackets or "
                               f"quotes, e.g. seeds=[0,1] or models=[\"tiny:nano\"]") from None
        try:
            nested = toml.loads(f"{key} = {json.dumps(value)}")
        except toml.TOMLDecodeError:
            raise HarnessError(f"--set {item!r}: '{key}' is not a dotted TOML key (quote names with dots: "
                               f"methods.\"dpo-b0.05\".beta=0.1)") from None
    path, node = [], nested
    while isinstance(node, dict) and len(node) == 1:
        k = next(iter(node))
        path.append(k)
        node = node[k]
    return ".".join(path), nested


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def apply_sets(data: dict[str, Any], sets: Iterable[str]) -> tuple[dict[str, Any], set[str]]:
    """Apply ``--set`` assignments to a parsed suite; returns it and the dotted keys they set."""
    touched: set[str] = set()
    for item in sets:
        key, nested = parse_assignment(item)
        data = _merge(data, nested)
        touched.add(key)
    return data, touched


class _Where:
    """Builds ``file: dotted.key`` (or ``--set dotted.key`` when an override set it)."""

    def __init__(self, path: Path | None, touched: set[str]) -> None:
        self.file = str(path) if path is not None else "<suite>"
        self.touched = touched

    def __call__(self, *keys: Any) -> str:
        dotted = ".".join(str(k) for k in keys)
        for t in sorted(self.touched):
            if dotted == t or dotted.startswith(t + "."):
                return f"{self.file} (--set {t}): {dotted}" if t != dotted else f"{self.file} (--set): {dotted}"
        for t in sorted(self.touched):
            if dotted and t.startswith(dotted + "."):  # a key that only --set brought in (e.g. a misspelled table)
                return f"--set {t} (not in {self.file}): {dotted}"
        return f"{self.file}: {dotted}" if dotted else self.file


def _check_keys(table: Mapping[str, Any], allowed: Iterable[str], w: _Where, *keys: Any) -> None:
    allowed = list(allowed)
    for key in table:
        if key not in allowed:
            what = f"{keys[-1]} key" if keys else "top-level key"
            raise HarnessError(f"{w(*keys, key)}: unknown {what}{did_you_mean(key, allowed)}; valid: "
                               f"{', '.join(allowed)}")


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HarnessError(f"{where}: expected a table ([section] or {{ k = v }}), got {value!r}")
    return value


def _str_list(value: Any, where: str, *, required: bool) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HarnessError(f"{where}: expected a list of strings, got {value!r}")
    if required and not value:
        raise HarnessError(f"{where}: the list is empty; give at least one")
    return value


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


def make_label(name: str, axes: Mapping[str, Any]) -> str:
    """``dpo`` + ``{"beta": 0.05}`` -> ``dpo(beta=0.05)``."""
    if not axes:
        return name
    return f"{name}({', '.join(f'{k}={_fmt(v)}' for k, v in axes.items())})"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _axis(values: Any, where: str) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise HarnessError(f"{where}: a grid axis is a non-empty list of values, got {values!r}; "
                           f"put a single value outside [grid]")
    seen: list[Any] = []
    for v in values:
        if any(_same(v, u) for u in seen):
            raise HarnessError(f"{where}: the grid value {v!r} repeats in {values!r}; list each value once")
        seen.append(v)
    return values


def decode_utf8(data: bytes, path: str | os.PathLike[str]) -> str:
    """``data`` as UTF-8 text; else one line naming the file, the line and the byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise HarnessError(f"{path}:{line}: not UTF-8 text (byte offset {exc.start}: "
                           f"{data[exc.start:exc.start + 1]!r}); save the file as UTF-8") from None
