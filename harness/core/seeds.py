"""Seeds derived from a cell's seed: one rule for every sampler, row order and fit in the harness and its plugins."""

from __future__ import annotations

SEED_STRIDE = 1_000_003
"""A prime larger than any round count: ``seed * SEED_STRIDE + round`` never collides between seeds."""


def derive_seed(seed: int, step: int = 0, salt: int = 0) -> int:
    """The seed of one draw of a cell: its ``seed``, the round (or other ``step``) it belongs to, and a
    ``salt`` that separates two draws of the same round (e.g. a discriminator's samples from the policy's)."""
    return seed * SEED_STRIDE + step + salt
