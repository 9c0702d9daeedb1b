"""Sweeps that survive anything (issue #15): no orphans after kill -9, heartbeats and stale takeover, one
run folder per store, honest exit codes, every bad value caught before a cell starts with the store
unchanged, read-only commands that never write, grids counted before they are built."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.core.errors import HarnessError
from harness.sweeps.store import Store, owner_token, processes_alive
from tests.conftest import ROOT, run_harness
from tests.test_sweep import FAULTY, TINY, _marked_pids, invoke, leaderboard_json, statuses, sweep_env

# One method, two seeds, few steps: the smallest sweep that still trains.
SMALL = TINY.replace("[methods.dpo]\nbeta = 0.1\n", "").replace("steps = 8", "steps = 3")

# A plugin that, in the sweep process only, forks a helper a moment after start: the helper holds a copy
# of every descriptor the sweep had then, the fork server's "parent alive" pipe included (as any forked
# helper, pool or library thread would), so that pipe never reaches EOF when the sweep dies.
HOLDER = FAULTY + '''

import multiprocessing as _mp
import threading as _th

def _hold():
    time.sleep(1.5)
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    with open(os.environ["HOLDER_PIDFILE"], "w") as f:
        f.write(str(pid))

if _mp.parent_process() is None and os.environ.get("HOLDER_PIDFILE"):
    _th.Thread(target=_hold, daemon=True).start()
'''

HANG = """\
name = "hang"
models = ["tiny:nano"]
benchmarks = ["didactic-r1"]
threads = 1
[train]
steps = 3
batch_size = 4
[benchmark_params.didactic-r1]
n_states = 4
warm_steps = 2
[methods.faulty]
mode = "hang"
"""


def checksum(path: Path) -> str:
    """The bytes of a store file and of its write-ahead log, if any (an empty log is no log)."""
    h = hashlib.sha256()
    for p in (path, path.with_name(path.name + "-wal")):
        h.update(p.read_bytes() if p.exists() else b"")
    return h.hexdigest()


def heartbeat(db: Path) -> dict:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return {r[0]: r[1] for r in con.execute("SELECT cell_id, worker FROM heartbeats")}
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


# -- 1. no orphans, heartbeats --------------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find orphaned workers")
def test_kill_9_leaves_no_process_of_the_sweep_within_5_s(tmp_path):
    plugin = tmp_path / "holder.py"
    plugin.write_text(HOLDER)
    suite = tmp_path / "hang.toml"
    suite.write_text(HANG)
    store = tmp_path / "h.db"
    marker, pidfile = uuid.uuid4().hex, tmp_path / "holder.pid"
    env = {**os.environ, **sweep_env(tmp_path, marker), "HOLDER_PIDFILE": str(pidfile)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "--plugin", str(plugin), "sweep", str(suite),
                             "--store", str(store)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    holder = None
    try:
        deadline = time.time() + 120
        while not (store.exists() and any(heartbeat(store).values()) and pidfile.exists()
                   and pidfile.read_text().strip()):
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("the sweep ended (or hung) before its worker started")
            time.sleep(0.1)
        holder = int(pidfile.read_text())
        worker = next(iter(heartbeat(store).values()))
        assert int(worker.split(":")[1]) in _marked_pids(marker)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.time()

        def left() -> set[int]:
            # multiprocessing's resource tracker only waits for its pipe, which the helper holds too; it
            # writes nothing and exits with the helper. A dying process has no environ left: the worker's
            # process group is checked by its id (zombies, which no init reaps here, count as gone).
            marked = set()
            for p in set(_marked_pids(marker)) - {holder}:
                try:
                    if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes():
                        marked.add(p)
                except OSError:
                    continue
            return marked | ({int(worker.split(":")[1])} if processes_alive(worker) else set())

        while time.time() - killed < 5 and left():
            time.sleep(0.1)
        assert not left(), f"still running 5 s after kill -9 of the sweep: {left()}"
        # the next sweep sees the cell's owner gone and its worker gone: it may take the cell over
        with Store(store) as db:
            assert db.claim(next(iter(heartbeat(store))), owner_token()) == "claimed"
    finally:
        if proc.poll() is None:
            proc.kill()
        if holder:
            os.kill(holder, signal.SIGKILL)


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _dead_token() -> str:
    pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                         text=True).stdout.strip()
    return owner_token(int(pid))


def test_a_stale_cell_is_taken_over_only_when_its_processes_are_gone(tmp_path):
    from tests.test_store import cell_row

    with Store(tmp_path / "h.db") as db:
        db.add_sweep("s", "s", None, {}, [cell_row(x) for x in "abc"])
        me, dead = owner_token(), _dead_token()
        # owner dead, its worker alive: lingering (never two trainings of one cell)
        assert db.claim("a", dead) == "claimed"
        worker = _sleeper()
        try:
            db.set_worker("a", dead, owner_token(worker.pid))
            assert db.claim("a", me) == "lingering"
        finally:
            worker.kill()
            worker.wait()
        assert db.claim("a", me) == "claimed"
        # a live owner is never taken over, even with an old heartbeat
        sleeper = _sleeper()
        try:
            assert db.claim("b", owner_token(sleeper.pid)) == "claimed"
            db.db.execute("UPDATE heartbeats SET beat_at=0 WHERE cell_id='b'")
            assert db.claim("b", me) == "busy"
        finally:
            sleeper.kill()
            sleeper.wait()
        # another host: busy while its heartbeat is fresh, stale once it expired
        assert db.claim("c", "elsewhere.example:12:34") == "claimed"
        assert db.claim("c", me) == "busy"
        db.beat("elsewhere.example:12:34")
        assert db.claim("c", me) == "busy"
        db.db.execute("UPDATE heartbeats SET beat_at=beat_at-3600 WHERE cell_id='c'")
        assert db.claim("c", me) == "claimed"
        db.finish("c", {"rounds": []})
        assert db.db.execute("SELECT COUNT(*) FROM heartbeats WHERE cell_id='c'").fetchone()[0] == 0


# -- 2. one run folder per store ---------------------------------------------------------------------------


@pytest.mark.slow
def test_two_stores_in_one_folder_run_one_suite_concurrently(tmp_path):
    suite = tmp_path / "small.toml"
    suite.write_text(SMALL)
    env = {**os.environ, **sweep_env(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-m", "harness.cli", "sweep", str(suite), "--store",
                               str(tmp_path / f"{name}.db")], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for name in ("a", "b")]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
    for name in ("a", "b"):
        assert set(statuses(tmp_path / f"{name}.db").values()) == {"done"}
        assert len(statuses(tmp_path / f"{name}.db")) == 2
        # each store's cells ran in its own folder, never in the other's
        assert sorted(d.name for d in (tmp_path / f"{name}.runs").iterdir()) == sorted(statuses(tmp_path / "a.db"))
    assert not (tmp_path / "runs").exists()
    a, b = leaderboard_json(tmp_path / "a.db"), leaderboard_json(tmp_path / "b.db")
    assert a["rows"] == b["rows"]


def test_a_folder_lock_keeps_a_second_process_out(tmp_path):
    from harness.sweeps.local_executor import folder_in_use, folder_lock

    lock = folder_lock(tmp_path / "cell")
    assert lock is not None
    code = ("import sys; from harness.sweeps.local_executor import folder_lock, folder_in_use; "
            "print(folder_in_use(sys.argv[1]), folder_lock(sys.argv[1], wait_s=0.3) is None)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cell")], capture_output=True, text=True,
                         cwd=ROOT).stdout.split()
    assert out == ["True", "True"]
    lock.close()
    assert not folder_in_use(tmp_path / "cell")


# -- 3. exit status ------------------------------------------------------------------------------------------


def test_a_rerun_that_skips_failed_cells_is_not_success(tmp_path):
    plugin = tmp_path / "faulty.py"
    plugin.write_text(FAULTY)
    suite = tmp_path / "mixed.toml"
    suite.write_text(HANG.replace('mode = "hang"', 'mode = "raise"') + "[methods.sft]\n")
    store = tmp_path / "h.db"
    args = ["--plugin", str(plugin), "sweep", str(suite), "--store", str(store)]
    first = run_harness(*args, env=sweep_env(tmp_path))  # a subprocess: --plugin loads once per process
    assert first.returncode == 1, first.stdout + first.stderr
    again = run_harness(*args, env=sweep_env(tmp_path))
    assert "0 to run, 1 already done, 1 failed earlier" in again.stderr  # a status line
    assert again.returncode == 1, again.stdout + again.stderr
    # the leaderboard lists the failed cell under its table
    from harness.cli.app import cli

    board = CliRunner().invoke(cli, ["leaderboard", "--store", str(store)])
    assert board.exit_code == 0, board.output
    assert "1 of 2 cells failed" in board.output and "RuntimeError: boom from the faulty method" in board.output


def test_help_lists_the_exit_codes():
    from harness.cli.app import cli

    out = CliRunner().invoke(cli, ["--help"]).output
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130"):
        assert f"\n    {code}" in out, out
    assert "Exit status" in CliRunner().invoke(cli, ["sweep", "--help"]).output


def test_a_full_disk_is_one_line_and_keeps_the_cells_recorded(tmp_path, monkeypatch):
    """The disk is faked (Store.finish raises SQLite's disk-full error on the second cell): a real full disk
    is outside what a test can arrange safely on a shared machine."""
    import harness.sweeps.store

    real = harness.sweeps.store.Store.finish
    calls = []

    def finish(self, cell_id, record, **kw):
        calls.append(cell_id)
        if len(calls) == 2:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, cell_id, record, **kw)

    monkeypatch.setattr(harness.sweeps.store.Store, "finish", finish)
    suite = tmp_path / "small.toml"
    suite.write_text(SMALL)
    res = invoke("sweep", str(suite), "--store", str(tmp_path / "h.db"), env=sweep_env(tmp_path),
                 monkeypatch=monkeypatch)
    assert res.exit_code == 4, res.output
    # Status lines go to stderr too; the error is its one last line, with no traceback before it.
    last = res.stderr.strip().splitlines()[-1]
    assert "database or disk is full" in last and "Traceback" not in res.stderr
    assert sorted(statuses(tmp_path / "h.db").values()) == ["done", "pending"]


# -- 4./5./6. one validation pass before any cell; the store unchanged ------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A store with one sweep recorded (no cell run), and a valid suite next to it."""
    root = tmp_path_factory.mktemp("bad")
    suite = root / "tiny.toml"
    suite.write_text(TINY)
    store = root / "h.db"
    with Store(store) as db:
        db.add_sweep("kept", "kept", None, {}, [])
    return root, suite, store


BAD = [
    (["--set", "train.steps=0"], "train.steps: parameter 'steps' must be >= 1, got 0"),
    (["--set", "train.steps=-3"], "train.steps: parameter 'steps' must be >= 1, got -3"),
    (["--set", "train.batch_size=0"], "train.batch_size: parameter 'batch_size' must be >= 1, got 0"),
    (["--set", "train.rounds=-1"], "train.rounds: parameter 'rounds' must be >= 0, got -1"),
    (["--set", "train.lr=0"], "train.lr: parameter 'lr' must be > 0, got 0.0"),
    (["--set", "methods.dpo.train.lr=-1e-3"], "methods.dpo.train.lr: parameter 'lr' must be > 0, got -0.001"),
    (["--set", "seeds=[0, 99999999999999999]"], "seeds = 99999999999999999: expected a seed from 0 to"),
    (["--set", 'models=["tiny:nano"'], "--set 'models=[\"tiny:nano\"': the value is not valid TOML"),
    (["--set", "seeds=[0,1"], "--set 'seeds=[0,1': the value is not valid TOML"),
    (["--set", "leaderboard.baseline=nope"], "leaderboard.baseline = 'nope': no method label of the suite"),
    (["--set", "methods.dpo.grid.beta=[" + ",".join(str(0.01 * i) for i in range(1, 3001)) + "]",
      "--set", "seeds=[" + ",".join(map(str, range(10))) + "]"], "over the limit of 10,000; shrink the grid, or "
                                                                  "pass --max-cells 30010"),
    (["--jobs", "0"], "--jobs 0: give 1 or more"),
    (["--threads", "0"], "--threads 0: give 1 or more"),
    (["--threads", "-2"], "--threads -2: give 1 or more"),
    (["--cache", "{root}/tiny.toml/cache"], "--cache {root}/tiny.toml/cache: {root}/tiny.toml is a file"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_every_bad_value_is_one_line_exit_2_and_the_store_unchanged(recorded, monkeypatch, args, message):
    root, suite, store = recorded
    args = [a.replace("{root}", str(root)) for a in args]
    before = checksum(store)
    t0 = time.perf_counter()
    res = invoke("sweep", str(suite), "--store", str(store), *args, env=sweep_env(root), monkeypatch=monkeypatch)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message.replace("{root}", str(root)) in lines[0], res.stderr
    assert checksum(store) == before
    assert not (root / "h.runs").exists()
    assert time.perf_counter() - t0 < 30  # a refused grid is counted, never built


def test_dry_run_rejects_what_the_sweep_rejects(recorded, monkeypatch):
    root, suite, store = recorded
    res = invoke("sweep", "--dry-run", str(suite), "--set", 'models=["tiny:nano"', env=sweep_env(root),
                 monkeypatch=monkeypatch)
    assert res.exit_code == 2 and "not valid TOML" in res.stderr
    ok = invoke("sweep", "--dry-run", str(suite), "--set", "train.rounds=0", env=sweep_env(root),
                monkeypatch=monkeypatch)
    assert ok.exit_code == 0, ok.output  # rounds = 0: evaluate only


def test_the_baseline_error_names_the_suite_file(recorded, monkeypatch):
    root, _, store = recorded
    suite = root / "badbase.toml"
    suite.write_text(TINY.replace('baseline = "sft"', 'baseline = "spft"'))
    before = checksum(store)
    res = invoke("sweep", str(suite), "--store", str(store), env=sweep_env(root), monkeypatch=monkeypatch)
    assert res.exit_code == 2
    assert f"{suite}: leaderboard.baseline = 'spft': no method label of the suite is 'spft' (did you mean " \
           f"'sft'?)" in res.stderr and "--baseline" not in res.stderr
    assert checksum(store) == before


def test_unusable_store_and_non_utf8_suite(recorded, monkeypatch):
    root, suite, store = recorded
    res = invoke("sweep", str(suite), "--store", str(suite / "h.db"), env=sweep_env(root), monkeypatch=monkeypatch)
    assert res.exit_code == 2 and f"--store {suite / 'h.db'}: {suite} is a file" in res.stderr
    latin = root / "latin.toml"
    latin.write_bytes(TINY.encode().replace(b'name = "tiny"', b'name = "tiny"\ndescription = "caf\xe9"'))
    before = checksum(store)
    res = invoke("sweep", str(latin), "--store", str(store), env=sweep_env(root), monkeypatch=monkeypatch)
    offset = latin.read_bytes().index(b"\xe9")
    assert res.exit_code == 2 and res.exception is None or isinstance(res.exception, SystemExit)
    assert res.stderr.strip() == f"Error: {latin}:2: not UTF-8 text (byte offset {offset}: b'\\xe9'); save the " \
                                 f"file as UTF-8"
    assert checksum(store) == before


def test_count_cells_matches_the_expansion():
    from harness.core.plugins import get_host
    from harness.suite.checks import count_cells
    from harness.suite.expand import expand

    data = {"models": ["tiny:nano"], "benchmarks": ["didactic-r1"], "seeds": [0, 1, 2],
            "methods": {"sft": {}, "dpo": {"grid": {"beta": [0.1, 0.2], "train": {"lr": [1e-3, 1e-4]}}}},
            "include": [{"method": "sft", "seed": 7}]}
    assert count_cells(data) == 3 * (1 + 4) + 1 == len(expand(data, get_host()).cells)


def test_data_files_are_utf8_and_gsm8k_rows_typed(tmp_path):
    from harness.core.data import read_jsonl

    bad = tmp_path / "train.jsonl"
    bad.write_bytes(b'{"question": "q", "answer": "a"}\n{"question": "caf\xe9", "answer": "a"}\n')
    with pytest.raises(HarnessError) as e:
        list(read_jsonl(bad, required=("question",)))
    offset = bad.read_bytes().index(b"\xe9")
    assert str(e.value.message) == f"{bad}:2: not UTF-8 text (byte offset {offset}); save the file as UTF-8"
    from alignment_harness_plugins.benchmarks import gsm8k

    for value, shown in (("null", "null"), ("42", "42")):
        rows = tmp_path / f"rows-{shown}.jsonl"
        rows.write_text('{"question": "q", "answer": "#### 1"}\n' + f'{{"question": {value}, "answer": "#### 2"}}\n')
        with pytest.raises(HarnessError) as e:
            gsm8k.load_split(gsm8k.GSM8KParams(path=str(rows)), "test")
        assert f"{rows}:2: field question is {shown}, expected str" in str(e.value.message)


# -- 5. read-only commands ---------------------------------------------------------------------------------


def test_read_only_commands_never_write(tmp_path):
    from harness.cli.app import cli

    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE notes (x)")
    con.commit()
    con.close()
    before = checksum(other)
    for cmd in (["leaderboard"], ["sweeps"], ["report", "--out", str(tmp_path / "r")]):
        res = CliRunner().invoke(cli, [*cmd, "--store", str(other)])
        assert res.exit_code == 2, res.output
        assert "not a harness results database" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert checksum(other) == before
    con = sqlite3.connect(other)
    assert con.execute("SELECT name FROM sqlite_master").fetchall() == [("notes",)]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    con.close()
    # a sweep refuses to turn it into a store too
    with pytest.raises(HarnessError, match="other tables"):
        Store(other)
    assert checksum(other) == before


def test_a_damaged_store_warns_in_one_line(tmp_path):
    from tests.test_store import cell_row

    path = tmp_path / "h.db"
    with Store(path) as db:
        db.add_sweep("s", "s", None, {"pad": "x" * 5000}, [cell_row(f"c{i}") for i in range(2000)])
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\xff" * 3000)
    with Store(path, readonly=True) as db:
        assert len(db.warnings) == 1 and "quick_check reports damage" in db.warnings[0]
        assert "\n" not in db.warnings[0]
    from harness.cli.app import cli

    res = CliRunner().invoke(cli, ["sweeps", "--store", str(path)])
    assert res.exit_code in (0, 4), res.output
    assert res.stderr.startswith("warning: --store") and "Traceback" not in res.output


def test_leaderboard_reads_a_store_in_a_read_only_folder(tmp_path):
    from harness.cli.app import cli
    from tests.test_store import cell_row

    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "h.db"
    with Store(path) as db:
        db.add_sweep("s", "s", None, {}, [cell_row("a")])
    before = checksum(path)
    folder.chmod(0o555)
    try:
        res = CliRunner().invoke(cli, ["sweeps", "--store", str(path)])
        assert res.exit_code == 0, res.output
        assert "s " in res.output
    finally:
        folder.chmod(0o755)
    assert checksum(path) == before
    assert json.loads(json.dumps(sorted(os.listdir(folder))))[0] == "h.db"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find leftover workers")
def test_ctrl_c_gives_the_cell_back_and_exits_130(tmp_path):
    plugin = tmp_path / "faulty.py"
    plugin.write_text(FAULTY)
    suite = tmp_path / "hang.toml"
    suite.write_text(HANG)
    store = tmp_path / "h.db"
    marker = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "--plugin", str(plugin), "--results",
                             str(tmp_path / "results"), "sweep", str(suite), "--store", str(store),
                             "--set", "train.steps=3"], env={**os.environ, **sweep_env(tmp_path, marker)}, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # Ctrl-C as at a terminal, even when pytest itself runs in the background (nohup,
                            # `&`: SIGINT ignored, and an ignored signal stays ignored in every child)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (store.exists() and any(heartbeat(store).values())):
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("the sweep ended (or hung) before its worker started")
            time.sleep(0.1)
        worker = next(iter(heartbeat(store).values()))
        time.sleep(1.5)  # the worker is into its cell (a worker killed there left a semaphore behind)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole foreground process group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert "interrupted: running cells were given back" in err and "Traceback" not in err
    hint = next(line for line in err.splitlines() if "interrupted:" in line)
    # the suggested command resumes THIS sweep: same store, results folder, plugin and overrides
    assert f"--store {store}" in hint and "--set train.steps=3" in hint and f"--results {tmp_path / 'results'}" in hint
    assert f"--plugin {plugin}" in hint, hint
    assert "leaked semaphore" not in err and "resource_tracker" not in err, err
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    finished, summary = con.execute("SELECT finished_at, summary_json FROM sweep_runs").fetchone()
    con.close()
    assert finished is not None and json.loads(summary)["interrupted"] is True
    assert list(statuses(store).values()) == ["pending"] and heartbeat(store) == {}
    for _ in range(50):
        if not processes_alive(worker):
            break
        time.sleep(0.1)
    assert not processes_alive(worker)


class _RecordingExecutor:
    """Stands in for the worker pool in scheduling tests (no cell is trained): records submissions and
    reports each submitted cell as failed at the next poll."""

    name = "recording"

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self._running: list[str] = []

    def capacity(self) -> int:
        return 1 - len(self._running)

    def submit(self, task) -> None:
        self.submitted.append(task.id)
        self._running.append(task.id)

    def poll(self, timeout: float):
        time.sleep(min(timeout, 0.05))
        out = [(cid, {"status": "failed", "error": "not run (test)", "wall_s": 0.0}) for cid in self._running]
        self._running = []
        return out

    def running(self):
        return list(self._running)

    def close(self) -> None:
        self._running = []


def test_a_cell_of_a_live_sweep_is_skipped_and_the_exit_is_3(tmp_path):
    from harness.core.plugins import get_host
    from harness.suite.expand import load_suite
    from harness.sweeps.sweep import run_sweep

    suite_file = tmp_path / "small.toml"
    suite_file.write_text(SMALL)
    suite = load_suite(suite_file, get_host())
    other = _sleeper()
    try:
        with Store(tmp_path / "h.db") as db:
            db.add_sweep(suite.id, suite.name, None, suite.data, [c.row() for c in suite.cells])
            busy = suite.cells[0].id
            assert db.claim(busy, owner_token(other.pid)) == "claimed"
            ex = _RecordingExecutor()
            summary = run_sweep(suite, db, ex, log=lambda _: None, poll_s=0.05)
            assert busy not in ex.submitted and summary.busy == 1
            assert summary.exit_code() == 1  # the other cell "failed" in the recording executor
            db.db.execute("UPDATE cells SET status='done' WHERE id<>?", (busy,))
            summary = run_sweep(suite, db, _RecordingExecutor(), log=lambda _: None, poll_s=0.05)
            assert (summary.busy, summary.skipped_done, summary.exit_code()) == (1, 1, 3)
    finally:
        other.kill()
        other.wait()


def test_the_later_of_two_sweeps_exits_0_when_the_other_finished_the_cells_it_skipped(tmp_path):
    from harness.core.plugins import get_host
    from harness.suite.expand import load_suite
    from harness.sweeps.sweep import run_sweep

    suite_file = tmp_path / "small.toml"
    suite_file.write_text(SMALL)
    suite = load_suite(suite_file, get_host())
    other = _sleeper()
    try:
        with Store(tmp_path / "h.db") as db:
            db.add_sweep(suite.id, suite.name, None, suite.data, [c.row() for c in suite.cells])
            busy = suite.cells[0].id
            assert db.claim(busy, owner_token(other.pid)) == "claimed"

            class OtherSweepFinishes(_RecordingExecutor):  # ours "fails" nothing: its cell is done, and so
                def poll(self, timeout):                    # is the cell the other sweep ran meanwhile
                    time.sleep(min(timeout, 0.05))
                    db.db.execute("UPDATE cells SET status='done', owner=NULL WHERE id=?", (busy,))
                    out = [(cid, {"status": "done", "record": _done_record(cid), "wall_s": 0.0})
                           for cid in self._running]
                    self._running = []
                    return out

            summary = run_sweep(suite, db, OtherSweepFinishes(), log=lambda _: None, poll_s=0.05)
            assert summary.busy == 1 and summary.done == len(suite.cells) - 1
            assert summary.exit_code() == 0, summary.lines()
    finally:
        other.kill()
        other.wait()


def _done_record(cid: str) -> dict:
    return {"cell_id": cid, "config": {}, "status": "done", "rounds": [{"round": 0, "metrics": {"b/m": 1.0}}],
            "final": {"b/m": 1.0}, "steps": [], "records": [], "timings": {}, "warm_start": "none", "cache": {},
            "provenance": {}}


def test_a_sweep_killed_with_kill_9_is_marked_interrupted_by_the_next(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Store(tmp_path / "h.db") as db:
        db.add_sweep("s", "s", None, {}, [])
        db.db.execute("INSERT INTO sweep_runs (sweep_id, started_at, host, pid, executor) VALUES ('s', 1, ?, ?, "
                      "'local')", (__import__("socket").gethostname(), dead.pid))
        db.start_run("s", "local")
        rows = db.db.execute("SELECT pid, finished_at, summary_json FROM sweep_runs ORDER BY id").fetchall()
    assert rows[0][1] is not None and json.loads(rows[0][2])["interrupted"] is True
    assert rows[1][1] is None  # this run is running


def test_a_lingering_cell_is_waited_for_then_taken_over(tmp_path):
    import threading

    from harness.core.plugins import get_host
    from harness.suite.expand import load_suite
    from harness.sweeps.sweep import run_sweep

    suite_file = tmp_path / "small.toml"
    suite_file.write_text(SMALL.replace("seeds = [0, 1]", "seeds = [0]"))
    suite = load_suite(suite_file, get_host())
    cid, dead = suite.cells[0].id, _dead_token()
    worker = _sleeper()
    with Store(tmp_path / "h.db") as db:
        db.add_sweep(suite.id, suite.name, None, suite.data, [c.row() for c in suite.cells])
        assert db.claim(cid, dead) == "claimed"
        db.set_worker(cid, dead, owner_token(worker.pid))
        threading.Timer(1.0, worker.kill).start()
        lines: list[str] = []
        ex = _RecordingExecutor()
        t0 = time.monotonic()
        run_sweep(suite, db, ex, log=lines.append, poll_s=0.1, linger_s=30)
        worker.wait()
        assert ex.submitted == [cid] and 0.9 < time.monotonic() - t0 < 30
        assert any("wait" in line and "not gone yet" in line for line in lines)


def test_a_sweep_runs_phase_by_phase(tmp_path):
    """``SweepRun``'s phases, one at a time (no cell is trained): register records the cells and what is left,
    claim starts no more cells than the executor has room for, record writes each outcome, summarise ends
    the run's row."""
    from harness.core.plugins import get_host
    from harness.suite.expand import load_suite
    from harness.sweeps.sweep import SweepRun

    suite_file = tmp_path / "small.toml"
    suite_file.write_text(SMALL)
    suite = load_suite(suite_file, get_host())
    assert suite.n_cells == 2
    lines: list[str] = []
    with Store(tmp_path / "h.db") as db:
        ex = _RecordingExecutor()
        run = SweepRun(suite, db, ex, log=lines.append, poll_s=0.05)
        run.register()
        assert list(db.sweep_statuses(suite.id)) == ["pending", "pending"] and run.n_todo == 2
        run.claim()
        assert len(ex.submitted) == 1 and list(db.sweep_statuses(suite.id)) == ["running", "pending"]
        assert lines[-1].startswith("[1/2] start  " + ex.submitted[0])
        run.record()
        assert list(db.sweep_statuses(suite.id)) == ["failed", "pending"] and run.summary.failed == 1
        run.claim()
        run.record()
        summary = run.summarise()
        assert ex.submitted == [c.id for c in suite.cells] and (summary.failed, summary.exit_code()) == (2, 1)
        assert db.runs(suite.id)[-1]["summary"]["failed"] == 2 and db.runs(suite.id)[-1]["finished_at"]
