"""A seed's range, ``0 .. 2**32 - 1``, checked once where a seed is given: by :func:`harness.cell.definition.resolve`
for a cell given whole (``harness run``) and by :mod:`harness.suite.plan` for a suite's ``seeds`` and include
rules (one-line errors, exit 2). Every other range is declared on its field (``param(..., ge=1)``) and checked by
:func:`harness.core.params.check_value`.
"""

from __future__ import annotations

from typing import Any

from harness.core.errors import HarnessError

SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit; larger ones overflow there


def check_seed(seed: Any, where: str) -> None:
    if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed <= SEED_MAX:
        raise HarnessError(f"{where} = {seed}: expected a seed from 0 to {SEED_MAX}")
