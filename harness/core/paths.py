"""Where things go: one results root (``--results DIR`` / ``$HARNESS_HOME``) holding the store, the run
folders, the shared cache and the converted models, so nothing lands in the current directory unasked.

- results root: ``$HARNESS_HOME``, else ``$HARNESS_RESULTS`` (older name), else ``./results``;
  ``harness --results DIR`` sets both for the process and the workers it starts; a sweep given
  ``--store PATH`` and no root uses the store's folder;
- store: ``<root>/harness.db``; ``harness run`` folders: ``<root>/runs/<cell id>``;
- cache (warm starts, reference log-probs, samples, judgments): ``$HARNESS_CACHE``, else ``<root>/cache``;
  ``HARNESS_CACHE=off`` (or none, 0, false, no) turns it off;
- converted GGUF models: ``<cache>/models``; with the cache off, a temporary folder removed at exit
  (converted again next time).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

OFF = ("off", "none", "0", "false", "no")


def results_root() -> Path:
    """``$HARNESS_HOME``, else ``$HARNESS_RESULTS``, else ``results`` (relative to the current directory)."""
    return Path(os.environ.get("HARNESS_HOME") or os.environ.get("HARNESS_RESULTS") or "results").expanduser()


def use_results_root(path: str | os.PathLike[str]) -> Path:
    """Make ``path`` the results root of this process and of every process it starts."""
    root = Path(path).expanduser().resolve()
    os.environ["HARNESS_HOME"] = os.environ["HARNESS_RESULTS"] = str(root)
    return root


def sync_env() -> None:
    """``$HARNESS_HOME`` given alone: readers of the older ``$HARNESS_RESULTS`` follow it."""
    if os.environ.get("HARNESS_HOME") and not os.environ.get("HARNESS_RESULTS"):
        os.environ["HARNESS_RESULTS"] = os.environ["HARNESS_HOME"]


def cache_off(spec: str | None = None) -> bool:
    spec = os.environ.get("HARNESS_CACHE", "") if spec is None else spec
    return spec.strip().lower() in OFF


def cache_root() -> Path | None:
    """The shared cache's folder, or None when ``HARNESS_CACHE`` turns it off."""
    spec = os.environ.get("HARNESS_CACHE", "")
    if cache_off(spec):
        return None
    return Path(spec).expanduser() if spec.strip() else results_root() / "cache"


_TEMP: list[Path] = []


def models_dir() -> Path:
    """Where converted models live: ``<cache>/models``, or (cache off) a temporary folder removed at exit."""
    root = cache_root()
    if root is not None:
        return root / "models"
    if not _TEMP:
        _TEMP.append(Path(tempfile.mkdtemp(prefix="harness-models-")))
        atexit.register(shutil.rmtree, _TEMP[0], True)
    return _TEMP[0]
