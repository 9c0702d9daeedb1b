"""A real two-node Ray cluster on 127.0.0.1 (``ray start --head`` and ``ray start --address``, each in its own
session and temp dir): a sweep's cells land on both nodes; killing the second node mid-sweep loses the cell it
ran, Ray reschedules it on the head, and the leaderboard equals a one-node (local executor) run's. Every process
the test starts is stopped by its session id (never ``ray stop``, which stops every Ray on the machine)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.core.plugins import load
from harness.suite.expand import load_suite
from harness.sweeps.local_executor import LocalExecutor
from harness.sweeps.store import Store
from harness.sweeps.sweep import run_sweep
from tests.test_sweep import TINY

ray = pytest.importorskip("ray", reason="the two-node Ray test needs `pip install 'alignment-harness[ray]'`")

# 2 cells (sft, seeds 0 and 1) that run at once: cells of one seed share a warm start and would wait for each other.
SUITE = TINY.replace("steps = 8", "steps = 4").replace("[methods.dpo]\nbeta = 0.1\n", "")
RAY = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _session(sid: int) -> list[int]:
    """Pids of the live processes in session ``sid`` (what a ``ray start --block`` started stays in it)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the session a ``ray start`` leads (its raylet, GCS, workers), then reap it."""
    with_pids = _session(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in with_pids:  # a process that left the group but not the session
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(30)


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
           "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as f:
        return subprocess.Popen([*RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                                 "--disable-usage-stats", *args], stdout=f, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)


@pytest.fixture
def cluster(monkeypatch) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    # No token authentication between this test's processes on 127.0.0.1: a token a local Ray instance left in
    # ~/.ray (Ray >= 2.5x) would otherwise have to match what `ray start` uses.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths have a length limit
    port = _free_port()
    procs = []
    try:
        procs.append(_start(["--head", "--port", str(port), "--temp-dir", str(temp), "--include-dashboard=false"],
                            temp / "head.log"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        procs.append(_start(["--address", f"127.0.0.1:{port}", "--resources", '{"second": 1}'], temp / "node2.log"))
        yield f"127.0.0.1:{port}", procs[1]
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)
    for proc in procs:
        assert not _session(proc.pid), "a process of the test's Ray cluster outlived it"


def leaderboard(store: Store, sweep_id: str) -> list[tuple[object, ...]]:
    """What the leaderboard is computed from: every done cell's final metrics."""
    rows = store.final_metrics(sweep_id)
    assert rows
    return sorted((r["label"], r["seed"], r["benchmark"], r["metric"], r["value"]) for r in rows)


@pytest.mark.slow
def test_a_sweep_on_two_ray_nodes_survives_losing_one_and_matches_one_node(cluster, tmp_path):
    from harness.sweeps.ray_executor import RayExecutor

    address, second = cluster
    suite_file = tmp_path / "two.toml"
    suite_file.write_text(SUITE)
    host = load()
    suite = load_suite(suite_file, host)
    deadline = time.monotonic() + 120
    while True:  # the head's port opens before its GCS serves clients
        try:
            executor = RayExecutor(address=address, num_cpus=1)
            break
        except HarnessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    while ray.cluster_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.cluster_resources().get("second") == 1 and ray.cluster_resources()["CPU"] == 2
    executor.slots = 2  # counted before the second node joined

    killed: dict[str, float] = {}

    def kill_second_node() -> None:
        """Once both cells run (one per 1-CPU node) and the second node's worker is busy, kill that node."""
        while time.monotonic() < deadline + 300:
            if len(executor.running()) == 2 and len(_session(second.pid)) > 4:
                time.sleep(3)  # the cell is under way there (importing, loading, training)
                if len(executor.running()) < 2:
                    continue  # one ended meanwhile: not a mid-sweep kill
                _stop(second)  # the cell there is lost mid-run: done == 2 below means Ray ran it again
                killed["at"] = time.monotonic()
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_second_node, daemon=True)
    killer.start()
    with Store(tmp_path / "ray.db") as store:
        summary = run_sweep(suite, store, executor, log=lambda m: None, poll_s=0.2)
        killer.join(5)
        assert killed, "the second node was never killed while both cells ran"
        assert not _session(second.pid)  # the node is gone
        assert summary.done == 2 and summary.failed == 0, summary.failures  # the lost cell ran again on the head
        on_ray = leaderboard(store, suite.id)
    executor.close()
    with Store(tmp_path / "local.db") as store:
        summary = run_sweep(suite, store, LocalExecutor(1), log=lambda m: None, poll_s=0.2)
        assert summary.done == 2
        one_node = leaderboard(store, suite.id)
    assert on_ray == one_node
