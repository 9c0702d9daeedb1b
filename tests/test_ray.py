"""The Ray executor on a local Ray instance started by the test (skipped when Ray is not installed)."""

from __future__ import annotations

import textwrap

import pytest

from harness.core.plugins import load
from harness.suite.expand import load_suite
from harness.sweeps.store import Store
from harness.sweeps.sweep import run_sweep
from tests.test_sweep import FAULTY, TINY

ray = pytest.importorskip("ray", reason="the ray executor's test needs `pip install 'alignment-harness[ray]'`")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


HANG_TIMEOUT = 5  # seconds: the suite's cell_timeout for the hanging cell, on a warm Ray worker


@pytest.mark.slow
def test_ray_executor_runs_cells_and_isolates_failures(local_ray, tmp_path):
    # Two sweeps into one store on the test's Ray instance. The first (sft, dpo, a raising cell; no timeout)
    # starts the Ray workers: a worker's start-up (importing torch) took over 25 s on a loaded 2-core machine,
    # and a cell's timeout counts from submission. The second is the same suite plus a hanging cell and a
    # short cell_timeout: its three earlier cells are skipped (done or failed), and the hanging cell, on a
    # worker already started, is cancelled after HANG_TIMEOUT seconds instead of the test waiting for 90.
    from harness.sweeps.ray_executor import RayExecutor

    plugin = tmp_path / "faulty.py"
    plugin.write_text(textwrap.dedent(FAULTY))
    host = load([str(plugin)])
    text = TINY.replace("seeds = [0, 1]", "seeds = [0]") + '[methods.raise]\nmethod = "faulty"\nmode = "raise"\n'
    first, second = tmp_path / "ray.toml", tmp_path / "ray-hang.toml"
    first.write_text(text)
    second.write_text(text.replace("seeds = [0]", f"seeds = [0]\ncell_timeout = {HANG_TIMEOUT}")
                      + '[methods.hang]\nmethod = "faulty"\nmode = "hang"\n')
    executor = RayExecutor(num_cpus=1, num_gpus=0)
    assert executor.slots == 2  # 2 CPUs / 1 CPU per cell
    with Store(tmp_path / "h.db") as store:
        suite = load_suite(first, host)
        summary = run_sweep(suite, store, executor, plugins=[str(plugin)], log=print, poll_s=0.2)
        assert summary.done == 2 and summary.failed == 1
        errors = {label: err for _, label, err in summary.failures}
        # one line naming the method, its file and the rule (harness.core.contract)
        assert errors["raise"].startswith("PluginError: method 'faulty' (") and \
            "its objective raised RuntimeError: boom from the faulty method" in errors["raise"]
        cells = {c["label"]: c for c in store.cells(suite.id)}
        assert cells["sft"]["status"] == "done" and cells["dpo"]["status"] == "done"
        assert store.final_metrics(suite.id)

        suite = load_suite(second, host)
        summary = run_sweep(suite, store, executor, plugins=[str(plugin)], log=print, poll_s=0.2)
        assert (summary.done, summary.failed, summary.skipped_done, summary.skipped_failed) == (0, 1, 2, 1)
        assert [label for _, label, _ in summary.failures] == ["hang"]
        assert summary.failures[0][2] == f"timeout: cancelled after the cell timeout of {HANG_TIMEOUT} s"
        cells = {c["label"]: c for c in store.cells(suite.id)}
        assert {label: c["status"] for label, c in cells.items()} == \
            {"sft": "done", "dpo": "done", "raise": "failed", "hang": "failed"}
    assert ray.is_initialized()  # the executor joined the test's Ray instance and left it running


def test_ray_needs_gpus_it_asks_for(local_ray):
    from harness.core.errors import HarnessError
    from harness.sweeps.ray_executor import RayExecutor

    with pytest.raises(HarnessError, match="the Ray cluster has no GPUs"):
        RayExecutor(num_cpus=1, num_gpus=1)
