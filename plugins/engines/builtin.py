"""The built-in engines plugin: ``hf`` (a live transformers model), ``openai`` (an OpenAI-compatible
HTTP endpoint) and ``vllm`` (vLLM's offline engine, when installed).

Each factory takes the run's model (a :class:`~harness.models.loading.LoadedModel`, or None) and the engine's
options; build engines with :func:`harness.engines.factory.make_engine`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness import EngineSpec, HarnessError, hookimpl
from harness.lm import VLLM_INSTALL_HINT, HFEngine, OpenAIEngine, VLLMEngine, vllm_available


def hf_factory(model: Any = None, **options: Any) -> HFEngine:
    """An :class:`HFEngine` over the run's model; options: ``batch_size``, ``name``."""
    if model is None or not hasattr(model, "model") or not hasattr(model, "tokenizer"):
        raise HarnessError(
            "engine 'hf' needs a loaded model (harness.models.loading.load_model(...)); none was given"
        )
    return HFEngine(model.model, model.tokenizer, **options)


def openai_factory(model: Any = None, **options: Any) -> OpenAIEngine:
    """An :class:`OpenAIEngine`; options: ``base_url`` and the served model's name as ``remote_model``
    (or ``model`` given as a string), plus ``api_key_env``, ``timeout``, ``tokenizer``, ``max_workers``...
    The run's loaded model is not used (the server has its own)."""
    remote = options.pop("remote_model", None) or (model if isinstance(model, str) else None)
    if "base_url" not in options or not remote:
        raise HarnessError(
            "engine 'openai' needs base_url=<http://host:port/v1> and remote_model=<the served model's name>"
        )
    return OpenAIEngine(model=remote, **options)


def vllm_factory(model: Any = None, **options: Any) -> VLLMEngine:
    """A :class:`VLLMEngine`; loads ``model_name_or_path`` (option) or the run model's hub name / path."""
    path = options.pop("model_name_or_path", None) or (model if isinstance(model, str) else None)
    if path is None and model is not None:
        path = getattr(getattr(model, "model", None), "name_or_path", None) or None
        if path is None and getattr(model, "source", None) != "tiny":
            path = getattr(model, "name", None)
    if not path:
        raise HarnessError(
            "engine 'vllm' loads weights from a hub name or a local directory; give model_name_or_path=... "
            "(save a tiny or in-memory model first)"
        )
    return VLLMEngine(path, **options)


@hookimpl
def register_engines(register: Callable[[EngineSpec], None]) -> None:
    register(
        EngineSpec(
            name="hf",
            description="Batched, KV-cached sampling from the live transformers model (always current weights).",
            factory=hf_factory,
        )
    )
    register(
        EngineSpec(
            name="openai",
            description="Any OpenAI-compatible chat-completions endpoint (remote API or a local server).",
            factory=openai_factory,
        )
    )
    register(
        EngineSpec(
            name="vllm",
            description="vLLM's offline engine loaded from a checkpoint (CUDA GPU).",
            factory=vllm_factory,
            available=vllm_available,
            install_hint=VLLM_INSTALL_HINT,
            paper="https://arxiv.org/abs/2309.06180",
        )
    )
