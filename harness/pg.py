"""Policy-gradient toolkit for method plugins (``from harness.pg import gae`` or ``from harness import pg``).

Pure tensor functions (``[B, T]`` per-token tensors with a ``[B, T]`` float mask, 1 = response token):
:func:`whiten`, :class:`RunningMoments`, baselines and returns (:func:`leave_one_out_baseline`,
:func:`discounted_returns`, :func:`gae`), Schulman's KL estimators (:func:`kl_k1`, :func:`kl_k2`,
:func:`kl_k3`), PPO pieces (:func:`clipped_surrogate`, :func:`clipped_value_loss`,
:class:`AdaptiveKLController`), :func:`reinforce_loss`, :func:`entropy_from_logits`.
:class:`OnPolicyParams` (the parameter block on-policy methods extend) and its sampling half :class:`RolloutParams`;
:func:`on_policy_spec` (an on-policy method's :class:`~harness.MethodSpec`).
Plumbing for samplers: :func:`rollouts` (n scored samples per prompt from the current policy),
:func:`round_prompts` (a round's prompts), :func:`response_length`, :func:`token_logprobs` (per-token log-probs without gradients),
:func:`token_values` / :func:`stack_token_values` / :func:`pad_rows` (per-token vectors in a row's scalar
values and back). The code lives in ``harness.training.pg``; this module is its public face.
"""

from harness.training.pg import (
    KL_ESTIMATORS,
    ON_POLICY_TRAIN_DEFAULTS,
    AdaptiveKLController,
    OnPolicyParams,
    Rollout,
    RolloutParams,
    RunningMoments,
    clipped_surrogate,
    clipped_value_loss,
    discounted_returns,
    entropy_from_logits,
    gae,
    kl_k1,
    kl_k2,
    kl_k3,
    leave_one_out_baseline,
    on_policy_spec,
    pad_rows,
    reinforce_loss,
    response_length,
    rollouts,
    round_prompts,
    stack_token_values,
    token_logprobs,
    token_values,
    whiten,
)

__all__ = [
    "KL_ESTIMATORS",
    "ON_POLICY_TRAIN_DEFAULTS",
    "AdaptiveKLController",
    "OnPolicyParams",
    "Rollout",
    "RolloutParams",
    "RunningMoments",
    "clipped_surrogate",
    "clipped_value_loss",
    "discounted_returns",
    "entropy_from_logits",
    "gae",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "leave_one_out_baseline",
    "on_policy_spec",
    "pad_rows",
    "reinforce_loss",
    "response_length",
    "rollouts",
    "round_prompts",
    "stack_token_values",
    "token_logprobs",
    "token_values",
    "whiten",
]
