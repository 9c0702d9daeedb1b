"""The generation interface every engine implements, and what an engine with its own weights needs."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from harness.core.data import Completion, Prompt


@runtime_checkable
class Engine(Protocol):
    """Generates completions for prompts.

    ``generate`` returns one list per prompt with ``n`` completions each, in prompt order. With
    ``temperature == 0`` decoding is greedy; otherwise it samples (nucleus ``top_p``). A completion stops
    at EOS (kept as the last id, not in the text), at the first of the ``stop`` strings (cut off the
    text; the ids keep the tokens that produced it, as vLLM does), or after ``max_new_tokens``. The
    same ``seed`` gives the same completions.

    An engine that generates from the live ``torch`` model (``hf``) always sees the current weights. One
    that keeps its own copy of the weights (``vllm``) sets ``own_weights = True`` and implements
    ``sync(model, tokenizer, adapters_off=False)``; :class:`harness.models.lm.LM` calls it before generating
    whenever the model's weights changed since the engine last saw them (after optimizer steps, a
    reference reset) or another handle used it (policy and reference share one such engine per cell),
    and records ``engine.holder``; so no sample and no evaluation ever comes from stale weights.
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


def export_model(model: Any, *, adapters_off: bool = False) -> Any:
    """The plain transformers model whose weights generation should see, for an engine to load.

    A peft (LoRA) model becomes a copy with its adapters merged in, or, with ``adapters_off`` (a
    reference that is the base model), a copy with them dropped; the live model is never changed. Any
    other model is returned as it is.
    """
    if hasattr(model, "merge_and_unload"):
        clone = copy.deepcopy(model)
        return clone.unload() if adapters_off else clone.merge_and_unload()
    return model
