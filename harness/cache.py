"""A content-addressed cache for artifacts that cells of a sweep share (``results/cache/``).

``HARNESS_CACHE`` moves the root. An entry lives at ``<root>/<kind>/<key><suffix>``, where ``key`` is the
hash of everything the artifact depends on (:func:`cache_key`), so a changed input is a new key and
entries never need invalidating. Writes are atomic (temp file + rename), so concurrent workers that
compute the same entry race harmlessly: the last rename wins with identical content.

Kinds in use:

- ``warmstart/``: the policy after a benchmark's warm start, keyed by model, seed, benchmark name,
  version and params, harness version. Written and read by ``harness.run._warm_start``; each cell's
  record says ``warm_start = hit | miss | none`` and the sweep sums them.

Kinds this API is meant for (call sites, not wired yet):

- ``reflogps/``: reference log-probs of a round's training rows: in ``Trainer.train_round`` (harness/train.py)
  around ``self.reference.logprobs(...)`` when ``method.reference == "initial"`` and the round's rows come
  from an offline sampler; key = (model, seed, warm-start key, the rows' token ids, ref dtype/device).
- ``samples/``: generated samples of a self-generating sampler (harness/samplers.py), keyed by the
  generating model's state (warm-start key, round 0 only), prompts, n and sampling settings and seed.

Every :class:`Cache` counts hits and misses per kind in :data:`STATS` (per process); a sweep worker
returns them with its cell's outcome, and the sweep sums them into its summary.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

# kind -> {"hits": n, "misses": n} for this process
STATS: dict[str, dict[str, int]] = defaultdict(lambda: {"hits": 0, "misses": 0})


def cache_root() -> Path:
    """``$HARNESS_CACHE``, default ``results/cache``."""
    return Path(os.environ.get("HARNESS_CACHE", "results/cache"))


def cache_key(*parts: Any) -> str:
    """A stable hash of JSON-able parts (dict keys sorted): the artifact's identity."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class Cache:
    """Get/put of files by (kind, key)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root()

    def path(self, kind: str, key: str, suffix: str = "") -> Path:
        if not kind or "/" in kind or "." in kind:
            raise ValueError(f"cache kind must be a plain name, got {kind!r}")
        return self.root / kind / f"{key}{suffix}"

    def get(self, kind: str, key: str, suffix: str = "") -> Path | None:
        """The entry's path, or None (a miss); counts the hit or miss."""
        p = self.path(kind, key, suffix)
        hit = p.exists()
        STATS[kind]["hits" if hit else "misses"] += 1
        return p if hit else None

    def put(self, kind: str, key: str, write: Callable[[Path], None] | bytes, suffix: str = "") -> Path:
        """Store an entry atomically; ``write`` is bytes or a function that writes a given path."""
        p = self.path(kind, key, suffix)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{key}.", suffix=".tmp")
        os.close(fd)
        try:
            if isinstance(write, bytes):
                Path(tmp).write_bytes(write)
            else:
                write(Path(tmp))
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return p

    def get_json(self, kind: str, key: str) -> Any | None:
        p = self.get(kind, key, ".json")
        return json.loads(p.read_text()) if p is not None else None

    def put_json(self, kind: str, key: str, value: Any) -> Path:
        return self.put(kind, key, json.dumps(value).encode(), ".json")

    def get_torch(self, kind: str, key: str) -> Any | None:
        """A tensor (or dict/list of tensors) saved with :meth:`put_torch`, or None."""
        p = self.get(kind, key, ".pt")
        if p is None:
            return None
        import torch

        return torch.load(p, weights_only=True)

    def put_torch(self, kind: str, key: str, value: Any) -> Path:
        import torch

        return self.put(kind, key, lambda path: torch.save(value, path), ".pt")

    def get_or_compute(self, kind: str, key: str, compute: Callable[[], Any]) -> Any:
        """The cached tensors for ``key``, computing and storing them on a miss."""
        found = self.get_torch(kind, key)
        if found is not None:
            return found
        value = compute()
        self.put_torch(kind, key, value)
        return value


def stats_snapshot() -> dict[str, dict[str, int]]:
    """A copy of this process's hit/miss counts."""
    return {k: dict(v) for k, v in STATS.items()}


def add_stats(total: dict[str, dict[str, int]], more: dict[str, dict[str, int]] | None) -> None:
    """Add one outcome's counts into a running total, in place."""
    for kind, counts in (more or {}).items():
        slot = total.setdefault(kind, {"hits": 0, "misses": 0})
        for k in ("hits", "misses"):
            slot[k] += int(counts.get(k, 0))
