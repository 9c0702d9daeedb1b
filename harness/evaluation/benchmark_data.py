"""Where a benchmark's data comes from, read once: the copy its ``path`` parameter names, its rows, their hash.

A benchmark with a data set (``gsm8k``, ``humaneval``, ``mt-bench``) takes one parameter ``path``:

- ``None``: the **embedded** copy shipped inside the plugin package (its files' content hashes are written in
  the plugin, so a damaged install is a one-line error, :func:`check_shipped`);
- a local **path**: a file, or a folder holding the benchmark's files (``.jsonl`` or ``.jsonl.gz``);
- ``hf:`` or ``hf:<org/name>[:config]``: the Hugging Face **hub**, through :func:`harness.core.hub.load_split`.

:func:`source` parses it into a :class:`Source`; :func:`load_part` reads one part of that copy (a split, a
file) as :class:`Rows` (checked field by field: a bad row is one line naming ``file:line``, cached per file
and modification time); :meth:`Source.data_copy` names the copy read, with the content hash of each part, for
:attr:`harness.EvalResult.data`. :func:`select` keeps the first ``limit`` items and :func:`check_limit` checks
a limit given in code (an evaluation's own ``ctx.limit`` is checked when its context is made); :func:`truncate_at_stop` cuts a text at stop strings as
:meth:`harness.EvalContext.generate` does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.core import hub
from harness.core.context import check_limit, truncate_at_stop
from harness.core.data import DataCopy, read_jsonl, rows_sha256
from harness.core.errors import HarnessError

HUB_PREFIX = "hf:"
T = TypeVar("T")


class Rows(tuple[dict[str, Any], ...]):
    """The rows of one part of a data set, in file order, with their :func:`harness.rows_sha256` (``sha256``:
    the ``sha256sum`` of a file written as canonical JSONL, whichever copy the rows came from)."""

    @functools.cached_property
    def sha256(self) -> str:
        return rows_sha256(self)


@dataclass(frozen=True)
class Source:
    """The copy of a benchmark's data that its ``path`` parameter names: ``copy`` is ``embedded``, ``path`` or
    ``hub``; ``location`` the local file or folder (embedded, path) or the hub dataset's name; ``config`` the
    hub dataset's config."""

    copy: str
    location: str
    config: str | None = None

    @property
    def local(self) -> Path:
        """The local file or folder (``embedded`` or ``path``)."""
        return Path(self.location)

    def data_copy(self, parts: Mapping[str, str], location: str | Path | None = None) -> DataCopy:
        """This copy with the content hash of each part read (``location``: a more precise place, e.g. the
        subfolder that held the files)."""
        if self.copy == "hub":
            where = self.location + (f":{self.config}" if self.config else "")
        elif self.copy == "path":
            where = str(Path(location or self.location).resolve())
        else:
            where = str(location or self.location)
        return DataCopy(self.copy, where, dict(parts))


def source(path: str | None, *, embedded: Path, hub: str, hub_config: str | None = None) -> Source:
    """The copy ``path`` names: None -> ``embedded``; ``hf:`` -> ``hub`` (config ``hub_config``),
    ``hf:<org/name>[:config]`` -> that dataset; anything else a local file or folder (``~`` expanded)."""
    if path is None:
        return Source("embedded", str(embedded))
    if path.startswith(HUB_PREFIX):
        name, _, config = path[len(HUB_PREFIX):].strip().partition(":")
        return Source("hub", name or hub, config or hub_config)
    return Source("path", str(Path(path).expanduser()))


def find_file(src: Source, names: Sequence[str], *, where: str, hint: str) -> Path:
    """The file of a local copy: the location itself when it is a file, else the first of ``names`` in the
    folder; a missing one is a one-line error naming ``path`` and ``hint``."""
    root = src.local
    if root.is_file():
        return root
    if root.is_dir():
        file = next((root / n for n in names if (root / n).is_file()), None)
        if file is None:
            if src.copy == "embedded":
                raise HarnessError(f"{where}: the copy shipped with the package is missing {root / names[-1]}; "
                                   f"reinstall alignment-harness, or {hint}")
            raise HarnessError(f"{where}: path={root} has no {names[0] if names else 'data file'}; {hint}")
        return file
    if src.copy == "embedded":
        raise HarnessError(f"{where}: the copy shipped with the package is missing {root}; reinstall "
                           f"alignment-harness, or {hint}")
    raise HarnessError(f"{where}: path={root}: no such file or directory; {hint}")


