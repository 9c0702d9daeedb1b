"""A saved IRL reward model: ``irl-rm``'s discriminator kept after its cell, and ``reward = "irl:<folder>"``.

An ``irl-rm`` cell with a run folder (``harness run``, or a sweep cell) writes the reward model it fitted
into ``<cell folder>/reward_model`` (``train.save_reward_model``, on by default; the record's
``reward_model_dir`` and a log line name it). The folder holds:

- ``irl_reward_model.json``: the manifest (``kind = "irl-reward-model"``, ``format``, ``base_model``, the
  reward ``form`` and ``token_level``, ``pad_id``, ``hidden_size``, the head's shape, the tokenizer's
  fingerprint, the training cell's id, method params and fit metrics);
- ``backbone/``: the discriminator's causal LM backbone and tokenizer (``save_pretrained``);
- ``head.safetensors``: the linear head (``weight [1, hidden]``, ``bias [1]``) on the backbone's final
  hidden state at the last token of prompt + response.

:class:`IRLReward` rebuilds it as a :class:`~harness.training.divergence.Discriminator` and scores token ids exactly as
the cell that trained it did (the same value as its logit, ``form = airl``). A policy whose tokenizer differs
from the reward model's is refused when its cell loads the data (the ids would mean other words).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.data import Completion, Prompt
from harness.core.digest import Hasher, digest
from harness.core.errors import HarnessError

if TYPE_CHECKING:
    from harness.training.divergence import Discriminator

MANIFEST = "irl_reward_model.json"
KIND = "irl-reward-model"
FORMAT = 1
FOLDER = "reward_model"
FIX = "give the reward_model folder an irl-rm cell wrote (its record's reward_model_dir, <cell folder>/reward_model)"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short hash of the tokenizer's vocabulary: equal fingerprints map text to the same ids."""
    vocab = sorted(tokenizer.get_vocab().items())
    return digest(json.dumps(vocab, ensure_ascii=False), 16)  # non-ASCII kept: not canonical_json


def save_irl_reward_model(rm: Discriminator, out: Path, *, tokenizer: Any, base_model: str,
                          info: Mapping[str, Any] | None = None) -> Path:
    """Write ``rm`` (backbone, head, manifest) into the folder ``out``; returns ``out``."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    rm.backbone.save_pretrained(out / "backbone")
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(out / "backbone")
    head = {k: v.detach().cpu().contiguous() for k, v in rm.head.state_dict().items()}
    save_file(head, str(out / "head.safetensors"))
    first = next(rm.backbone.parameters())
    manifest = {
        "kind": KIND, "format": FORMAT, "base_model": base_model, "form": rm.form, "token_level": rm.token_level,
        "pad_id": rm.pad_id, "hidden_size": int(rm.backbone.config.hidden_size),
        "dtype": str(first.dtype).removeprefix("torch."),
        "head": "head.safetensors: Linear(hidden_size, 1) on backbone/'s final hidden state at the last token of "
                "prompt + response (token_level: at every response token, averaged); reward = its logit (airl) "
                "or softplus(logit) (gail)",
        "tokenizer": tokenizer_fingerprint(tokenizer) if tokenizer is not None else None,
        "usage": f'reward = "irl:{out}"',
        **dict(info or {}),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
    return out


def read_manifest(path: str | Path, where: str = "reward") -> dict[str, Any]:
    """The manifest of a saved IRL reward model; a one-line :class:`HarnessError` naming ``where`` otherwise."""
    p = Path(path)
    head = f'{where} = "irl:{path}"'
    if not p.exists():
        raise HarnessError(f"{head}: no such folder; {FIX}")
    try:
        manifest = json.loads((p / MANIFEST).read_text())
    except FileNotFoundError:
        raise HarnessError(f"{head}: not a saved IRL reward model (no {MANIFEST} in it); {FIX}") from None
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{head}: {MANIFEST} is unreadable ({type(exc).__name__}); {FIX}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise HarnessError(f"{head}: {MANIFEST} is not an IRL reward model's (kind != {KIND!r}); {FIX}")
    if manifest.get("format") != FORMAT:
        raise HarnessError(f"{head}: format {manifest.get('format')!r} is not {FORMAT}; save it again with this "
                           f"harness (rerun its irl-rm cell)")
    missing = [f for f in ("backbone", "head.safetensors") if not (p / f).exists()]
    if missing:
        raise HarnessError(f"{head}: {', '.join(missing)} missing from the folder; {FIX}")
    return manifest


def load_irl_reward_model(path: str | Path, device: str = "cpu") -> Discriminator:
    """The :class:`~harness.training.divergence.Discriminator` saved in ``path`` (in eval mode)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from harness.training.divergence import Discriminator

    manifest = read_manifest(path)
    p = Path(path)
    dtype = getattr(torch, manifest.get("dtype", "float32"))
    backbone = AutoModelForCausalLM.from_pretrained(p / "backbone", torch_dtype=dtype).to(device).eval()
    rm = Discriminator(backbone, manifest["pad_id"], form=manifest["form"], token_level=manifest["token_level"])
    rm.head.load_state_dict({k: v.to(device) for k, v in load_file(str(p / "head.safetensors")).items()})
    return rm


class IRLReward:
    """``reward = "irl:<folder>"``: a saved IRL reward model as a :data:`~harness.training.rewards.RewardFn`.

    Loaded on first use (validation reads only the manifest); pickles as its path."""

    def __init__(self, path: str, manifest: Mapping[str, Any] | None = None, device: str | None = None) -> None:
        self.path, self.device = str(path), device
        self.manifest = dict(manifest) if manifest is not None else read_manifest(path)
        self._rm: Any = None

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Refuse a policy whose tokenizer maps text to other ids than the reward model's."""
        want = self.manifest.get("tokenizer")
        if want is None or tokenizer is None or not hasattr(tokenizer, "get_vocab"):
            return
        if tokenizer_fingerprint(tokenizer) != want:
            raise HarnessError(
                f'reward = "irl:{self.path}": the reward model reads the tokens of {self.manifest.get("base_model")}, '
                f"and this cell's model tokenizes differently; train a policy with that tokenizer, or train irl-rm "
                f"on this model")

    def fingerprint(self) -> str:
        """A short hash of the manifest and the head: part of the training data's version, so a reward model
        trained again into the same folder makes new cells."""
        h = Hasher()
        for name in (MANIFEST, "head.safetensors"):
            h.update((Path(self.path) / name).read_bytes())
        return h.hex(10)

    def model(self) -> Discriminator:
        """The loaded discriminator."""
        if self._rm is None:
            import torch

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._rm = load_irl_reward_model(self.path, device)
        return self._rm

    def batch(self, prompts: Seq[Prompt], completions: Seq[Completion]) -> list[Any]:
        return self.model().batch(prompts, completions)

    def __call__(self, prompt: Prompt, completion: Completion) -> Any:
        return self.batch([prompt], [completion])[0]

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "device": self.device, "manifest": self.manifest, "_rm": None}


__all__ = ["FOLDER", "KIND", "MANIFEST", "IRLReward", "load_irl_reward_model", "read_manifest",
           "save_irl_reward_model", "tokenizer_fingerprint"]
