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


@pytest.mark.slow
def test_ray_executor_runs_cells_and_isolates_failures(local_ray, tmp_path):
    # The timeout counts from submission and includes a Ray worker's start-up (importing torch), which
    # on a loaded 2-core machine took over 25 s; the hanging cell therefore costs the whole 90 s.
    from harness.sweeps.ray_executor import RayExecutor

    plugin = tmp_path / "faulty.py"
    plugin.write_text(textwrap.dedent(FAULTY))
    text = TINY.replace("seeds = [0, 1]", "seeds = [0]\ncell_timeout = 90")
    text += '[methods.raise]\nmethod = "faulty"\nmode = "raise"\n[methods.hang]\nmethod = "faulty"\nmode = "hang"\n'
    suite_file = tmp_path / "ray.toml"
    suite_file.write_text(text)
    host = load([str(plugin)])
    suite = load_suite(suite_file, host)
    executor = RayExecutor(num_cpus=1, num_gpus=0)
    assert executor.slots == 2  # 2 CPUs / 1 CPU per cell
    with Store(tmp_path / "h.db") as store:
        summary = run_sweep(suite, store, executor, plugins=[str(plugin)], log=print, poll_s=0.2)
        assert summary.done == 2 and summary.failed == 2
        errors = {label: err for _, label, err in summary.failures}
        # one line naming the method, its file and the rule (harness.core.contract)
        assert errors["raise"].startswith("PluginError: method 'faulty' (") and \
            "its objective raised RuntimeError: boom from the faulty method" in errors["raise"]
        assert errors["hang"] == "timeout: cancelled after the cell timeout of 90 s"
        cells = {c["label"]: c for c in store.cells(suite.id)}
        assert cells["sft"]["status"] == "done" and cells["dpo"]["status"] == "done"
        assert store.final_metrics(suite.id)
    assert ray.is_initialized()  # the executor joined the test's Ray instance and left it running


def test_ray_needs_gpus_it_asks_for(local_ray):
    from harness.core.errors import HarnessError
    from harness.sweeps.ray_executor import RayExecutor

    with pytest.raises(HarnessError, match="the Ray cluster has no GPUs"):
        RayExecutor(num_cpus=1, num_gpus=1)
