"""Sweeps end to end through the real CLI: resume, kill -9 and resume, failure isolation, bad edits."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, run_harness

# 2 methods x 1 benchmark x 2 seeds, a few steps: seconds per cell.
TINY = """\
name = "tiny"
models = ["tiny:nano"]
benchmarks = ["didactic-r1"]
seeds = [0, 1]
threads = 1
[train]
steps = 8
batch_size = 4
[benchmark_params.didactic-r1]
n_states = 4
warm_steps = 10
[methods.sft]
[methods.dpo]
beta = 0.1
[leaderboard]
baseline = "sft"
"""

FAULTY = '''\
"""Methods that misbehave on purpose: NaN loss, an exception, a hang, a dying process."""
import os
import time
from dataclasses import dataclass

from harness import hookimpl
from harness.core.params import param
from harness.core.registry import MethodSpec
from harness.training.samplers import offline_demonstrations


@dataclass(frozen=True)
class Params:
    mode: str = param("nan", "nan | raise | hang | die")


def objective(batch, p):
    loss = -batch.logps["demo"]
    if p.mode == "nan":
        return loss * float("nan"), {}
    if p.mode == "raise":
        raise RuntimeError("boom from the faulty method")
    if p.mode == "hang":
        time.sleep(600)
    if p.mode == "die":
        os._exit(3)
    return loss, {}


@hookimpl
def register_methods(register):
    register(MethodSpec(name="faulty", description="misbehaves", paper="-", sampler=offline_demonstrations,
                        objective=objective, params=Params, needs=frozenset({"demonstrations"}),
                        reference="none"))
'''


def sweep_env(root: Path, marker: str | None = None) -> dict[str, str]:
    env = {"HARNESS_CACHE": str(root / "cache"), "HARNESS_RESULTS": str(root / "results"), "HF_HUB_OFFLINE": "1"}
    if marker:
        env["HARNESS_TEST_MARKER"] = marker
    return env


def statuses(db: Path) -> dict[str, str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return dict(con.execute("SELECT id, status FROM cells").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def dump(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def invoke(*args: str, env: dict[str, str] | None = None, monkeypatch=None):
    """The real CLI in this process (no interpreter start-up: imports are paid once per test session).
    Sweeps still run their cells in worker processes. Returns click's Result (output, stderr, exit_code)."""
    from harness.cli.app import cli

    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    return CliRunner().invoke(cli, list(args))


def leaderboard_json(store: Path, sweep: str | None = None) -> dict:
    from harness.cli.app import cli

    args = ["leaderboard", "--store", str(store), "--format", "json", "--all-metrics"]
    result = CliRunner().invoke(cli, args + (["--sweep", sweep] if sweep else []))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """An uninterrupted run of the tiny suite: (folder, suite file, store, its output)."""
    root = tmp_path_factory.mktemp("tiny")
    suite = root / "tiny.toml"
    suite.write_text(TINY)
    store = root / "h.db"
    with pytest.MonkeyPatch.context() as mp:
        res = invoke("sweep", str(suite), "--store", str(store), env=sweep_env(root), monkeypatch=mp)
    assert res.exit_code == 0, res.output
    return root, suite, store, res.output


def test_sweep_runs_records_and_prints(tiny_run):
    root, suite, store, out = tiny_run
    assert set(statuses(store).values()) == {"done"} and len(statuses(store)) == 4
    assert "[1/4] start" in out and "[4/4] done" in out
    assert "4 cells: 4 done, 0 failed, 0 skipped" in out
    assert "cache: warm start 2 hits, 2 misses" in out  # one warm start per seed, shared by sft and dpo
    assert "reference log-probs 0 hits, 2 misses; samples 0 hits, 0 misses" in out  # one dpo cell per seed
    assert "didactic-r1 v1 / expected_reward" in out and "Difference to sft, paired by seed" in out
    con = sqlite3.connect(store)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    n_steps = con.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
    n_records = con.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    prov = json.loads(con.execute("SELECT provenance_json FROM cells LIMIT 1").fetchone()[0])
    run = json.loads(con.execute("SELECT summary_json FROM sweep_runs").fetchone()[0])
    con.close()
    assert n_steps == 4 * 8 and n_records > 0
    assert prov["device"] == "cpu" and "torch" in prov["versions"]
    from harness.cell.run import _code_state

    assert (prov["git_commit"], prov["git_dirty"]) == _code_state()  # the checkout the cells ran from
    assert run["done"] == 4 and run["warm_start"] == {"hit": 2, "miss": 2, "none": 0}
    assert run["cache"]["reflogps"] == {"hits": 0, "misses": 2}
    runs = store.parent / "h.runs"  # the run folders of this store, next to it
    assert runs.is_dir() and len(list(runs.iterdir())) == 4
    for cell in runs.iterdir():  # the worker's progress, the per-round results; the checkpoint is gone
        progress = json.loads((cell / "progress.json").read_text())
        assert progress["phase"] == "eval" and progress["total"] == 8
        assert (cell / "rounds.json").exists() and not (cell / "checkpoint").exists()


