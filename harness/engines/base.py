"""The generation interface every engine implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from harness.data import Completion, Prompt


@runtime_checkable
class Engine(Protocol):
    """Generates completions for prompts.

    ``generate`` returns one list per prompt with ``n`` completions each, in prompt order. With
    ``temperature == 0`` decoding is greedy; otherwise it samples (nucleus ``top_p``). A completion stops
    at EOS (kept as the last id, not in the text), at the first of the ``stop`` strings (cut off the
    text; the ids keep the tokens that produced it, as vLLM does), or after ``max_new_tokens``. The
    same ``seed`` gives the same completions.
    """

    name: str

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int = 1,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> list[list[Completion]]: ...
