"""alignment-harness: one place where alignment objectives meet, as plugins.

This module is the **public API for plugins**: everything a method, benchmark, dataset or engine
plugin needs imports from ``harness`` itself (``from harness import hookimpl, MethodSpec, param,
LogProbBatch, samplers``), and those names stay where they are when the host's modules move. The
host's subsystems (``harness.core``, ``models``, ``engines``, ``evaluation``, ``training``,
``sweeps``, ``results``, ``authoring``, ``bench``, ``cli``) are internal; docs/design.md maps them.
Names resolve lazily, so ``import harness`` stays cheap (no torch until a name needs it).
"""

from __future__ import annotations

import importlib
from typing import Any

import pluggy

from harness.core.threads import set_passive_wait
from harness.core.version import __version__

set_passive_wait()  # before torch loads OpenMP: waiting threads sleep instead of spinning


hookimpl = pluggy.HookimplMarker("harness")
"""Decorate a plugin's hook implementations with this (``from harness import hookimpl``)."""

_MODULES = {
    "samplers": "harness.training.samplers",
    "pg": "harness.training.pg",
    "rewards": "harness.training.rewards",
    "divergence": "harness.training.divergence",
    "benchmark_data": "harness.evaluation.benchmark_data",
    "judge": "harness.evaluation.judge",
    "sandbox": "harness.evaluation.sandbox",
}
"""Toolkits a plugin may use as namespaces (``from harness import samplers``)."""

