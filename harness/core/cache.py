"""A content-addressed cache for artifacts that cells of a sweep share (``results/cache/``).

``HARNESS_CACHE`` moves the root (``off``, ``none`` or ``0`` turns the cache off). An entry lives at
``<root>/<kind>/<key><suffix>``, where ``key`` is the hash of everything the artifact depends on
(:func:`cache_key`), so a changed input is a new key and entries never need invalidating. Writes are
atomic (temp file + rename). :meth:`Cache.fetch` computes a missing entry under a lock on its key
(``flock`` on ``<key>.lock``), so two workers that need the same entry at once compute it once: the
second waits and reads it (a hit). Where locks don't work the two compute it twice, harmlessly: the last
rename wins with identical content.

Kinds (:data:`KINDS`):

- ``warmstart/``: the policy after a benchmark's warm start, keyed by model, seed, benchmark name,
  version and params, harness version (``harness.cell.run._warm_start``).
- ``reflogps/``: the reference's per-token log-probs of a round's training rows
  (``Trainer.train_round``), keyed by the reference's identity, a digest of the rows' token ids and
  roles, the scoring batch size and the harness version.
- ``samples/``: what a sampler generated (``harness.training.samplers``), keyed by the generating model's
  identity, the engine, a digest of the prompts' token ids, ``n`` and every generation setting
  (temperature, top_p, max_new_tokens, stop, seed).

**Identity.** A model's identity is only known for the cell's *initial* policy: model name, seed, the
warm-start key, dtype, device and LoRA settings (:func:`model_identity`). So the reference has one when
``reference="initial"`` (every round) or ``reference="round"`` in round 0, and the policy only in round
0 before its first optimizer step. The trainer also checks that the weights were not written since
(torch's per-tensor version counters), so a hook or a resumed checkpoint that changes the weights
turns caching off for that model. When the identity is unknown nothing is cached: the artifact is
computed as if there were no cache. Plugins need not know: the trainer and the samplers ask a
:class:`CellCache` that they are handed.

Every lookup counts a hit or a miss per kind in :data:`STATS` (per process); ``run_cell`` records the
counts of its cell, ``harness run`` prints them and the sweep sums them into its summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import Any

from harness.core.digest import Hasher, digest
from harness.core.version import __version__

# kind -> {"hits": n, "misses": n} for this process
STATS: dict[str, dict[str, int]] = defaultdict(lambda: {"hits": 0, "misses": 0})
KINDS = {"warmstart": "warm start", "reflogps": "reference log-probs", "samples": "samples"}
OFF = ("off", "none", "0", "false", "no")


def cache_root() -> Path:
    """``$HARNESS_CACHE``, default ``<results root>/cache`` (see :mod:`harness.core.paths`)."""
    from harness.core.paths import cache_root as root
    from harness.core.paths import results_root

    return root() or results_root() / "cache"


def cache_disabled(spec: str | None = None) -> bool:
    """Whether ``spec`` (default: ``$HARNESS_CACHE``) turns the cache off."""
    spec = os.environ.get("HARNESS_CACHE", "") if spec is None else spec
    return spec.strip().lower() in OFF


def open_cache(spec: str | os.PathLike[str] | None = None) -> Cache | None:
    """The cache at ``spec`` (a folder; default ``$HARNESS_CACHE``), or None when it is turned off."""
    if spec is None:
        return None if cache_disabled() else Cache()
    if cache_disabled(str(spec)):
        return None
    return Cache(spec)


def cache_key(*parts: Any) -> str:
    """A stable hash of JSON-able parts (dict keys sorted): the artifact's identity."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))  # compact: not canonical_json
    return digest(blob, 24)


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

    @contextlib.contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """Hold an exclusive lock on an entry's key (a no-op where file locks are unavailable). A killed
        holder's lock is released by the operating system."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        path = self.path(kind, key, ".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass
            yield
        finally:
            os.close(fd)  # releases the lock

    def fetch(self, kind: str, key: str, suffix: str, *, read: Callable[[Path], Any], compute: Callable[[], Any],
              write: Callable[[Any, Path], None]) -> Any:
        """The entry read with ``read(path)`` (a hit), or ``compute()`` stored with ``write(value, path)`` (a
        miss); a miss is computed under :meth:`lock`, and found there if another process just wrote it."""
        p = self.path(kind, key, suffix)
        if not p.exists():
            with self.lock(kind, key):
                if not p.exists():
                    STATS[kind]["misses"] += 1
                    value = compute()
                    self.put(kind, key, lambda path: write(value, path), suffix)
                    return value
        STATS[kind]["hits"] += 1
        return read(p)

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


# -- identities and digests ---------------------------------------------------------------------------------


def model_identity(*, model: str, seed: int, warm_start: str | None, dtype: str, device: str,
                   lora: Any = None) -> str:
    """The identity of a cell's initial policy (and so of its initial reference)."""
    return cache_key("model", model, seed, warm_start, dtype, device, lora, __version__)


def _ids(h: Hasher, ids: Seq[int]) -> None:
    import numpy as np

    h.update(len(ids).to_bytes(4, "little"))
    h.update(np.asarray(ids, dtype="<i8").tobytes())


