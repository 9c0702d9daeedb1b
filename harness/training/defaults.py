"""Defaults that fit the model: the toy's settings for ``tiny:`` models, the papers' for real ones.

The methods' ``train_defaults`` (lr 1e-3, AdamW) were tuned on the didactic bandit with ``tiny:nano``.
On a real LLM that learning rate breaks the model in two steps (issue #18: SmolLM2 answered "2/4/4/4/...").
So a cell whose model is not ``tiny:`` starts from the method's paper settings below (each value
cites its paper beside it): what the cell's suite or ``--set`` gives still wins, and a method that is not
listed gets :data:`GENERIC_REAL_LR`. The values are recorded in the cell's resolved config (so they are
part of its identity).

:func:`update_warning` is a second guard: a warning line when the peak learning rate is far above the
usual range for the model's size (whatever set it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

GENERIC_REAL_LR = 1e-5
"""lr for a real model when the method lists no paper value (a common full fine-tuning value)."""

_PREF = {"lr": 5e-7, "optimizer": "rmsprop"}  # DPO (Rafailov et al.), SPIN, GSIL: RMSprop, 5e-7 .. 1e-6
_RL = {"lr": 1e-6}  # PPO (Ouyang et al. / Stiennon et al.: lr 1e-6); the REINFORCE family on LLMs uses the same order

PAPER_TRAIN: dict[str, dict[str, Any]] = {
    "sft": {"lr": 2e-5},  # SFT of chat models (Zephyr / alignment-handbook): 2e-5
    "pref-ft": {"lr": 2e-5},
    "dpo": dict(_PREF),
    "ipo": dict(_PREF),
    "spin": dict(_PREF),  # SPIN: beta 0.1, lr 5e-7, RMSprop, linear, warmup 0.1
    "gsil": dict(_PREF),  # GSIL scripts: lr 5e-7, RMSprop, linear, warmup 0.1
    "online-dpo": {"lr": 5e-7},
    "online-ipo": {"lr": 5e-7},
    "ava-d": {"lr": 5e-7},
    "ava-p": {"lr": 5e-7},
    "ppo": dict(_RL),
    "reinforce": dict(_RL),
    "rloo": dict(_RL),
    "rwr": dict(_RL),
    "best-of-n": dict(_RL),
    "adversarial": dict(_RL),
    "irl-rm": dict(_RL),
}
"""TrainConfig settings for real models, by method name."""

PAPER_PARAMS: dict[str, dict[str, Any]] = {
    "online-dpo": {"beta": 0.1},  # the toy uses Tajwar et al.'s 0.05; DPO's paper value is 0.1
}
"""Method parameters that differ between the toy and the paper, by method name."""


def is_toy(model: str) -> bool:
    return str(model).startswith("tiny:")


def train_defaults(method: str, base: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The TrainConfig defaults of ``method`` for ``model``: ``base`` (the method's own train_defaults) for
    ``tiny:``; for a real model the same with the paper's lr (and optimizer) over it."""
    out = dict(base)
    if is_toy(model):
        return out
    out["lr"] = GENERIC_REAL_LR
    out.update(PAPER_TRAIN.get(method, {}))
    return out


def method_defaults(method: str, model: str) -> dict[str, Any]:
    """Method parameter defaults that differ for a real model (empty for ``tiny:``)."""
    return {} if is_toy(model) else dict(PAPER_PARAMS.get(method, {}))


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
