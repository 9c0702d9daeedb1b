"""Defaults that fit the model: the toy's settings for ``tiny:`` models, the papers' for real ones.

The methods' ``train_defaults`` (lr 1e-3, AdamW) were tuned on the didactic bandit with ``tiny:nano``.
On a real LLM that learning rate breaks the model in two steps (issue #18: SmolLM2 answered "2/4/4/4/...").
So a cell whose model is not ``tiny:`` starts from the paper settings the method declares on its
:class:`~harness.core.registry.MethodSpec` (``real_train_defaults``, ``real_params``; each plugin cites its
paper beside the values): what the cell's suite or ``--set`` gives still wins, and a method that declares no
real ``lr`` gets :data:`GENERIC_REAL_LR`. The host names no method here: a third party's method gets its real
defaults the same way. The values are recorded in the cell's resolved config (so they are part of its
identity).

:func:`update_warning` is a second guard: a warning line when the peak learning rate is far above the
usual range for the model's size (whatever set it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.core.registry import MethodSpec

GENERIC_REAL_LR = 1e-5
"""lr for a real model when the method lists no paper value (a common full fine-tuning value)."""


def is_toy(model: str) -> bool:
    return str(model).startswith("tiny:")


def train_defaults(method: MethodSpec, model: str) -> dict[str, Any]:
    """The TrainConfig defaults of ``method`` for ``model``: its ``train_defaults`` for ``tiny:``; for a real
    model the same with :data:`GENERIC_REAL_LR` and then its ``real_train_defaults`` (the paper's) over them."""
    out = dict(method.train_defaults)
    if is_toy(model):
        return out
    out["lr"] = GENERIC_REAL_LR
    out.update(method.real_train_defaults)
    return out


def method_defaults(method: MethodSpec, model: str) -> dict[str, Any]:
    """Method parameter defaults that differ for a real model: its ``real_params`` (empty for ``tiny:``)."""
    return {} if is_toy(model) else dict(method.real_params)


def usual_max_lr(n_params: int, lora: bool = False) -> float:
    """The top of the usual peak learning rates for a model of ``n_params`` parameters: 1e-4 at 100M,
    falling with the square root of the size (7B: about 1.2e-5); 10x that for LoRA adapters."""
    top = 1e-4 * math.sqrt(1e8 / max(n_params, 1))
    return min(top, 1e-3) * (10 if lora else 1)


def update_warning(model: str, n_params: int, lr: float, *, lora: bool = False, factor: float = 5.0) -> str | None:
    """A warning when ``lr`` is more than ``factor`` times the usual top for the model's size (None: fine)."""
    if is_toy(model):
        return None
    top = usual_max_lr(n_params, lora)
    if lr <= factor * top:
        return None
    return (f"train.lr={lr:g} is far above the usual range for a {n_params / 1e6:.0f}M-parameter model "
            f"({'LoRA' if lora else 'full fine-tuning'}: up to about {top:.1g}); a few steps can break it "
            f"(repeated tokens, every answer at the length cap); set train.lr lower, e.g. train.lr={top / 5:.1g}")
