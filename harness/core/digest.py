"""One digest for every hash the harness keeps: SHA-256, written as hex and cut to a length chosen per use.

The only module of the harness that imports :mod:`hashlib` (a test keeps it so). Every id and key is
``digest(data, length)`` of one input, or a :class:`Hasher` fed in parts (files, token ids, streamed rows):

- ``bytes`` are hashed as they are, a ``str`` as its UTF-8 bytes;
- anything else as canonical JSON: ``json.dumps(obj, sort_keys=True, default=str)`` (default separators,
  ASCII escapes), so equal values give equal digests in every process. A site that needs another
  serialisation (compact separators, non-ASCII kept) serialises itself and passes the string.

``length`` is how many hex digits are kept (64: all of them). The lengths in use, each fixed by what was
already recorded under it (changing one changes every id of that kind):

====  ===========================================================================================
 64   data copies (:func:`harness.core.data.rows_sha256`, equal to ``sha256sum`` of a canonical file),
      judge cache keys (:func:`harness.evaluation.judge.cache_key`)
 24   cache artifacts: :func:`harness.core.cache.cache_key`, rows and prompts digests
 16   cell ids (resolved, sweep and ``harness eval``), warm-start keys, item ids, tokenizer fingerprints,
      GGUF cache entries
 12   plugin source code (:func:`harness.core.identity.hash_files`)
 10   training data files and IRL reward models (part of a data version)
  8   a sweep's set of cell ids (``harness.suite.expand._ids_hash``, the sweep id's suffix)
====  ===========================================================================================
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["FULL", "Hasher", "canonical_json", "digest"]

FULL = 64
"""Every hex digit of a SHA-256."""


def canonical_json(obj: Any) -> str:
    """``obj`` as the JSON text :func:`digest` hashes: keys sorted, anything not JSON as its ``str``."""
    return json.dumps(obj, sort_keys=True, default=str)


def _as_bytes(data: Any) -> bytes | bytearray | memoryview:
    if isinstance(data, bytes | bytearray | memoryview):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    return canonical_json(data).encode("utf-8")


def digest(data: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``data`` (bytes, text, or a JSON-able value as
    :func:`canonical_json`; see the module docstring)."""
    if not 1 <= length <= FULL:
        raise ValueError(f"digest length must be 1..{FULL}, got {length}")
    return hashlib.sha256(_as_bytes(data)).hexdigest()[:length]


class Hasher:
    """A SHA-256 fed in parts: ``update(part)`` as they come (bytes, text, or a JSON-able value, as
    :func:`digest` takes them), then ``hex(length)``; ``Hasher(a).hex(n) == digest(a, n)``."""

    def __init__(self, data: Any = b"") -> None:
        self._h = hashlib.sha256(_as_bytes(data))

    def update(self, data: Any) -> None:
        self._h.update(_as_bytes(data))

    def hex(self, length: int = 16) -> str:
        """The first ``length`` hex digits of the digest of everything fed so far."""
        if not 1 <= length <= FULL:
            raise ValueError(f"digest length must be 1..{FULL}, got {length}")
        return self._h.hexdigest()[:length]

    def raw(self) -> bytes:
        """The 32 bytes of the digest of everything fed so far."""
        return self._h.digest()
