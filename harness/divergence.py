"""Discriminators and density ratios for adversarial and inverse-RL method plugins.

:class:`Discriminator` (a classifier between demonstrations and samples whose logits give an AIRL or GAIL
reward), :func:`ranking_auc`, and :func:`portable` / :func:`rebuild` (a model as plain data that survives
a process boundary, and back). The code lives in ``harness.training.divergence``; this module is its
public face.
"""

from harness.training.divergence import Discriminator, portable, ranking_auc, rebuild

__all__ = ["Discriminator", "portable", "ranking_auc", "rebuild"]
