"""Cell identity from code: a hash of each participating plugin's source files.

A cell's id (:attr:`harness.cell.definition.ResolvedCell.cell_id`, hence the sweep's cell id and ``harness run``'s
checkpoint folder) includes :func:`code_hash` of every plugin that registered its method, benchmarks and
engine. Editing a plugin's code gives its cells new ids: a sweep reruns them, ``harness run`` starts
afresh, and the records made with the old code stay in the store under their old ids.

What is hashed (paths relative to their root, and contents, in sorted order):

- a plugin loaded from a file (``--plugin my_method.py``): that file;
- a plugin module (an entry point or ``--plugin pkg.mod``): every ``.py`` file of the module's top-level
  package (all of ``alignment_harness_plugins`` for the built-ins), plus the ``.py`` files its
  distribution's ``RECORD`` lists as installed in other top-level modules.

The harness's own code is not hashed (its version is in the id), even where it shares the plugin's
distribution (the built-ins'); nor is an editable install's finder (it names the checkout's folder, not
code), nor an in-tree ``*.egg-info``'s source list (found only when the current directory is on
``sys.path``, and it lists the tests too): the same code gives the same ids whatever folder it is checked
out in and however Python was started. A cell's record keeps the git commit of the harness that ran it, and
the leaderboard says when a sweep's cells ran under different code.
"""

from __future__ import annotations

import importlib.metadata
import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from harness.core.digest import Hasher

if TYPE_CHECKING:
    from harness.core.plugins import PluginHost, PluginInfo

HASH_CHARS = 12


def source_files(module: ModuleType | None, dist_name: str | None = None) -> list[Path]:
    """The source files that make up a plugin module (see the module docstring)."""
    if module is None:
        return []
    files: set[Path] = set()
    file = getattr(module, "__file__", None)
    top = (getattr(module, "__name__", "") or "").split(".")[0]
    import sys

    top_mod = sys.modules.get(top)
    top_paths = list(getattr(top_mod, "__path__", []) or []) if top_mod is not None and top != module.__name__ else []
    if not top_paths and hasattr(module, "__path__"):
        top_paths = list(module.__path__)
    for folder in top_paths:
        files.update(p for p in Path(folder).rglob("*.py") if "__pycache__" not in p.parts)
    if not files and file:
        files.add(Path(file))
    if dist_name:
        files.update(_installed_modules(dist_name))
    return sorted(files)


def _installed_modules(dist_name: str) -> list[Path]:
    """The ``.py`` files the distribution's ``RECORD`` lists, but the harness's own and editable finders."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return []
    if dist.read_text("RECORD") is None:  # an egg-info: a source list (tests too), not what is installed
        return []
    host = __name__.split(".")[0]
    out = []
    for f in dist.files or []:
        first = Path(str(f)).parts[0] if Path(str(f)).parts else ""
        if str(f).endswith(".py") and first != host and not first.startswith("__editable__"):
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                out.append(path)
    return out


def hash_files(files: Iterable[Path]) -> str:
    """A short hash of file names (the last two path parts) and contents."""
    h = Hasher()
    for path in sorted(Path(f).resolve() for f in files):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        h.update("/".join(path.parts[-2:]).encode() + b"\0" + Hasher(data).raw())
    return h.hex(HASH_CHARS)


def code_hash(info: PluginInfo) -> str:
    """The hash of one loaded plugin's source, computed once per load (the code in memory is fixed)."""
    if info.code is None:
        info.code = hash_files(source_files(info.module, info.dist))
    return info.code


def plugin_code(host: PluginHost, names: Iterable[str]) -> dict[str, str]:
    """Plugin name -> :func:`code_hash` for the named loaded plugins (unknown names are skipped)."""
    return {n: code_hash(host.infos[n]) for n in sorted(set(names)) if n in host.infos}


def participants(host: PluginHost, method: str, benchmarks: Iterable[str], engine: str,
                 train_data: str | None = None) -> list[str]:
    """The plugins that registered a cell's method, benchmarks, engine and training data (a dataset or a
    benchmark named by a suite's ``train_data``)."""
    origin = host.registry.origin
    names = [origin.get(("method", method)), origin.get(("engine", engine))]
    names += [origin.get(("benchmark", b)) for b in benchmarks]
    if train_data is not None:
        names += [origin.get(("dataset", train_data)), origin.get(("benchmark", train_data))]
    return sorted({n for n in names if n})


def mixed_code(cells: Iterable[Mapping[str, Any]]) -> str | None:
    """One line saying how a sweep's done cells differ in the code that ran them, or None.

    Looks at each cell's plugin versions and code hashes (``plugins``), the harness's version and git
    commit (``provenance``), and the copy of each benchmark's data its evaluations read (``provenance.data``:
    copy and content hash, :class:`harness.core.data.DataCopy`), so results from different copies of a data
    set never mix silently. ``cells`` are :meth:`harness.sweeps.store.Store.cells` rows."""
    seen: dict[str, set[str]] = {}
    data: dict[str, dict[str, set[str]]] = {}  # benchmark -> content hash -> the copies that had it
    for c in cells:
        if c.get("status") != "done":
            continue
        for name, ver in (c.get("plugins") or {}).items():
            seen.setdefault(f"plugin {name}", set()).add(str(ver))
        prov = c.get("provenance") or {}
        commit = prov.get("git_commit")
        if commit:
            seen.setdefault("harness commit", set()).add(commit[:10] + ("+dirty" if prov.get("git_dirty") else ""))
        version = (prov.get("versions") or {}).get("alignment-harness")
        if version:
            seen.setdefault("harness version", set()).add(str(version))
        for bench, copy in (prov.get("data") or {}).items():
            if isinstance(copy, Mapping) and copy.get("sha256"):
                data.setdefault(bench, {}).setdefault(str(copy["sha256"])[:12], set()).add(str(copy.get("copy")))
    for bench, hashes in data.items():  # the same rows from another copy are the same data: no note
        seen[f"{bench} data"] = {f"{'+'.join(sorted(copies))} {h}" for h, copies in hashes.items()}
    diffs = [f"{what} ({len(v)}: {', '.join(sorted(v))})" for what, v in sorted(seen.items()) if len(v) > 1]
    if not diffs:
        return None
    return "note: this sweep's cells ran under different code or data: " + "; ".join(diffs)


def reset_cells(store: Any, cell_ids: Iterable[str]) -> list[str]:
    """Mark done or failed cells pending again (``harness sweep --rerun``) and return their ids; a running
    cell is left alone. Their metrics stay until the rerun's result replaces them."""
    ids = iter(cell_ids)  # may be a generator: read 500 at a time
    changed: list[str] = []
    with store.transaction() as db:
        while chunk := list(itertools.islice(ids, 500)):
            marks = ",".join("?" * len(chunk))
            rows = db.execute(f"SELECT id FROM cells WHERE status IN ('done', 'failed') AND id IN ({marks})", chunk)
            changed += [r["id"] for r in rows.fetchall()]
            db.execute(f"UPDATE cells SET status='pending', owner=NULL WHERE status IN ('done', 'failed') "
                       f"AND id IN ({marks})", chunk)
    return changed