def read_rows(file: Path, *, required: tuple[str, ...] = (),
              types: Mapping[str, type | tuple[type, ...]] | None = None) -> Rows:
    """The rows of a JSONL file (``.gz`` too), checked by :func:`harness.read_jsonl`; cached per file, size and
    modification time (the rows are shared: do not change them)."""
    file = Path(file).resolve()
    if not file.is_file():
        raise HarnessError(f"{file}: no such file; pass an existing local JSONL path")
    stat = file.stat()
    return _read_rows(str(file), stat.st_mtime_ns, stat.st_size, required, tuple(sorted((types or {}).items())))


@functools.lru_cache(maxsize=16)
def _read_rows(file: str, _mtime_ns: int, _size: int, required: tuple[str, ...],
               types: tuple[tuple[str, Any], ...]) -> Rows:
    try:
        return Rows(read_jsonl(file, required=required, types=dict(types)))
    except (OSError, EOFError) as exc:  # a damaged .gz
        raise HarnessError(f"{file}: cannot read it ({exc}); pass a JSONL or gzip-compressed JSONL file") from None


def hub_rows(name: str, config: str | None, split: str, *, required: tuple[str, ...] = (),
             types: Mapping[str, type | tuple[type, ...]] | None = None, where: str, hint: str) -> Rows:
    """The rows of a Hugging Face hub dataset's ``split``, read by :func:`harness.core.hub.load_split` (an
    unreachable hub, an unknown dataset or split is one line ending in ``hint``); a missing field is one line
    too. Cached per (name, config, split)."""
    return _hub_rows(name, config, split, required, tuple(sorted((types or {}).items())), where, hint)


@functools.lru_cache(maxsize=8)
def _hub_rows(name: str, config: str | None, split: str, required: tuple[str, ...],
              types: tuple[tuple[str, Any], ...], where: str, hint: str) -> Rows:
    rows = [dict(r) for r in hub.load_split(name, config, split, where=where, hint=hint)]
    for i, row in enumerate(rows):
        bad = [k for k in required if k not in row]
        bad += [k for k, kind in types if k in row and not isinstance(row[k], kind)]
        if bad:
            raise HarnessError(f"{where}: {hub.describe(name, config, split)} row {i}: missing or mistyped "
                               f"field(s) {', '.join(bad)}; {hint}")
    return Rows(rows)


def load_part(src: Source, part: str, *, files: Sequence[str] = (), split: str | None = None,
              required: tuple[str, ...] = (), types: Mapping[str, type | tuple[type, ...]] | None = None,
              shipped: Mapping[str, str] | None = None, where: str, hint: str) -> Rows:
    """The rows of one ``part`` of the copy ``src`` names: from the hub, its ``split`` (default ``part``); from
    a local copy, the file :func:`find_file` finds among ``files``. The embedded copy's hash must equal
    ``shipped[part]`` (:func:`check_shipped`)."""
    if src.copy == "hub":
        return hub_rows(src.location, src.config, split or part, required=required, types=types, where=where,
                        hint=hint)
    file = find_file(src, files, where=where, hint=hint)
    rows = read_rows(file, required=required, types=types)
    if src.copy == "embedded" and shipped is not None:
        check_shipped({part: rows.sha256}, shipped, file, where=where, hint=hint)
    return rows


def check_shipped(got: Mapping[str, str], shipped: Mapping[str, str], location: str | Path, *, where: str,
                  hint: str) -> None:
    """Refuse (one line) an embedded copy whose parts do not hash as the plugin says its files do."""
    bad = [k for k in got if k in shipped and got[k] != shipped[k]]
    if bad:
        diff = "; ".join(f"{k}: sha256 {got[k][:12]}, expected {shipped[k][:12]}" for k in bad)
        raise HarnessError(f"{where}: {location} does not hold the shipped data ({diff}); reinstall "
                           f"alignment-harness, or {hint}")


def select(items: Sequence[T], limit: int | None, *, where: str) -> Sequence[T]:
    """The first ``limit`` items (all when None); nothing to evaluate is a one-line error."""
    chosen = items[:limit] if limit is not None else items
    if not chosen:
        raise HarnessError(f"{where}: no items to evaluate; check path=")
    return chosen


__all__ = ["HUB_PREFIX", "Rows", "Source", "check_limit", "check_shipped", "find_file", "hub_rows", "load_part",
           "read_rows", "select", "source",
           "truncate_at_stop"]
