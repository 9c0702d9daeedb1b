"""The Hugging Face hub: whether it may be read now, and one split of a hub dataset read from it.

:func:`offline` (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set: only local caches are read),
:func:`unreachable` (a short TCP probe of the hub endpoint, so that an offline machine fails at once instead
of waiting on the libraries' retries) and :func:`load_split`: the one place the host reads a split of a hub
dataset (``datasets.load_dataset``, which also reads its local cache), for benchmarks' data
(:func:`harness.evaluation.benchmark_data.hub_rows`) and training data (:mod:`harness.training.datasets`) alike.
Each caller shapes what it gets (plain rows, or a ``datasets.Dataset`` it selects from).
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from harness.core.errors import HarnessError
from harness.core.progress import phase

PROBE_TIMEOUT_S = 3.0


def offline() -> bool:
    """Whether the hub is switched off here (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``, as the
    environment or as ``huggingface_hub`` read it at import)."""
    truthy = {"1", "true", "yes", "on"}
    if any(os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - transformers depends on it
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def unreachable(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the hub endpoint cannot be reached (a short reason), or None when a TCP connection succeeds.

    Behind a proxy (``HTTPS_PROXY``/``ALL_PROXY``) a direct connection says nothing, so no check is made.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = os.environ.get("HF_ENDPOINT")
    if not endpoint:
        try:
            from huggingface_hub import constants

            endpoint = constants.ENDPOINT
        except ImportError:  # pragma: no cover
            endpoint = "https://huggingface.co"
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:  # name resolution has no timeout of its own: a machine without DNS can hang in it for tens of seconds
        addresses = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        return f"cannot resolve {host} within {timeout:g} s (set HF_HUB_OFFLINE=1 on an offline machine)"
    except OSError as exc:
        return f"cannot resolve {host}: {exc.strerror or exc} (set HF_HUB_OFFLINE=1 on an offline machine)"
    finally:
        pool.shutdown(wait=False)
    family, kind, proto, _, address = addresses[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc} (set HF_HUB_OFFLINE=1 on an offline machine)"


def describe(name: str, config: str | None, split: str, data_dir: str | None = None) -> str:
    """How errors name a split of a hub dataset: ``the Hugging Face dataset 'org/x' (config) split 'test'``."""
    return (f"the Hugging Face dataset '{name}'" + (f" ({config})" if config else "")
            + (f" data_dir '{data_dir}'" if data_dir else "") + f" split '{split}'")


def load_split(name: str, config: str | None, split: str, *, data_dir: str | None = None, where: str,
               hint: str) -> Any:
    """The ``split`` of the hub dataset ``name`` (``config``, ``data_dir``) as a ``datasets.Dataset``:
    ``datasets.load_dataset``, which reads its local cache first (a local folder of data files named as
    ``name`` is read as the library reads it). Offline (:func:`offline`, also when the flag was set after the
    libraries read it at import): the cache only, never a request. Online, the hub is probed first
    (:func:`unreachable`): an unreachable hub is an error at once, not after the library's retries. An
    unreachable hub, an unknown dataset or a missing split is one line ``{where}: can't load ...; {hint}``.
    The library's own progress bars are off: a phase line says what is loading."""
    what = describe(name, config, split, data_dir)
    off = offline()
    reason = None if off or Path(name).expanduser().is_dir() else unreachable()
    if reason is not None:
        raise HarnessError(f"{where}: can't load {what}: the hub is unreachable ({reason}); {hint}")
    import datasets

    datasets.disable_progress_bars()  # the harness shows its own progress: the phase line
    was_off = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = was_off or off
    try:
        with phase(f"loading {what}"):
            return datasets.load_dataset(name, config, split=split, **({"data_dir": data_dir} if data_dir else {}))
    except Exception as exc:  # noqa: BLE001 -- ConnectionError, DatasetNotFoundError, ValueError, ...: one line
        detail = " ".join((str(exc).strip().splitlines() or [""])[0][:200].split())
        cause = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        if detail.startswith("Unknown split"):
            raise HarnessError(f"{where}: can't load {what}: no such split ({detail}); {hint}") from None
        raise HarnessError(f"{where}: can't load {what}: the hub is offline or unreachable, or the dataset is "
                           f"unknown and not cached ({cause}); {hint}") from None
    finally:
        datasets.config.HF_HUB_OFFLINE = was_off
