"""Language models as the harness holds them, for plugins that build, score or train one themselves.

:class:`LM` (a model, its tokenizer and its generation engine), the engines (:class:`HFEngine` on
transformers, :class:`OpenAIEngine` on any OpenAI-compatible endpoint, :class:`VLLMEngine` with
:func:`vllm_available` and ``VLLM_INSTALL_HINT``), log-probs (:func:`sequence_logprobs` gives a batch's
:class:`TokenLogProbs`; :func:`masked_mean`), and training a helper model (:class:`Trainer`,
:class:`TrainConfig`: irl-rm's SFT copy). The code lives in ``harness.models``, ``harness.engines`` and
``harness.training.trainer``; this module is their public face.
"""

from harness.engines.hf import HFEngine
from harness.engines.openai import OpenAIEngine
from harness.engines.vllm import INSTALL_HINT as VLLM_INSTALL_HINT
from harness.engines.vllm import VLLMEngine, vllm_available
from harness.models.lm import LM
from harness.models.logprobs import TokenLogProbs, masked_mean, sequence_logprobs
from harness.training.trainer import TrainConfig, Trainer

__all__ = [
    "LM",
    "VLLM_INSTALL_HINT",
    "HFEngine",
    "OpenAIEngine",
    "TokenLogProbs",
    "TrainConfig",
    "Trainer",
    "VLLMEngine",
    "masked_mean",
    "sequence_logprobs",
    "vllm_available",
]
