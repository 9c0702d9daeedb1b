"""Reused workers (issue 17: a GPU worker keeps CUDA's set-up across cells): cell after cell in one process,
results identical to one process per cell, a crashing cell fails alone, a killed sweep leaves nothing.

On the CPU, by contract: what a reused worker keeps (CUDA context, cuBLAS, graphs) is measured only on a GPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from harness.sweeps.executors import reuse_by_default
from harness.sweeps.store import Store, owner_token, processes_alive
from harness.sweeps.sweep import runs_dir
from tests.conftest import ROOT, run_harness
from tests.test_sweep import FAULTY, TINY, _marked_pids, invoke, leaderboard_json, statuses, sweep_env
from tests.test_sweep_robust import HANG, heartbeat

# 2 methods x 2 seeds, 3 steps; cache off, so every cell computes its warm start and reference itself.
SMALL = TINY.replace("steps = 8", "steps = 3").replace("warm_steps = 10", "warm_steps = 3")

CRASHY = FAULTY.replace('''    if p.mode == "die":
        os._exit(3)''', '''    if p.mode == "die":
        os._exit(3)
    if p.mode == "segv":
        import ctypes
        ctypes.string_at(0)''')


def outcomes(store: Path) -> dict[str, dict]:
    """Each cell's outcome.json (its worker, its record) by cell id."""
    return {d.name: json.loads((d / "outcome.json").read_text()) for d in runs_dir(store).iterdir()
            if (d / "outcome.json").is_file()}


def comparable(record: dict) -> dict:
    """What a cell computed: every step's metrics (timings dropped), every round's metrics, its records."""
    steps = [{k: v for k, v in s.items() if k != "step_s"} for s in record["steps"]]
    return {"steps": steps, "rounds": record["rounds"], "records": record["records"]}


def sweep(tmp_path: Path, name: str, text: str, *args: str, monkeypatch) -> tuple[Path, object]:
    suite = tmp_path / f"{name}.toml"
    suite.write_text(text)
    store = tmp_path / f"{name}.db"
    res = invoke("sweep", str(suite), "--store", str(store), "--cache", "off", *args, env=sweep_env(tmp_path),
                 monkeypatch=monkeypatch)
    return store, res