_NAMES = {
    "DATA_KINDS": "harness.core.data:DATA_KINDS",
    "derive_seed": "harness.core.seeds:derive_seed",
    "NoParams": "harness.core.params:NoParams",
    "Engine": "harness.engines.base:Engine",
    "DataContext": "harness.core.context:DataContext",
    "EvalContext": "harness.core.context:EvalContext",
    "EvalResult": "harness.core.context:EvalResult",
    "item_id": "harness.core.context:item_id",
    "RoundContext": "harness.core.context:RoundContext",
    "WarmStartContext": "harness.core.context:WarmStartContext",
    "Completion": "harness.core.data:Completion",
    "DataCopy": "harness.core.data:DataCopy",
    "FEEDBACK": "harness.core.data:FEEDBACK",
    "Feedback": "harness.core.data:Feedback",
    "DEMONSTRATIONS": "harness.core.data:DEMONSTRATIONS",
    "Pair": "harness.core.data:Pair",
    "PREFERENCES": "harness.core.data:PREFERENCES",
    "Prompt": "harness.core.data:Prompt",
    "PROMPTS": "harness.core.data:PROMPTS",
    "read_jsonl": "harness.core.data:read_jsonl",
    "rows_sha256": "harness.core.data:rows_sha256",
    "REWARD": "harness.core.data:REWARD",
    "Row": "harness.core.data:Row",
    "Sequence": "harness.core.data:Sequence",
    "did_you_mean": "harness.core.errors:did_you_mean",
    "HarnessError": "harness.core.errors:HarnessError",
    "param": "harness.core.params:param",
    "get_host": "harness.core.plugins:get_host",
    "BenchmarkSpec": "harness.core.registry:BenchmarkSpec",
    "DatasetSpec": "harness.core.registry:DatasetSpec",
    "EngineSpec": "harness.core.registry:EngineSpec",
    "MethodHooks": "harness.core.registry:MethodHooks",
    "MethodSpec": "harness.core.registry:MethodSpec",
    "MetricSpec": "harness.core.registry:MetricSpec",
    "HFEngine": "harness.engines.hf:HFEngine",
    "OpenAIEngine": "harness.engines.openai:OpenAIEngine",
    "vllm_available": "harness.engines.vllm:vllm_available",
    "VLLM_INSTALL_HINT": "harness.engines.vllm:INSTALL_HINT",
    "VLLMEngine": "harness.engines.vllm:VLLMEngine",
    "chat_prompt": "harness.evaluation.judge:chat_prompt",
    "judge_cache_key": "harness.evaluation.judge:cache_key",
    "JudgmentCache": "harness.evaluation.judge:JudgmentCache",
    "make_judge": "harness.evaluation.judge:make_judge",
    "parse_rating": "harness.evaluation.judge:parse_rating",
    "check_isolation": "harness.evaluation.sandbox:check_isolation",
    "CheckedProgram": "harness.evaluation.sandbox:CheckedProgram",
    "sandbox_mechanism": "harness.evaluation.sandbox:mechanism",
    "run_many": "harness.evaluation.sandbox:run_many",
    "run_program": "harness.evaluation.sandbox:run_program",
    "SandboxResult": "harness.evaluation.sandbox:SandboxResult",
    "LM": "harness.models.lm:LM",
    "hub_offline": "harness.models.loading:_hub_offline",
    "hub_unreachable": "harness.models.loading:hub_unreachable",
    "LogProbBatch": "harness.models.logprobs:LogProbBatch",
    "masked_mean": "harness.models.logprobs:masked_mean",
    "sequence_logprobs": "harness.models.logprobs:sequence_logprobs",
    "TokenLogProbs": "harness.models.logprobs:TokenLogProbs",
    "dataset_params": "harness.training.datasets:dataset_params",
    "load_dataset_rows": "harness.training.datasets:load_kind",
    "lookup_dataset": "harness.training.datasets:lookup",
    "Discriminator": "harness.training.divergence:Discriminator",
    "portable_model": "harness.training.divergence:portable",
    "ranking_auc": "harness.training.divergence:ranking_auc",
    "rebuild_model": "harness.training.divergence:rebuild",
    "AdaptiveKLController": "harness.training.pg:AdaptiveKLController",
    "clipped_surrogate": "harness.training.pg:clipped_surrogate",
    "clipped_value_loss": "harness.training.pg:clipped_value_loss",
    "discounted_returns": "harness.training.pg:discounted_returns",
    "entropy_from_logits": "harness.training.pg:entropy_from_logits",
    "gae": "harness.training.pg:gae",
    "kl_k1": "harness.training.pg:kl_k1",
    "kl_k3": "harness.training.pg:kl_k3",
    "leave_one_out_baseline": "harness.training.pg:leave_one_out_baseline",
    "ON_POLICY_TRAIN_DEFAULTS": "harness.training.pg:ON_POLICY_TRAIN_DEFAULTS",
    "reinforce_loss": "harness.training.pg:reinforce_loss",
    "response_length": "harness.training.pg:response_length",
    "rollouts": "harness.training.pg:rollouts",
    "RunningMoments": "harness.training.pg:RunningMoments",
    "stack_token_values": "harness.training.pg:stack_token_values",
    "pad_rows": "harness.training.pg:pad_rows",
    "token_logprobs": "harness.training.pg:token_logprobs",
    "token_values": "harness.training.pg:token_values",
    "whiten": "harness.training.pg:whiten",
    "current_reward": "harness.training.rewards:current_reward",
    "prepare_reward": "harness.training.rewards:prepare_reward",
    "RewardParams": "harness.training.rewards:RewardParams",
    "ScalarReward": "harness.training.rewards:ScalarReward",
    "sequence_reward": "harness.training.rewards:sequence_reward",
    "token_rewards": "harness.training.rewards:token_rewards",
    "best_of_n": "harness.training.samplers:best_of_n",
    "offline_demonstrations": "harness.training.samplers:offline_demonstrations",
    "offline_preferences": "harness.training.samplers:offline_preferences",
    "on_policy_preferences": "harness.training.samplers:on_policy_preferences",
    "self_generated": "harness.training.samplers:self_generated",
    "TrainConfig": "harness.training.trainer:TrainConfig",
    "Trainer": "harness.training.trainer:Trainer",
}
"""Public name -> ``module:attribute`` where it lives now."""

__all__ = ["__version__", "hookimpl", *sorted(_MODULES), *sorted(_NAMES)]


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        module, _, attr = _NAMES[name].partition(":")
        value = getattr(importlib.import_module(module), attr)
    elif name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