def rows_digest(rows: Seq[Any]) -> str:
    """A digest of the rows' roles and token ids (prompt and response of every role), in order."""
    h = Hasher()
    for row in rows:
        for role in sorted(row.seqs):
            s = row.seqs[role]
            h.update(role.encode() + b"\0")
            _ids(h, s.prompt.ids)
            _ids(h, s.response)
        h.update(b"\1")
    return h.hex(24)


def prompts_digest(prompts: Seq[Any]) -> str:
    """A digest of the prompts' token ids, in order."""
    h = Hasher()
    for p in prompts:
        _ids(h, p.ids)
    return h.hex(24)


def weight_versions(params: Iterable[Any]) -> tuple[int, ...]:
    """torch's version counters of some tensors: any in-place write (an optimizer step,
    ``load_state_dict``) changes them, so equal versions mean untouched weights."""
    return tuple(int(p._version) for p in params)


# -- what a cell's trainer and samplers see -------------------------------------------------------------------


class CellCache:
    """The cache as one cell sees it: reference log-probs and generated samples by model identity.

    ``identity(which)`` (``"reference"`` or ``"policy"``) gives the model's identity now, or None when it
    is unknown (then nothing is cached). Built by the trainer; samplers reach it as ``ctx.cache``.
    """

    def __init__(self, cache: Cache, identity: Callable[[str], str | None]) -> None:
        self.cache = cache
        self.identity = identity

    def reference_logprobs(self, rows: Seq[Any], *, batch_size: int,
                           compute: Callable[[], dict[str, list[Any]]]) -> dict[str, list[Any]]:
        """Per-token reference log-probs of ``rows`` (role -> one tensor per row), cached when the
        reference's identity is known."""
        ident = self.identity("reference")
        if ident is None:
            return compute()
        import torch

        key = cache_key("reflogps", ident, rows_digest(rows), len(rows), batch_size, __version__)
        return self.cache.fetch("reflogps", key, ".pt", read=lambda p: torch.load(p, weights_only=True),
                                compute=compute, write=lambda value, p: torch.save(value, p))

    def generate(self, source: str, lm: Any, prompts: Seq[Any], *, n: int, seed: int | None,
                 **settings: Any) -> list[list[Any]]:
        """``lm.generate(prompts, n=n, seed=seed, **settings)``, cached when the identity of ``source``
        (``"reference"`` or ``"policy"``) is known."""
        from harness.core.data import Completion

        def compute() -> list[list[Completion]]:
            return lm.generate(prompts, n=n, seed=seed, **settings)

        ident = self.identity(source)
        if ident is None:
            return compute()
        full = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 256, "stop": [], **settings}
        if isinstance(full["stop"], str):
            full["stop"] = [full["stop"]]
        full["stop"] = list(full["stop"])
        engine = getattr(lm, "engine", None)
        engine_id = [getattr(engine, "name", type(engine).__name__), getattr(engine, "batch_size", None)]
        key = cache_key("samples", ident, engine_id, prompts_digest(prompts), len(prompts), n, seed, full,
                        __version__)

        def read(path: Path) -> list[list[Completion]]:
            found = json.loads(path.read_text())
            return [[Completion(prompt=p, ids=tuple(ids), text=text, finish_reason=reason)
                     for ids, text, reason in outs] for p, outs in zip(prompts, found, strict=True)]

        def write(value: list[list[Completion]], path: Path) -> None:
            path.write_text(json.dumps([[[list(c.ids), c.text, c.finish_reason] for c in cs] for cs in value]))

        return self.cache.fetch("samples", key, ".json", read=read, compute=compute, write=write)


# -- counts ---------------------------------------------------------------------------------------------


def stats_snapshot() -> dict[str, dict[str, int]]:
    """A copy of this process's hit/miss counts."""
    return {k: dict(v) for k, v in STATS.items()}


def stats_since(before: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """The counts added since ``before`` (a :func:`stats_snapshot`), kinds with no lookups left out."""
    out = {}
    for kind, now in STATS.items():
        was = before.get(kind, {})
        delta = {k: int(now.get(k, 0)) - int(was.get(k, 0)) for k in ("hits", "misses")}
        if delta["hits"] or delta["misses"]:
            out[kind] = delta
    return out


def add_stats(total: dict[str, dict[str, int]], more: Mapping[str, Mapping[str, int]] | None) -> None:
    """Add one outcome's counts into a running total, in place."""
    for kind, counts in (more or {}).items():
        slot = total.setdefault(kind, {"hits": 0, "misses": 0})
        for k in ("hits", "misses"):
            slot[k] += int(counts.get(k, 0))


def describe_stats(stats: Mapping[str, Mapping[str, int]], kinds: Iterable[str] = KINDS) -> str:
    """``warm start 1 hits, 0 misses; reference log-probs ...`` for the given kinds (all known kinds
    by default, zeros included)."""
    order = list(kinds) + sorted(k for k in stats if k not in KINDS)
    parts = []
    for kind in order:
        c = stats.get(kind, {})
        parts.append(f"{KINDS.get(kind, kind)} {int(c.get('hits', 0))} hits, {int(c.get('misses', 0))} misses")
    return "; ".join(parts)