def test_reused_workers_give_the_same_results_to_the_last_digit_in_one_process(tmp_path, monkeypatch):
    fresh, res = sweep(tmp_path, "fresh", SMALL, "--no-reuse-workers", monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    assert "workers reused" not in res.output
    reused, res = sweep(tmp_path, "reused", SMALL, "--reuse-workers", monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    assert "workers reused across cells" in res.output
    a, b = outcomes(fresh), outcomes(reused)
    assert set(a) == set(b) and len(a) == 4
    # one process per cell without reuse; with it, all four cells ran in ONE process, one after another
    assert len({o["worker"]["pid"] for o in a.values()}) == 4 and {o["worker"]["cell"] for o in a.values()} == {1}
    assert len({o["worker"]["pid"] for o in b.values()}) == 1
    assert sorted(o["worker"]["cell"] for o in b.values()) == [1, 2, 3, 4]
    assert all(o["worker"]["models_alive"] == 0 for o in b.values()), [o["worker"] for o in b.values()]
    for cid in a:  # nothing of one cell (weights, optimiser, RNG) leaks into the next
        assert comparable(b[cid]["record"]) == comparable(a[cid]["record"]), cid
    assert leaderboard_json(reused) == leaderboard_json(fresh)


@pytest.mark.slow
def test_a_crashing_cell_fails_alone_and_the_next_cell_gets_a_fresh_worker(tmp_path):
    plugin = tmp_path / "crashy.py"
    plugin.write_text(textwrap.dedent(CRASHY))
    text = SMALL.replace("seeds = [0, 1]", "seeds = [0]\ncell_timeout = 10")
    # sft, then a cell that exits, one that segfaults, one that raises, one that hangs, then dpo
    text = text.replace("[methods.dpo]\nbeta = 0.1\n", "".join(
        f'[methods.{m}]\nmethod = "faulty"\nmode = "{m}"\n' for m in ("die", "segv", "raise", "hang"))
        + "[methods.dpo]\nbeta = 0.1\n")
    suite = tmp_path / "crashy.toml"
    suite.write_text(text)
    store = tmp_path / "c.db"
    res = run_harness("--plugin", str(plugin), "sweep", str(suite), "--store", str(store), "--cache", "off",
                      "--reuse-workers", env=sweep_env(tmp_path))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "2 done, 4 failed" in res.stderr
    import sqlite3

    con = sqlite3.connect(store)
    rows = {label: (cid, status, error) for cid, label, status, error in con.execute(
        "SELECT c.id, sc.label, c.status, c.error FROM cells c JOIN sweep_cells sc ON sc.cell_id=c.id")}
    order = [r[0] for r in con.execute("SELECT sc.label FROM sweep_cells sc ORDER BY sc.rowid")]
    con.close()
    assert order == ["sft", "die", "segv", "raise", "hang", "dpo"], order
    assert rows["sft"][1] == "done" and rows["dpo"][1] == "done"
    assert rows["die"][1] == "failed" and rows["die"][2].startswith("worker died (exit code 3)")
    assert rows["segv"][1] == "failed" and rows["segv"][2].startswith("worker died (signal 11 (SIGSEGV))")
    assert rows["raise"][1] == "failed" and "boom from the faulty method" in rows["raise"][2]
    assert rows["hang"][1:] == ("failed", "timeout: killed after the cell timeout of 10 s")
    out = outcomes(store)
    # sft started the first worker; the dying cell ran second in it; every cell after a failure: a fresh one
    assert out[rows["sft"][0]]["worker"]["cell"] == 1
    assert out[rows["raise"][0]]["worker"]["cell"] == 1
    assert out[rows["dpo"][0]]["worker"]["cell"] == 1
    assert out[rows["dpo"][0]]["worker"]["pid"] != out[rows["sft"][0]]["worker"]["pid"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find orphaned workers")
def test_kill_9_of_a_sweep_with_reused_workers_leaves_no_process_within_5_s(tmp_path):
    suite = tmp_path / "hang.toml"
    # a done cell first (its worker is then reused), then one that hangs
    suite.write_text(HANG.replace("[methods.faulty]", "[methods.sft]\n[methods.faulty]"))
    plugin = tmp_path / "faulty.py"
    plugin.write_text(textwrap.dedent(FAULTY))
    store = tmp_path / "h.db"
    marker = uuid.uuid4().hex
    env = {**os.environ, **sweep_env(tmp_path, marker)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "--plugin", str(plugin), "sweep", str(suite),
                             "--store", str(store), "--reuse-workers"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (store.exists() and "done" in statuses(store).values() and any(heartbeat(store).values())):
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("the sweep ended (or hung) before its second cell started")
            time.sleep(0.1)
        worker = next(iter(heartbeat(store).values()))
        done = next(o for o in outcomes(store).values() if o["status"] == "done")
        assert int(worker.split(":")[1]) == done["worker"]["pid"]  # the hanging cell runs in the reused worker
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.time()

        def left() -> set[int]:
            marked = set()
            for p in _marked_pids(marker):
                try:
                    if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes():
                        marked.add(p)
                except OSError:
                    continue
            return marked | ({int(worker.split(":")[1])} if processes_alive(worker) else set())

        while time.time() - killed < 5 and left():
            time.sleep(0.1)
        assert not left(), f"still running 5 s after kill -9 of the sweep: {left()}"
        # the next sweep may take the cell over (resume), and keeps the one done before the kill
        with Store(store) as db:
            assert db.claim(next(iter(heartbeat(store))), owner_token()) == "claimed"
        assert "done" in statuses(store).values()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_workers_are_reused_by_default_only_on_cuda(monkeypatch):
    import torch

    assert reuse_by_default({"cuda"}) and reuse_by_default({"cpu", "cuda:1"})
    assert not reuse_by_default({"cpu"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not reuse_by_default({"auto"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert reuse_by_default({"auto"})


def test_sweep_help_lists_reuse_workers():
    from click.testing import CliRunner

    from harness.cli.app import cli

    out = CliRunner().invoke(cli, ["sweep", "--help"]).output
    assert "--reuse-workers / --no-reuse-workers" in out and "on when the" in out


def test_the_worker_bench_runs_and_reports_the_same_losses(tmp_path, capsys):
    from harness.bench.workers import main

    out = main(["--seeds", "2", "--steps", "1", "--repeats", "1", "--json", str(tmp_path / "w.json")])
    assert out["same_losses"] and out["reused_in_one_process"] and out["cells"] == 2
    saved = json.loads((tmp_path / "w.json").read_text())
    assert saved["reused"]["per_repeat"][0][0] > 0 and "first cell" in capsys.readouterr().out
