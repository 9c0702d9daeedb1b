"""The ranges every cell's settings are checked against, in :func:`harness.cell.definition.resolve` (so ``harness
run`` and every suite cell get them) and, naming the suite key that set them, in
:func:`harness.suite.checks.check_suite_data`: positive ``steps`` / ``batch_size`` / ``grad_accum``, ``rounds >= 0``
(0 = evaluate only), ``lr > 0``, seeds in ``0 .. 2**32 - 1`` (one-line errors, exit 2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from harness.core.errors import HarnessError

SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit; larger ones overflow there

# integer field -> (lowest allowed value, what to say)
INT_MINIMA = {
    "rounds": (0, "an integer >= 0 (0 = evaluate only, no training)"),
    "steps": (1, "a positive integer"),
    "batch_size": (1, "a positive integer"),
    "grad_accum": (1, "a positive integer"),
    "ref_batch_size": (1, "a positive integer"),
    "lora_r": (1, "a positive integer"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def check_train_value(key: str, value: Any, where: str) -> None:
    """One TrainConfig field's range; ``where`` names the field (``suite.toml: train.steps``). Values of the
    wrong type are left to the strict type checks."""
    v = _number(value)
    if v is None:
        return
    if key in INT_MINIMA:
        low, what = INT_MINIMA[key]
        if v < low:
            raise HarnessError(f"{where} = {value!r}: expected {what}")
    elif key == "lr":
        if not (math.isfinite(v) and v > 0):
            raise HarnessError(f"{where} = {value!r}: expected a learning rate > 0, e.g. 1e-4")
    elif key in ("weight_decay", "max_grad_norm"):
        if not (math.isfinite(v) and v >= 0):
            raise HarnessError(f"{where} = {value!r}: expected a number >= 0")
    elif key == "warmup_ratio" and not (0 <= v <= 1):
        raise HarnessError(f"{where} = {value!r}: expected a fraction between 0 and 1")


def check_train(train: Any, where: str) -> None:
    """Every field of a TrainConfig (or a dict of overrides); ``where`` names the table (``train``)."""
    items = train.items() if isinstance(train, Mapping) else vars(train).items()
    for key, value in items:
        check_train_value(key, value, f"{where}.{key}")


def check_seed(seed: Any, where: str) -> None:
    if _is_int(seed) and not 0 <= seed <= SEED_MAX:
        raise HarnessError(f"{where} = {seed}: expected a seed from 0 to {SEED_MAX}")
