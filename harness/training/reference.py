"""The reference policy a method's objective compares against: a frozen copy of the initial policy, or
(under LoRA) the same model with its adapters switched off; ``reset_to`` makes it the latest policy for
methods whose reference moves each round (SPIN, GSIL)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from harness.core.data import Row
from harness.core.errors import HarnessError
from harness.models.lm import LM
from harness.models.logprobs import reference_logprobs


class Reference:
    """The reference policy: a frozen copy, or (under LoRA) the same model with adapters switched off."""

    def __init__(self, policy: Any, tokenizer: Any, engine_factory: Callable[[Any], Any], use_adapters: bool):
        if use_adapters:
            self.model = policy
            self.lm = LM(policy, tokenizer, engine_factory(policy), name="reference", adapters_off=True)
        else:
            self.model = copy.deepcopy(policy)
            self.model.requires_grad_(False)
            self.model.eval()
            self.lm = LM(self.model, tokenizer, engine_factory(self.model), name="reference")
        self.use_adapters = use_adapters

    def reset_to(self, policy: Any) -> None:
        """Make the reference the latest policy (SPIN, GSIL: the previous iterate)."""
        if self.use_adapters:
            raise HarnessError("reference='round' needs a frozen copy; set lora=false for this method")
        self.model.load_state_dict(policy.state_dict())

    def logprobs(self, rows: list[Row], pad_id: int, batch_size: int) -> dict[str, list[torch.Tensor]]:
        with self.lm.scoring():
            return reference_logprobs(self.model, rows, pad_id=pad_id, batch_size=batch_size)
