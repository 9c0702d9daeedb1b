"""The results store: one SQLite file in WAL mode (``results/harness.db`` by default).

Tables (see ``SCHEMA``):

- ``sweeps``: one row per expanded suite (id = suite name + hash of its cell ids, so re-running the
  same suite resumes the same sweep); ``sweep_runs``: one row per invocation with its summary
  (done / failed / skipped counts, cache hits and misses, wall time).
- ``cells``: one row per cell id (hash of the resolved config, the harness version and the versions
  of the plugins that run it); status ``pending | running | done | failed``, the error, timings,
  provenance (package versions, git commit, device, host), the seed, the owner of a running cell.
- ``sweep_cells``: which sweep holds which cell, under which label; a cell can belong to several
  sweeps, so a second sweep reuses cells that are already done.
- ``metrics`` (cell, round, benchmark, benchmark version, metric, value), ``steps`` (per-step
  training metrics) and ``records`` (per-item benchmark records of the final evaluation, JSON);
  ``round_records``: the per-item records of every earlier evaluated round (a store written before this
  table existed has none; :meth:`Store.item_records` reads both).

- ``heartbeats`` (cell, owner, worker, beat time): one row per running cell. The sweep that owns the
  cell beats about every :data:`HEARTBEAT_S` seconds and names the worker process (``host:pid:start``,
  the leader of the worker's process group).

A cell's results are written in ONE transaction when it ends (:meth:`Store.finish`), so a killed
sweep loses at most the cells that were running. :meth:`Store.claim` never takes over a running cell
whose owner is alive (on this host: its pid and start time; on another host: a heartbeat younger than
:data:`HEARTBEAT_EXPIRY_S`). A stale one (owner dead, or heartbeat expired) is taken over only once its
old worker processes are gone; until then it is ``lingering``.

Read-only commands open the store with ``readonly=True`` (a ``mode=ro`` URI): nothing is created or
changed, and a file without the harness's ``meta`` table is refused instead of being turned into a
store. Every open runs ``PRAGMA quick_check`` and keeps a one-line warning in ``Store.warnings``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.sweeps.owners import owner_alive, owner_token, processes_alive  # noqa: F401 - owner_token: the store's API too
from harness.sweeps.store_schema import open_database

STATUSES = ("pending", "running", "done", "failed")
HEARTBEAT_S = 5.0  # how often a sweep beats for its running cells
HEARTBEAT_EXPIRY_S = 60.0  # a heartbeat older than this marks a cell of another host stale


def default_store_path() -> Path:
    """``$HARNESS_RESULTS/harness.db`` (default ``results/harness.db``)."""
    return Path(os.environ.get("HARNESS_RESULTS", "results")) / "harness.db"


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


class Store:
    """A connection to one results database (created on first use)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, readonly: bool = False) -> None:
        """Open (``create``: or make) the store at ``path``; ``readonly`` opens it ``mode=ro`` and changes
        nothing (see :func:`harness.sweeps.store_schema.open_database`)."""
        self.path = Path(path)
        self.readonly = readonly
        self.db, self.warnings = open_database(self.path, create=create, readonly=readonly)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error): all or nothing."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------------
    def add_sweep(self, sweep_id: str, name: str, suite_path: str | None, suite: dict[str, Any],
                  cells: Iterable[dict[str, Any]]) -> None:
        """Record a sweep and its cells (new cells as pending; cells already known keep their status)."""
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO sweeps (id, name, suite_path, suite_json, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET updated_at=excluded.updated_at",
                (sweep_id, name, suite_path, _dumps(suite), now, now),
            )
            rows = enumerate(cells)
            while batch := list(itertools.islice(rows, 1000)):  # bounded memory: cells may be a generator
                db.executemany(
                    "INSERT OR IGNORE INTO cells (id, base_id, model, method, benchmark, benchmark_version, seed, "
                    "config_json, plugins_json, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                    [(c["id"], c["base_id"], c["config"]["model"], c["config"]["method"], c["config"]["benchmark"],
                      str(c["config"].get("benchmark_version")), c["config"]["seed"], _dumps(c["config"]),
                      _dumps(c.get("plugins", {})), now) for _, c in batch],
                )
                db.executemany(
                    "INSERT INTO sweep_cells (sweep_id, cell_id, label, position) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(sweep_id, cell_id) DO UPDATE SET label=excluded.label, position=excluded.position",
                    [(sweep_id, c["id"], c["label"], pos) for pos, c in batch],
                )

    def start_run(self, sweep_id: str, executor: str) -> int:
        """A row for this invocation; earlier runs of this host left unfinished by a dead process (kill -9,
        a crash) are ended first, as ``interrupted`` (their ``finished_at``: when that was found)."""
        with self.transaction() as db:
            for row in db.execute("SELECT id, host, pid FROM sweep_runs WHERE finished_at IS NULL").fetchall():
                pid = int(row["pid"] or 0)
                if row["host"] == socket.gethostname() and pid != os.getpid() and \
                        owner_alive(owner_token(pid)) is False:
                    db.execute("UPDATE sweep_runs SET finished_at=?, summary_json=? WHERE id=?",
                               (time.time(), _dumps({"interrupted": True, "found_by": os.getpid()}), row["id"]))
            cur = db.execute("INSERT INTO sweep_runs (sweep_id, started_at, host, pid, executor) VALUES (?, ?, ?, ?, ?)",
                             (sweep_id, time.time(), socket.gethostname(), os.getpid(), executor))
            return int(cur.lastrowid or 0)

    def end_run(self, run_id: int, summary: dict[str, Any]) -> None:
        """End this invocation's row (``summary["interrupted"]``: Ctrl-C or an error ended it early)."""
        with self.transaction() as db:
            db.execute("UPDATE sweep_runs SET finished_at=?, summary_json=? WHERE id=?",
                       (time.time(), _dumps(summary), run_id))

    def claim(self, cell_id: str, owner: str, *, retry_failed: bool = False) -> str:
        """Mark a cell running for ``owner``. Returns 'claimed', or why not: 'done', 'failed', 'busy' (its
        owner is alive), 'lingering' (its owner is gone, its old worker processes are not yet).

        A running cell whose owner is dead (same host: pid and start time; another host: no heartbeat for
        HEARTBEAT_EXPIRY_S) is stale, and taken over once its old worker processes are gone.
        """
        with self.transaction() as db:
            row = db.execute("SELECT status, owner FROM cells WHERE id=?", (cell_id,)).fetchone()
            if row is None:
                raise KeyError(cell_id)
            status = row["status"]
            if status == "done":
                return "done"
            if status == "failed" and not retry_failed:
                return "failed"
            if status == "running" and row["owner"] != owner:
                beat = db.execute("SELECT owner, worker, beat_at FROM heartbeats WHERE cell_id=?",
                                  (cell_id,)).fetchone()
                fresh = beat is not None and time.time() - beat["beat_at"] < HEARTBEAT_EXPIRY_S
                alive = owner_alive(row["owner"])
                if alive or (alive is None and fresh):
                    return "busy"
                if beat is not None:
                    procs = processes_alive(beat["worker"])
                    if procs or (procs is None and fresh):
                        return "lingering"
            now = time.time()
            db.execute("UPDATE cells SET status='running', owner=?, started_at=?, attempts=attempts+1, error=NULL "
                       "WHERE id=?", (owner, now, cell_id))
            db.execute("INSERT OR REPLACE INTO heartbeats (cell_id, owner, worker, beat_at) VALUES (?, ?, NULL, ?)",
                       (cell_id, owner, now))
            return "claimed"

    def set_worker(self, cell_id: str, owner: str, worker: str) -> None:
        """Record the worker process (``host:pid:start``) that runs ``owner``'s cell."""
        with self.transaction() as db:
            db.execute("UPDATE heartbeats SET worker=?, beat_at=? WHERE cell_id=? AND owner=?",
                       (worker, time.time(), cell_id, owner))

    def beat(self, owner: str) -> None:
        """The heartbeat of every cell ``owner`` runs."""
        with self.transaction() as db:
            db.execute("UPDATE heartbeats SET beat_at=? WHERE owner=?", (time.time(), owner))

    def release(self, cell_id: str, owner: str) -> None:
        """Give a running cell back (pending), e.g. on Ctrl-C; only its owner can."""
        with self.transaction() as db:
            cur = db.execute("UPDATE cells SET status='pending', owner=NULL WHERE id=? AND status='running' "
                             "AND owner=?", (cell_id, owner))
            if cur.rowcount:
                db.execute("DELETE FROM heartbeats WHERE cell_id=?", (cell_id,))

    def fail(self, cell_id: str, error: str, *, wall_s: float | None = None,
             timings: dict[str, Any] | None = None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE cells SET status='failed', error=?, finished_at=?, wall_s=?, timings_json=?, owner=NULL "
                       "WHERE id=?", (error, time.time(), wall_s, _dumps(timings or {}), cell_id))
            db.execute("DELETE FROM heartbeats WHERE cell_id=?", (cell_id,))

    def finish(self, cell_id: str, record: dict[str, Any], *, wall_s: float | None = None) -> None:
        """Write a finished cell's metrics, steps, records and status in one transaction."""
        cfg = record.get("config", {})
        versions = {cfg.get("benchmark"): cfg.get("benchmark_version")}
        versions.update({name: version for name, version, *_ in cfg.get("evals", [])})
        with self.transaction() as db:
            for table in ("metrics", "steps", "records", "round_records"):
                db.execute(f"DELETE FROM {table} WHERE cell_id=?", (cell_id,))
            db.executemany(
                "INSERT INTO round_records (cell_id, round, idx, benchmark, record_json) VALUES (?, ?, ?, ?, ?)",
                [(cell_id, int(label), i, str(r.get("benchmark", "")), _dumps(r))
                 for label, recs in (record.get("round_records") or {}).items() for i, r in enumerate(recs)],
            )
            db.executemany(
                "INSERT INTO metrics (cell_id, round, benchmark, benchmark_version, metric, value) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (cell_id, r["round"], bench, str(versions.get(bench)), metric, _finite(v))
                    for r in record.get("rounds", [])
                    for key, v in r["metrics"].items()
                    for bench, _, metric in [key.partition("/")]
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO steps (cell_id, round, step, loss, metrics_json) VALUES (?, ?, ?, ?, ?)",
                [(cell_id, s["round"], s["step"], _finite(s.get("loss")),
                  _dumps({k: v for k, v in s.items() if k not in ("round", "step")}))
                 for s in record.get("steps", [])],
            )
            db.executemany(
                "INSERT INTO records (cell_id, idx, benchmark, record_json) VALUES (?, ?, ?, ?)",
                [(cell_id, i, str(r.get("benchmark", "")), _dumps(r)) for i, r in enumerate(record.get("records", []))],
            )
            db.execute(
                "UPDATE cells SET status='done', error=NULL, owner=NULL, finished_at=?, wall_s=?, timings_json=?, "
                "provenance_json=?, warm_start=? WHERE id=?",
                (time.time(), wall_s, _dumps(record.get("timings", {})), _dumps(record.get("provenance", {})),
                 record.get("warm_start"), cell_id),
            )
            db.execute("DELETE FROM heartbeats WHERE cell_id=?", (cell_id,))

    # -- reading -----------------------------------------------------------------------------------
    def sweeps(self) -> list[dict[str, Any]]:
        """Every sweep, newest first, with its cell counts by status."""
        rows = self.db.execute(
            "SELECT s.id, s.name, s.suite_path, s.created_at, s.updated_at, "
            + ", ".join(f"SUM(c.status='{st}') AS {st}" for st in STATUSES)
            + ", COUNT(c.id) AS cells FROM sweeps s LEFT JOIN sweep_cells sc ON sc.sweep_id=s.id "
            "LEFT JOIN cells c ON c.id=sc.cell_id GROUP BY s.id ORDER BY s.updated_at DESC, s.rowid DESC"
        ).fetchall()
        return [{k: (r[k] or 0) if k in STATUSES else r[k] for k in r.keys()} for r in rows]

    def sweep(self, sweep_id: str | None = None) -> dict[str, Any]:
        """A sweep by id (or unique id prefix); None: the latest one."""
        if sweep_id is None:
            row = self.db.execute("SELECT * FROM sweeps ORDER BY updated_at DESC, rowid DESC LIMIT 1").fetchone()
            if row is None:
                raise HarnessError(f"{self.path}: no sweeps recorded yet; run `harness sweep SUITE` first")
        else:
            rows = self.db.execute("SELECT * FROM sweeps WHERE id=? OR id LIKE ? ORDER BY id",
                                   (sweep_id, sweep_id + "%")).fetchall()
            exact = [r for r in rows if r["id"] == sweep_id]
            if exact:
                row = exact[0]
            elif len(rows) == 1:
                row = rows[0]
            else:
                from harness.core.errors import unknown_name

                known = [r["id"] for r in self.db.execute("SELECT id FROM sweeps")]
                if rows:
                    raise HarnessError(f"--sweep {sweep_id}: ambiguous, matches {', '.join(r['id'] for r in rows)}")
                raise unknown_name("sweep", sweep_id, known, where="--sweep")
        out = dict(row)
        out["suite"] = json.loads(out.pop("suite_json"))
        return out

    def cells(self, sweep_id: str) -> list[dict[str, Any]]:
        """The cells of a sweep, in suite order, with label, status, config and timings."""
        rows = self.db.execute(
            "SELECT c.*, sc.label FROM sweep_cells sc JOIN cells c ON c.id=sc.cell_id WHERE sc.sweep_id=? "
            "ORDER BY sc.position", (sweep_id,)
        ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            for key in ("config_json", "plugins_json", "timings_json", "provenance_json"):
                d[key[: -len("_json")]] = json.loads(d.pop(key) or "null")
            out.append(d)
        return out

    def sweep_statuses(self, sweep_id: str) -> Iterator[str]:
        """The status of each of a sweep's cells, in its order (``position``), read a row at a time."""
        for row in self.db.execute("SELECT c.status FROM sweep_cells sc JOIN cells c ON c.id=sc.cell_id "
                                   "WHERE sc.sweep_id=? ORDER BY sc.position", (sweep_id,)):
            yield row[0]

    def cell_status(self, cell_ids: Iterable[str]) -> dict[str, str]:
        ids = list(cell_ids)
        out: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = f"SELECT id, status FROM cells WHERE id IN ({','.join('?' * len(chunk))})"
            out.update({r["id"]: r["status"] for r in self.db.execute(q, chunk)})
        return out

    def final_metrics(self, sweep_id: str) -> list[dict[str, Any]]:
        """The last round's metrics of every done cell of a sweep (the final evaluation)."""
        rows = self.db.execute(
            """
            SELECT c.id AS cell_id, sc.label, c.model, c.method, c.benchmark AS train_benchmark, c.seed,
                   m.round, m.benchmark, m.benchmark_version, m.metric, m.value
            FROM sweep_cells sc JOIN cells c ON c.id=sc.cell_id
            JOIN metrics m ON m.cell_id=c.id
            WHERE sc.sweep_id=? AND c.status='done'
              AND m.round=(SELECT MAX(round) FROM metrics m2 WHERE m2.cell_id=c.id)
            ORDER BY sc.position, m.benchmark, m.metric
            """,
            (sweep_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    def item_records(self, cell_id: str) -> list[dict[str, Any]]:
        """A cell's per-item records of every evaluated round, earliest round first (the final evaluation's
        from ``records``; each record carries its ``round`` where the run recorded it)."""
        out: list[dict[str, Any]] = []
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='round_records'").fetchone():
            out += [json.loads(r[0]) for r in self.db.execute(
                "SELECT record_json FROM round_records WHERE cell_id=? ORDER BY round, idx", (cell_id,))]
        out += [json.loads(r[0]) for r in self.db.execute(
            "SELECT record_json FROM records WHERE cell_id=? ORDER BY idx", (cell_id,))]
        return out

    def step_losses(self, sweep_id: str) -> list[dict[str, Any]]:
        """Per-step losses of the done cells of a sweep, for training curves."""
        rows = self.db.execute(
            """
            SELECT c.id AS cell_id, sc.label, c.model, c.benchmark AS train_benchmark, c.seed, s.round, s.step, s.loss
            FROM sweep_cells sc JOIN cells c ON c.id=sc.cell_id JOIN steps s ON s.cell_id=c.id
            WHERE sc.sweep_id=? AND c.status='done' ORDER BY sc.position, s.round, s.step
            """,
            (sweep_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    def save_leaderboard_settings(self, sweep_id: str, settings: dict[str, Any]) -> None:
        """Store a sweep's leaderboard settings (its suite's ``[leaderboard]`` table and the benchmarks'
        metric declarations) as of this run; a rerun with a changed table replaces them."""
        with self.transaction() as db:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                       (f"leaderboard:{sweep_id}", _dumps(settings)))

    def leaderboard_settings(self, sweep_id: str) -> dict[str, Any] | None:
        """The settings :meth:`save_leaderboard_settings` stored for a sweep (None: none stored)."""
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (f"leaderboard:{sweep_id}",)).fetchone()
        return json.loads(row["value"]) if row else None

    def runs(self, sweep_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM sweep_runs WHERE sweep_id=? ORDER BY id", (sweep_id,)).fetchall()
        return [{**dict(r), "summary": json.loads(r["summary_json"] or "null")} for r in rows]
