"""The SQLite results store: schema, WAL, claims and stale owners, one-transaction results."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from harness.core.errors import HarnessError
from harness.sweeps.store import Store, owner_alive, owner_token


def cell_row(cid: str, seed: int = 0, label: str = "dpo", method: str = "dpo") -> dict:
    config = {"model": "tiny:nano", "method": method, "benchmark": "b", "benchmark_version": "1", "seed": seed,
              "evals": [["b", "1", {}], ["extra", "2", {}]]}
    return {"id": cid, "base_id": "base-" + cid, "config": config, "plugins": {"p": "1.0"}, "label": label}


def record(value: float, steps: int = 3) -> dict:
    return {
        "config": {"benchmark": "b", "benchmark_version": "1", "evals": [["b", "1", {}], ["extra", "2", {}]]},
        "rounds": [{"round": 0, "metrics": {"b/score": 0.0, "extra/acc": 0.5}},
                   {"round": 1, "metrics": {"b/score": value, "extra/acc": float("nan")}}],
        "steps": [{"round": 0, "step": i, "loss": 1.0 / (i + 1), "lr": 0.1} for i in range(steps)],
        "records": [{"benchmark": "b", "item": i} for i in range(4)],
        "timings": {"total_s": 1.0},
        "warm_start": "hit",
        "provenance": {"git_commit": "abc", "device": "cpu"},
    }


def test_schema_wal_and_roundtrip(tmp_path):
    path = tmp_path / "sub" / "h.db"
    with Store(path) as store:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.add_sweep("s1", "s", "suites/s.toml", {"name": "s"}, [cell_row("a"), cell_row("b", seed=1)])
        store.add_sweep("s1", "s", "suites/s.toml", {"name": "s"}, [cell_row("a"), cell_row("b", seed=1)])
        assert [c["id"] for c in store.cells("s1")] == ["a", "b"]
        assert store.cell_status(["a", "b"]) == {"a": "pending", "b": "pending"}
        owner = owner_token()
        assert store.claim("a", owner) == "claimed"
        store.finish("a", record(0.7), wall_s=2.0)
        cells = {c["id"]: c for c in store.cells("s1")}
        assert cells["a"]["status"] == "done" and cells["a"]["warm_start"] == "hit"
        assert cells["a"]["provenance"]["git_commit"] == "abc" and cells["a"]["attempts"] == 1
        final = store.final_metrics("s1")
        assert {(m["benchmark"], m["benchmark_version"], m["metric"], m["round"]): m["value"] for m in final} == {
            ("b", "1", "score", 1): 0.7, ("extra", "2", "acc", 1): None}  # NaN is stored as NULL
        assert len(store.step_losses("s1")) == 3
        assert store.db.execute("SELECT COUNT(*) FROM records WHERE cell_id='a'").fetchone()[0] == 4
        # finishing again replaces, never duplicates
        store.finish("a", record(0.8, steps=2))
        assert store.db.execute("SELECT COUNT(*) FROM steps WHERE cell_id='a'").fetchone()[0] == 2
        assert store.db.execute("SELECT COUNT(*) FROM metrics WHERE cell_id='a'").fetchone()[0] == 4
    # reopen: still there
    with Store(path, create=False) as store:
        assert store.sweep()["id"] == "s1" and store.sweep("s")["id"] == "s1"
        assert store.sweep()["suite"] == {"name": "s"}


def test_a_cell_in_two_sweeps_is_reused(tmp_path):
    with Store(tmp_path / "h.db") as store:
        store.add_sweep("s1", "s", None, {}, [cell_row("a")])
        store.claim("a", owner_token())
        store.finish("a", record(0.5))
        store.add_sweep("s2", "other", None, {}, [cell_row("a", label="dpo-again"), cell_row("c")])
        assert store.cell_status(["a", "c"]) == {"a": "done", "c": "pending"}
        assert {c["id"]: c["label"] for c in store.cells("s2")} == {"a": "dpo-again", "c": "dpo"}
        assert store.db.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 2
        assert store.sweep()["id"] == "s2"  # the latest
        rows = {s["id"]: s for s in store.sweeps()}
        assert rows["s2"]["done"] == 1 and rows["s2"]["pending"] == 1 and rows["s1"]["cells"] == 1


def test_claims_done_failed_busy_and_stale(tmp_path):
    with Store(tmp_path / "h.db") as store:
        store.add_sweep("s", "s", None, {}, [cell_row(x) for x in "abcd"])
        me = owner_token()
        assert store.claim("a", me) == "claimed"
        store.finish("a", record(1.0))
        assert store.claim("a", me) == "done"
        assert store.claim("b", me) == "claimed"
        store.fail("b", "RuntimeError: boom")
        assert store.claim("b", me) == "failed"
        assert store.claim("b", me, retry_failed=True) == "claimed"
        assert store.cells("s")[1]["attempts"] == 2
        # a cell running in a live process is busy; one whose owner died is stale and taken over
        parent = owner_token(os.getppid())
        assert store.claim("c", parent) == "claimed"
        assert store.claim("c", me) == "busy"
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
        gone = owner_token(int(dead))
        assert owner_alive(gone) is False
        assert store.claim("d", f"{gone}") == "claimed"
        assert store.claim("d", me) == "claimed"
        # release gives a running cell back; only its owner can
        store.release("d", parent)
        assert store.cell_status(["d"]) == {"d": "running"}
        store.release("d", me)
        assert store.cell_status(["d"]) == {"d": "pending"}
    assert owner_alive(owner_token()) is True
    assert owner_alive("elsewhere.example:1:2") is None
    assert owner_alive(None) is False


def test_results_are_one_transaction(tmp_path):
    with Store(tmp_path / "h.db") as store:
        store.add_sweep("s", "s", None, {}, [cell_row("a")])
        store.claim("a", owner_token())
        bad = record(0.5)
        bad["records"] = [{"benchmark": "b"}, None]  # not a dict: fails half way through the inserts
        with pytest.raises(AttributeError):
            store.finish("a", bad)
        assert store.cell_status(["a"]) == {"a": "running"}
        for table in ("metrics", "steps", "records"):
            assert store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0


def test_bad_store_paths(tmp_path):
    with pytest.raises(HarnessError, match="no such results database"):
        Store(tmp_path / "missing.db", create=False)
    junk = tmp_path / "junk.db"
    junk.write_text("this is not sqlite " * 100)
    with pytest.raises(HarnessError, match="not a harness results database"):
        Store(junk)
    with Store(tmp_path / "h.db") as store:
        with pytest.raises(HarnessError, match="no sweeps recorded yet"):
            store.sweep()
        store.add_sweep("quick-1", "q", None, {}, [])
        store.add_sweep("quick-2", "q", None, {}, [])
        with pytest.raises(HarnessError, match="ambiguous"):
            store.sweep("quick")
        with pytest.raises(HarnessError, match="unknown sweep 'slow'"):
            store.sweep("slow")
    other = sqlite3.connect(tmp_path / "h.db")
    other.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    other.commit()
    other.close()
    with pytest.raises(HarnessError, match="schema version 99"):
        Store(tmp_path / "h.db")
