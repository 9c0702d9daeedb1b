"""Generation with vLLM's offline engine (``vllm.LLM``), for fast sampling on a CUDA GPU.

vLLM is optional (``pip install 'alignment-harness[vllm]'``) and imported only when an engine is built.
Prompts go in as token ids (``{"prompt_token_ids": [...]}``) so the chat template applied by
:class:`~harness.models.text.PromptEncoder` is used unchanged. Settings map onto ``SamplingParams(n,
temperature, top_p, max_tokens, stop, seed)``. vLLM's own rules match :class:`~harness.engines.hf.HFEngine`:
the token ids are the sampled ones (an EOS that ended the completion is among them), a stop string is
cut from the text but the tokens that produced it stay in ``ids``, and ``finish_reason`` is ``"length"``
or ``"stop"``. Greedy decoding (``temperature == 0``) asks vLLM for one completion per prompt (vLLM
refuses ``n > 1`` when greedy) and repeats it ``n`` times.

The engine loads its weights from ``model_name_or_path``; vLLM keeps its own copy on the GPU, so it
declares ``own_weights``. When the policy (or a reset reference) has been trained since, the
:class:`~harness.models.lm.LM` holding the engine calls :meth:`VLLMEngine.sync`, which saves the model's
current weights (LoRA merged, see :func:`~harness.engines.base.export_model`) with the tokenizer to a
temporary directory and rebuilds ``vllm.LLM`` from it: seconds to minutes per sync, version-proof
(only the public ``LLM(model=path)``). TRL instead pushes tensors into the running engine through vLLM
internals that change between versions. The policy and the reference of a cell share one engine (one
``LLM`` on the GPU), which reloads when the other one generates. Not exercised on a GPU in this repository's tests; the sync
rule itself is tested with an engine that keeps a CPU snapshot (tests/test_engines.py).
"""

from __future__ import annotations

import gc
import importlib.util
import tempfile
from collections.abc import Sequence
from typing import Any

from harness.core.data import Completion, Prompt
from harness.core.errors import HarnessError
from harness.engines.base import export_model

INSTALL_HINT = "pip install 'alignment-harness[vllm]' (needs a CUDA GPU)"


def vllm_available() -> bool:
    """Whether the ``vllm`` package can be imported here (checked without importing it)."""
    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):
        return False


class VLLMEngine:
    """The :class:`~harness.engines.base.Engine` protocol over ``vllm.LLM`` (see the module docstring)."""

    def __init__(
        self,
        model_name_or_path: str,
        *,
        dtype: str = "auto",
        seed: int = 0,
        gpu_memory_utilization: float = 0.85,
        name: str = "vllm",
        **kwargs: Any,
    ) -> None:
        if not vllm_available():
            raise HarnessError(f"engine '{name}' is not available here: {INSTALL_HINT}")
        from vllm import LLM

        self.name = name
        self.model_name_or_path = str(model_name_or_path)
        self._llm_options = {"dtype": dtype, "seed": seed, "gpu_memory_utilization": gpu_memory_utilization, **kwargs}
        self._weights_dir: tempfile.TemporaryDirectory[str] | None = None
        self.llm = LLM(model=self.model_name_or_path, **self._llm_options)

    own_weights = True
    holder: tuple[int, tuple[int, ...]] | None = None  # set by harness.models.lm.LM: whose weights are loaded

    def sync(self, model: Any, tokenizer: Any, *, adapters_off: bool = False) -> None:
        """Rebuild the vLLM engine from ``model``'s current weights (saved to a temporary directory)."""
        import torch
        from vllm import LLM

        weights = tempfile.TemporaryDirectory(prefix="harness-vllm-")
        export_model(model, adapters_off=adapters_off).save_pretrained(weights.name, safe_serialization=True)
        tokenizer.save_pretrained(weights.name)
        del self.llm  # free the old engine's GPU memory before the new one claims its share
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.llm = LLM(model=weights.name, **self._llm_options)
        if self._weights_dir is not None:
            self._weights_dir.cleanup()
        self._weights_dir = weights

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int = 1,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions per prompt, in prompt order, from one batched ``LLM.generate`` call."""
        from vllm import SamplingParams

        if n < 1:
            raise HarnessError(f"engine '{self.name}': n must be at least 1, got {n}")
        if temperature < 0 or not 0 < top_p <= 1:
            raise HarnessError(f"engine '{self.name}': need temperature >= 0 and 0 < top_p <= 1")
        if isinstance(stop, str):
            stop = (stop,)
        if not prompts:
            return []
        if max_new_tokens <= 0:  # vLLM requires max_tokens >= 1
            return [
                [Completion(prompt=p, ids=(), text="", finish_reason="length") for _ in range(n)]
                for p in prompts
            ]
        for i, p in enumerate(prompts):
            if not p.ids:
                raise HarnessError(
                    f"engine '{self.name}': prompt {i} has no token ids; build prompts with PromptEncoder.prompt()"
                )

        greedy = temperature == 0
        params = SamplingParams(
            n=1 if greedy else n,
            temperature=0.0 if greedy else float(temperature),
            top_p=1.0 if greedy else float(top_p),
            max_tokens=int(max_new_tokens),
            stop=[s for s in stop if s] or None,
            seed=None if seed is None else int(seed),
        )
        inputs = [{"prompt_token_ids": [int(i) for i in p.ids]} for p in prompts]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        if len(outputs) != len(prompts):
            raise HarnessError(
                f"engine '{self.name}': vLLM returned {len(outputs)} outputs for {len(prompts)} prompts"
            )

        results: list[list[Completion]] = []
        for prompt, request_output in zip(prompts, outputs, strict=True):
            completions = [
                Completion(
                    prompt=prompt,
                    ids=tuple(int(t) for t in out.token_ids),
                    text=out.text,
                    finish_reason="length" if out.finish_reason == "length" else "stop",
                )
                for out in sorted(request_output.outputs, key=lambda o: o.index)
            ]
            results.append(completions * n if greedy else completions)
        return results
