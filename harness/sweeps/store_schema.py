"""The store's file: its SQLite schema (``SCHEMA``, version ``SCHEMA_VERSION``) and how a file is opened.

:func:`open_database` creates the tables in a new file, refuses a file that is not a store (a SQLite
file with other tables is left unchanged), opens read-only stores with a ``mode=ro`` URI (or as an
immutable file when its folder is read-only), and runs ``PRAGMA quick_check`` (a one-line warning on
damage). The queries are in :mod:`harness.sweeps.store`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.errors import HarnessError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    suite_path TEXT,
    suite_json TEXT NOT NULL,          -- the suite after --set overrides
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sweep_id TEXT NOT NULL REFERENCES sweeps(id),
    started_at REAL NOT NULL,
    finished_at REAL,
    host TEXT, pid INTEGER,
    executor TEXT,
    summary_json TEXT                  -- counts, cache hits/misses, wall time
);
CREATE TABLE IF NOT EXISTS cells (
    id TEXT PRIMARY KEY,
    base_id TEXT NOT NULL,             -- ResolvedCell.cell_id (without plugin versions)
    model TEXT NOT NULL,
    method TEXT NOT NULL,
    benchmark TEXT NOT NULL,
    benchmark_version TEXT,
    seed INTEGER NOT NULL,
    config_json TEXT NOT NULL,         -- ResolvedCell.resolved_dict()
    plugins_json TEXT,                 -- plugin name -> version for the plugins that run this cell
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    error TEXT,
    owner TEXT,                        -- host:pid:start-time of the sweep running it
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    wall_s REAL,
    timings_json TEXT,
    provenance_json TEXT,
    warm_start TEXT                    -- hit | miss | none
);
CREATE TABLE IF NOT EXISTS sweep_cells (
    sweep_id TEXT NOT NULL REFERENCES sweeps(id),
    cell_id TEXT NOT NULL REFERENCES cells(id),
    label TEXT NOT NULL,               -- the method's label in this sweep, e.g. dpo(beta=0.05)
    position INTEGER NOT NULL,
    PRIMARY KEY (sweep_id, cell_id)
);
CREATE TABLE IF NOT EXISTS metrics (
    cell_id TEXT NOT NULL REFERENCES cells(id),
    round INTEGER NOT NULL,
    benchmark TEXT NOT NULL,
    benchmark_version TEXT,
    metric TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (cell_id, round, benchmark, metric)
);
CREATE TABLE IF NOT EXISTS steps (
    cell_id TEXT NOT NULL REFERENCES cells(id),
    round INTEGER NOT NULL,
    step INTEGER NOT NULL,
    loss REAL,
    metrics_json TEXT NOT NULL,
    PRIMARY KEY (cell_id, round, step)
);
CREATE TABLE IF NOT EXISTS records (
    cell_id TEXT NOT NULL REFERENCES cells(id),
    idx INTEGER NOT NULL,
    benchmark TEXT NOT NULL,
    record_json TEXT NOT NULL,
    PRIMARY KEY (cell_id, idx)
);
CREATE TABLE IF NOT EXISTS round_records (  -- per-item records of the evaluated rounds before the last one
    cell_id TEXT NOT NULL REFERENCES cells(id),
    round INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    benchmark TEXT NOT NULL,
    record_json TEXT NOT NULL,
    PRIMARY KEY (cell_id, round, idx)
);
CREATE TABLE IF NOT EXISTS heartbeats (
    cell_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,               -- host:pid:start-time of the sweep running the cell
    worker TEXT,                       -- host:pid:start-time of its worker (its process group's leader)
    beat_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cells_status ON cells(status);
CREATE INDEX IF NOT EXISTS sweep_cells_cell ON sweep_cells(cell_id);
"""


def open_database(path: Path, *, create: bool = True, readonly: bool = False) -> tuple[sqlite3.Connection, list[str]]:
    """The connection to the store at ``path`` and the warnings opening it gave (see the module docstring)."""
    warnings: list[str] = []
    if path.is_dir():
        raise HarnessError(f"--store {path}: is a folder; give the results database file, e.g. "
                           f"{path / 'harness.db'}")
    if not path.exists():
        if not create or readonly:
            raise HarnessError(f"--store {path}: no such results database; run `harness sweep` first "
                               f"or give the right --store")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HarnessError(f"--store {path}: can't create its folder ({exc.strerror or exc}); "
                               f"give a writable --store") from None
    elif not readonly and not os.access(path.parent, os.W_OK | os.X_OK):
        raise HarnessError(f"--store {path}: its folder {path.parent} is not writable; give a "
                           f"writable --store (read-only commands such as `harness leaderboard` work as is)")
    try:
        db = _connect(path, readonly)
        found = _schema_version(db)
        if found is None and readonly:
            raise HarnessError(f"--store {path}: not a harness results database (a SQLite file without "
                               f"the harness's tables); give the --store a sweep wrote")
        if found is None and _has_tables(db):
            raise HarnessError(f"--store {path}: not a harness results database (a SQLite file with "
                               f"other tables); it was left unchanged; give a new --store path")
        if not readonly:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=60000")
        if not readonly and (found is None or int(found) == SCHEMA_VERSION):
            with _transaction(db):
                for statement in _statements(SCHEMA):
                    db.execute(statement)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            found = _schema_version(db)
        check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise HarnessError(f"--store {path}: not a harness results database or unreadable ({exc}); "
                           f"give another path") from None
    if found is None or int(found) != SCHEMA_VERSION:
        raise HarnessError(f"--store {path}: schema version {found}, this harness reads "
                           f"{SCHEMA_VERSION}; use a new --store")
    if check != "ok":
        detail = " ".join(str(check).replace("***", "").split())[:200]
        if not readonly:  # appending to a damaged file could lose what it still holds
            db.close()
            raise HarnessError(f"--store {path}: PRAGMA quick_check reports damage ({detail}); nothing was "
                               f"written; copy the file, run `sqlite3 FILE .recover > dump.sql` and give a new "
                               f"--store (read-only commands such as `harness leaderboard` still read it)")
        warnings.append(f"--store {path}: PRAGMA quick_check reports damage ({detail}); results may "
                        f"be incomplete; copy the file and run `sqlite3 FILE .recover`")
    return db, warnings


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if not readonly:
        db = sqlite3.connect(path, timeout=60, isolation_level=None)
    else:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            # a WAL database in a read-only folder (no -shm to create): read it as an immutable file
            db.close()
            db = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True, timeout=60,
                                 isolation_level=None)
    db.row_factory = sqlite3.Row
    return db


def _has_tables(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] > 0


def _schema_version(db: sqlite3.Connection) -> str | None:
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
        return None
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return row[0] if row else None


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _statements(script: str) -> list[str]:
    """Split the schema into statements (executescript would COMMIT our transaction)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
