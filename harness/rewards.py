"""Rewards for reward-optimising method plugins: the benchmark's own, a Bradley-Terry model, a judge.

:class:`RewardParams` (a method's ``reward`` settings), :func:`prepare_reward` (build the reward once, in
``before_training``), :func:`current_reward` (the reward function of this round), :func:`sequence_reward` /
:func:`token_rewards` (a dense or scalar reward as one number or per token), :class:`ScalarReward` (a
reward function read as scalars). ``Reward`` and ``RewardFn`` are the types. The code lives in
``harness.training.rewards``; this module is its public face.
"""

from harness.training.rewards import (
    Reward,
    RewardFn,
    RewardParams,
    ScalarReward,
    current_reward,
    prepare_reward,
    sequence_reward,
    token_rewards,
)

__all__ = [
    "Reward",
    "RewardFn",
    "RewardParams",
    "ScalarReward",
    "current_reward",
    "prepare_reward",
    "sequence_reward",
    "token_rewards",
]
