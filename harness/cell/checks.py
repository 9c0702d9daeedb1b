"""The ranges every cell's settings are checked against, in :func:`harness.cell.definition.resolve` (so ``harness
run`` and every suite cell get them) and, naming the suite key that set them, in
:func:`harness.suite.checks.check_suite_data`: the ranges TrainConfig declares (``param(..., ge=1)``: positive
``steps`` / ``batch_size`` / ``grad_accum``, ``rounds >= 0`` (0 = evaluate only), ``lr > 0``, ...), worded for
a suite key, and seeds in ``0 .. 2**32 - 1`` (one-line errors, exit 2).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.core.errors import HarnessError
from harness.core.params import range_problem
from harness.training.trainer import TrainConfig

SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit; larger ones overflow there

# How a range is said for the fields where a plain "a number >= 0" would not help; the ranges themselves are
# declared once, on :class:`harness.training.trainer.TrainConfig` (``param(..., ge=1)``).
WORDING = {
    "rounds": "an integer >= 0 (0 = evaluate only, no training)",
    "lr": "a learning rate > 0, e.g. 1e-4",
    "warmup_ratio": "a fraction between 0 and 1",
}


def bounded(key: str) -> bool:
    """Whether TrainConfig declares a range for ``key``."""
    return "bounds" in _FIELDS[key].metadata if key in _FIELDS else False


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> int | float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def check_train_value(key: str, value: Any, where: str) -> None:
    """One TrainConfig field against the range TrainConfig declares for it; ``where`` names the field
    (``suite.toml: train.steps``). Values of the wrong type are left to the strict type checks."""
    v = _number(value)
    problem = None if v is None or key not in _FIELDS else range_problem(TrainConfig, key, v)
    if problem is not None:
        positive_int = problem == ">= 1" and _is_int(_FIELDS[key].default)
        what = WORDING.get(key) or ("a positive integer" if positive_int else f"a number {problem}")
        raise HarnessError(f"{where} = {value!r}: expected {what}")


def check_seed(seed: Any, where: str) -> None:
    if _is_int(seed) and not 0 <= seed <= SEED_MAX:
        raise HarnessError(f"{where} = {seed}: expected a seed from 0 to {SEED_MAX}")