def test_rerun_skips_done_cells(tiny_run, monkeypatch):
    root, suite, store, _ = tiny_run
    before = leaderboard_json(store)
    res = invoke("sweep", str(suite), "--store", str(store), env=sweep_env(root), monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    assert "4 cells, 0 to run, 4 already done" in res.output
    assert leaderboard_json(store) == before
    # a second suite sharing cells reuses them: only the new seed runs
    res = invoke("sweep", str(suite), "--store", str(store), "--set", "seeds=[1, 2]", "--set", "name=tiny2",
                 env=sweep_env(root), monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    assert "4 cells, 2 to run, 2 already done" in res.output
    assert len(statuses(store)) == 6
    from harness.cli.app import cli

    listed = CliRunner().invoke(cli, ["sweeps", "--store", str(store)])
    assert "tiny2-" in listed.output and "tiny-" in listed.output
    latest = leaderboard_json(store)
    assert latest["name"] == "tiny2" and latest["rows"][0]["cells"]["didactic-r1/expected_reward"]["n"] == 2
    rep = CliRunner().invoke(cli, ["report", "--store", str(store), "--sweep", before["sweep"],
                                   "--out", str(root / "report")])
    assert rep.exit_code == 0, rep.output
    assert rep.output.strip() == f"report: {root / 'report' / 'report.html'}"
    assert (root / "report" / "report.html").exists() and (root / "report" / "bars_didactic-r1.png").exists()
    for name in ("loss", "rounds", "actions"):
        assert (root / "report" / f"{name}_didactic-r1.png").exists(), name


def test_bad_suite_edit_leaves_store_intact(tiny_run, monkeypatch):
    root, suite, store, _ = tiny_run
    before = dump(store)
    broken = root / "broken.toml"
    broken.write_text(TINY.replace("beta = 0.1", 'beta = "high"'))
    res = invoke("sweep", str(broken), "--store", str(store), env=sweep_env(root), monkeypatch=monkeypatch)
    assert res.exit_code == 2
    assert f"{broken}: methods.dpo.beta: parameter 'beta' expects float, got 'high'" in res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit)  # a one-line error, no traceback
    assert dump(store) == before


def test_keep_checkpoint_keeps_a_done_cells_checkpoint_in_a_sweep(tmp_path, monkeypatch):
    suite = tmp_path / "keep.toml"
    suite.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]").replace("[methods.dpo]\nbeta = 0.1\n", "")
                     .replace('[leaderboard]\nbaseline = "sft"\n', "")
                     .replace("batch_size = 4", "batch_size = 4\nkeep_checkpoint = true"))
    store = tmp_path / "k.db"
    res = invoke("sweep", str(suite), "--store", str(store), env=sweep_env(tmp_path), monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    (cell,) = (tmp_path / "k.runs").iterdir()
    assert (cell / "checkpoint" / "checkpoint.pt").is_file()  # kept: the sweep honours train.keep_checkpoint


def test_dry_run_loads_no_model(tmp_path, monkeypatch):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    res = invoke("sweep", "--dry-run", str(suite), "--store", str(tmp_path / "h.db"), env=sweep_env(tmp_path),
                 monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    assert "4 cells in sweep tiny-" in res.output and "dpo" in res.output and "seed" in res.output
    assert not (tmp_path / "h.db").exists() and not (tmp_path / "cache").exists()


def _marked_pids(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find orphaned workers")
def test_kill_9_and_resume_equals_uninterrupted(tiny_run, tmp_path):
    root, suite, ref_store, out = tiny_run
    reference = leaderboard_json(ref_store, out.split()[1].rstrip(":"))  # "sweep tiny-xxxxxxxx: ..."
    store = tmp_path / "h.db"
    marker = uuid.uuid4().hex
    env = {**os.environ, **sweep_env(root, marker)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "sweep", str(suite), "--store", str(store)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    try:
        while "done" not in (statuses(store).values() if store.exists() else ()):
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("the sweep ended (or hung) before it could be killed")
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    at_kill = statuses(store)
    assert "done" in at_kill.values() and list(at_kill.values()).count("done") < 4, at_kill
    # the workers and the fork server die with the sweep: no process of it is left writing anything
    for _ in range(100):
        if not _marked_pids(marker):
            break
        time.sleep(0.1)
    assert not _marked_pids(marker)
    assert statuses(store) == at_kill
    res = run_harness("sweep", str(suite), "--store", str(store), env=sweep_env(root))
    assert res.returncode == 0, res.stdout + res.stderr
    done = list(at_kill.values()).count("done")
    assert f"4 cells, {4 - done} to run, {done} already done" in res.stderr  # status: stderr
    assert set(statuses(store).values()) == {"done"} and len(statuses(store)) == 4
    con = sqlite3.connect(store)
    assert con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == \
        con.execute("SELECT COUNT(*) FROM (SELECT DISTINCT cell_id, round, benchmark, metric FROM metrics)").fetchone()[0]
    con.close()
    assert leaderboard_json(store) == reference


@pytest.mark.slow
def test_failing_cells_are_isolated(tmp_path):
    plugin = tmp_path / "faulty.py"
    plugin.write_text(textwrap.dedent(FAULTY))
    methods = {"nan": "nan", "raise": "raise", "hang": "hang", "die": "die"}
    text = TINY.replace("seeds = [0, 1]", "seeds = [0]\njobs = 2\ncell_timeout = 10")
    text += "".join(f'[methods.{k}]\nmethod = "faulty"\nmode = "{v}"\n' for k, v in methods.items())
    suite = tmp_path / "faults.toml"
    suite.write_text(text)
    store = tmp_path / "h.db"
    res = run_harness("--plugin", str(plugin), "sweep", str(suite), "--store", str(store), env=sweep_env(tmp_path))
    assert res.returncode == 1, res.stdout + res.stderr
    con = sqlite3.connect(store)
    rows = {label: (status, error) for label, status, error in con.execute(
        "SELECT sc.label, c.status, c.error FROM cells c JOIN sweep_cells sc ON sc.cell_id=c.id")}
    con.close()
    assert rows["sft"][0] == "done" and rows["dpo"][0] == "done"
    assert rows["nan"][0] == "failed" and "method 'faulty'" in rows["nan"][1] and "the loss is nan" in rows["nan"][1]
    assert rows["raise"][0] == "failed" and "its objective raised RuntimeError: boom from the faulty method" in \
        rows["raise"][1] and str(plugin) in rows["raise"][1]
    assert "worker.log)" in res.stderr  # a failed cell's line points to its full log
    assert rows["hang"] == ("failed", "timeout: killed after the cell timeout of 10 s")
    assert rows["die"][0] == "failed" and rows["die"][1].startswith("worker died (exit code 3)")
    assert "2 done, 4 failed" in res.stderr and "FAILED" in res.stderr
    assert "sft" in res.stdout.split("Leaderboard")[1]
    # failed cells are skipped unless asked; --retry-failed reruns them (a suite holding two of them)
    again = tmp_path / "again.toml"
    again.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]") + '[methods.raise]\nmethod = "faulty"\n'
                     'mode = "raise"\n')
    from harness.core.plugins import load
    from harness.suite.expand import load_suite
    from harness.sweeps.executors import Executor
    from harness.sweeps.store import Store
    from harness.sweeps.sweep import run_sweep

    lines: list[str] = []
    with Store(store) as db:  # in-process, with an executor that must not be used
        summary = run_sweep(load_suite(again, load([str(plugin)])), db, Executor(), log=lines.append)
    assert (summary.done, summary.failed, summary.skipped_done, summary.skipped_failed) == (0, 0, 2, 1)
    assert "3 cells, 0 to run, 2 already done, 1 failed earlier (--retry-failed reruns them)" in lines[0]
    res = run_harness("--plugin", str(plugin), "sweep", str(again), "--store", str(store), "--retry-failed",
                      env=sweep_env(tmp_path))
    assert res.returncode == 1 and "3 cells, 1 to run" in res.stderr
    con = sqlite3.connect(store)
    assert con.execute("SELECT attempts FROM cells WHERE error LIKE '%RuntimeError: boom%'").fetchone()[0] == 2
    con.close()


# -- live progress ---------------------------------------------------------------------------------------------


def test_progress_text_shows_round_step_and_eta():
    from harness.sweeps.sweep import progress_text

    status = {"phase": "train", "round": 2, "rounds": 3, "step": 10, "steps": 40, "done": 50, "total": 120,
              "done_here": 50, "train_s": 25.0, "t": 1000.0}
    assert progress_text(status, 30.0, now=1000.0) == "round 2/3  step 10/40  (42%)  ETA 35 s"
    assert progress_text(status, 30.0, now=1010.0).endswith("ETA 25 s")  # a status 10 s old
    assert progress_text({"phase": "eval", "round": 1, "t": 0}, 75.0) == "evaluating round 1 (1 min 15 s)"
    assert progress_text({"phase": "sampling", "round": 2, "rounds": 3, "t": 0}, 5.0) == "round 2/3  sampling (5 s)"
    assert progress_text(None, 3.0) == "starting (3 s)"


def test_progress_text_counts_evaluation_items_from_the_evaluation_start_and_never_says_eta_0_when_stuck():
    from harness.sweeps.sweep import progress_text

    ev = {"phase": "eval", "round": 1, "started": 1000.0, "benchmark": "gsm8k-chat", "items": 2, "items_total": 8,
          "t": 1010.0}
    # the round started long before (elapsed 300 s): the clock is the evaluation's, 12 s
    assert progress_text(ev, 300.0, now=1012.0) == "evaluating round 1  gsm8k-chat 2/8 items (12 s)  ETA 28 s"
    stuck = {"phase": "train", "round": 2, "rounds": 3, "step": 10, "steps": 40, "done": 50, "total": 120,
             "done_here": 50, "train_s": 25.0, "t": 1000.0}
    text = progress_text(stuck, 200.0, now=1100.0)  # expected done 35 s after its last step; 100 s passed
    assert "ETA 0 s" not in text and text.endswith("(no step done for 1 min 40 s)"), text
    text = progress_text({**ev, "t": 1010.0}, 300.0, now=1200.0)
    assert "ETA 0 s" not in text and "no item done for 3 min 10 s" in text, text


def test_live_status_redraws_on_a_tty_and_throttles_elsewhere():
    import io

    from harness.sweeps.sweep import LiveStatus

    out = io.StringIO()
    live = LiveStatus(out, tty=True)
    live.show(["[1/4] sft  a", "[2/4] dpo  b"])
    live.show(["[1/4] sft  c"])
    live.log("[1/4] done")
    live.close()
    text = out.getvalue()
    assert text == ("[1/4] sft  a\n[2/4] dpo  b" + "\r\x1b[K\x1b[1A\x1b[K" + "[1/4] sft  c" + "\r\x1b[K"
                    + "[1/4] done\n")

    clock = [0.0]
    out = io.StringIO()
    live = LiveStatus(out, tty=False, every_s=10, clock=lambda: clock[0])
    for t in range(0, 25):  # polled every second for 25 s
        clock[0] = float(t)
        live.show([f"line at {t}"])
    live.log("done")
    assert out.getvalue() == "line at 10\nline at 20\ndone\n"


@pytest.fixture
def _one_thread():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)  # run_task sets the worker's thread count; this process is pytest's


@pytest.mark.usefixtures("_one_thread")
def test_a_killed_cell_resumes_from_its_last_round(tmp_path, monkeypatch):
    """Workers checkpoint into the cell's folder: a rerun of a cell killed after round 1 of 2 continues
    from there, and ends like an uninterrupted run."""
    import harness.training.trainer as train_mod
    from harness.cell.run import CellConfig, resolve
    from harness.core.plugins import load
    from harness.sweeps.executors import run_task

    cfg = CellConfig(model="tiny:nano", method="dpo", benchmark="didactic-r1", seed=0,
                     benchmark_params={"n_states": 4, "warm_steps": 5}, train={"rounds": 2, "steps": 3, "batch_size": 4})
    cell = resolve(cfg, load(env={"HARNESS_LOAD_PLUGINS": "dpo,didactic,engines"}))
    task = {"id": "x", "base_id": cell.cell_id, "config": cfg.to_dict(), "cell_dir": str(tmp_path / "a"),
            "threads": 1, "cache": str(tmp_path / "cache")}
    straight = run_task(task, log=lambda m: None)
    assert straight["status"] == "done", straight

    original = train_mod.Trainer.train_round

    def killed_in_round_2(self, rnd):
        if rnd == 1:
            raise SystemExit("killed")
        return original(self, rnd)

    monkeypatch.setattr(train_mod.Trainer, "train_round", killed_in_round_2)
    task["cell_dir"] = str(tmp_path / "b")
    assert run_task(task, log=lambda m: None)["status"] == "failed"
    assert (tmp_path / "b" / "checkpoint" / "checkpoint.pt").exists()
    monkeypatch.setattr(train_mod.Trainer, "train_round", original)
    lines: list[str] = []
    resumed = run_task(task, log=lines.append)
    assert resumed["status"] == "done" and any(line.startswith("resumed after round 1") for line in lines)
    assert resumed["record"]["rounds"] == straight["record"]["rounds"]
    assert len(resumed["record"]["steps"]) == 6
