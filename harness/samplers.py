"""Samplers that build a round's rows, for method plugins (``MethodSpec(sampler=offline_preferences)``).

:func:`offline_demonstrations`, :func:`offline_preferences` (the data as given), :func:`self_generated`
(demonstrations paired with the policy's own samples: SPIN, GSIL), :func:`on_policy_preferences` (samples
ranked by a reward into pairs: online DPO/IPO), :func:`best_of_n` (the top sample per prompt). Each takes
the :class:`~harness.RoundContext` and returns ``list[Row]``. :func:`generate` is how they sample: seeded
by (seed, round) and shared through the cache when the model is the initial one. The code lives in
``harness.training.samplers``; this module is its public face.
"""

from harness.training.samplers import (
    best_of_n,
    generate,
    offline_demonstrations,
    offline_preferences,
    on_policy_preferences,
    self_generated,
)

__all__ = ["best_of_n", "generate", "offline_demonstrations", "offline_preferences", "on_policy_preferences", "self_generated"]
