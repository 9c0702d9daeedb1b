"""--log-to wandb|mlflow|tensorboard, each in its local/offline mode: one run per cell with config and steps."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

STEPS = 3


def run_logged(tmp_path, *backends: str, extra: tuple[str, ...] = (), plugin: str | None = None,
               ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_CACHE", "HARNESS_RESULTS", "HARNESS_HOME",
                                                            "MLFLOW_TRACKING_URI")}
    env.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"})
    if plugin:
        env["HARNESS_PLUGINS"] = plugin
    args = [sys.executable, "-m", "harness.cli", "--results", str(tmp_path / "home"), "run", "--method", "sft",
            "--benchmark", "didactic-r1", "--set", f"train.steps={STEPS}", "--set", "n_states=2", "--set",
            "warm_steps=2", "--quiet", "--threads", "1"]
    for b in backends:
        args += ["--log-to", b]
    args += list(extra)
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def needs(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} not installed (optional extra)")


@needs("tensorboard")
def test_tensorboard_gets_config_steps_and_eval(tmp_path):
    res = run_logged(tmp_path, "tensorboard")
    assert res.returncode == 0, res.stderr
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = list((tmp_path / "home" / "tensorboard" / "harness-run").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("sft-didactic-r1-seed0-")
    acc = EventAccumulator(str(runs[0]))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3]
    assert [e.step for e in acc.Scalars("eval/didactic-r1/expected_reward")] == [0, STEPS]  # rounds 0 and 1
    assert "config/text_summary" in acc.Tags()["tensors"]


@needs("tensorboard")
def test_tensorboard_logs_the_lr_each_step_used(tmp_path):
    """3 steps, linear decay, no warmup (int(0.1 * 3) = 0): the steps use lr x 1, 2/3, 1/3 (the peak first, the
    last above 0); logging the next step's lr showed 2/3, 1/3, 0."""
    res = run_logged(tmp_path, "tensorboard", extra=("--set", "train.lr=0.003"))
    assert res.returncode == 0, res.stderr
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = (tmp_path / "home" / "tensorboard" / "harness-run").iterdir()
    acc = EventAccumulator(str(run))
    acc.Reload()
    lrs = [e.value for e in acc.Scalars("lr")]
    assert lrs == pytest.approx([0.003, 0.002, 0.001], rel=1e-5)


SWEEP = """name = "named"
models = ["tiny:nano"]
benchmarks = ["didactic-r1"]
seeds = [0]
threads = 1
[train]
steps = 2
batch_size = 4
[benchmark_params.didactic-r1]
n_states = 2
warm_steps = 2
[methods.untrained]
method = "sft"
train = { rounds = 0 }
[methods.sft]
"""


@needs("tensorboard")
def test_tracking_runs_are_named_by_label_and_untrained_runs_say_so(tmp_path):
    suite = tmp_path / "named.toml"
    suite.write_text(SWEEP)
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_CACHE", "HARNESS_RESULTS", "HARNESS_HOME")}
    res = subprocess.run([sys.executable, "-m", "harness.cli", "--results", str(tmp_path / "home"), "sweep",
                          str(suite), "--log-to", "tensorboard", "--quiet"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    names = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "home" / "tensorboard" / "named").iterdir())
    assert names == ["sft-didactic-r1-seed0", "untrained-didactic-r1-seed0"]
    (tmp_path / "one").mkdir()
    one = run_logged(tmp_path / "one", "tensorboard", extra=("--set", "train.rounds=0"))
    assert one.returncode == 0, one.stderr
    (run,) = (tmp_path / "one" / "home" / "tensorboard" / "harness-run").iterdir()
    assert run.name.startswith("sft-untrained-didactic-r1-seed0-")


@needs("mlflow")
def test_mlflow_gets_the_record_and_the_saved_model_as_artefacts(tmp_path):
    res = run_logged(tmp_path, "mlflow", extra=("--set", "train.save_model=merged"))
    assert res.returncode == 0, res.stderr
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(tmp_path / "home" / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("harness-run").experiment_id])
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"record.json", "model"} <= top, top
    model = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert any(p.endswith("config.json") for p in model), model


@needs("mlflow")
def test_mlflow_local_store_gets_a_run_with_params_and_metric_history(tmp_path):
    res = run_logged(tmp_path, "mlflow")
    assert res.returncode == 0, res.stderr
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

    client = MlflowClient(tracking_uri=(tmp_path / "home" / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("harness-run")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.params["train.steps"] == str(STEPS) and run.data.params["method"] == "sft"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert run.data.tags["sweep"] == "harness-run"


BROKEN = """\
from dataclasses import dataclass

from harness import MethodSpec, hookimpl
from harness.samplers import offline_demonstrations


@dataclass(frozen=True)
class P:
    pass


def objective(batch, params):
    raise RuntimeError("broken on purpose")


@hookimpl
def register_methods(register):
    register(MethodSpec(name="broken", description="raises in its objective", paper="-", params=P,
                        sampler=offline_demonstrations, objective=objective, needs=frozenset({"demonstrations"})))
"""


@needs("mlflow")
def test_a_failed_cell_ends_its_tracking_run_as_failed(tmp_path):
    plugin = tmp_path / "broken.py"
    plugin.write_text(BROKEN)
    res = run_logged(tmp_path, "mlflow", extra=("--method", "broken"), plugin=str(plugin))
    assert res.returncode != 0 and "broken on purpose" in res.stderr
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

    client = MlflowClient(tracking_uri=(tmp_path / "home" / "mlruns").resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name("harness-run").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]  # not left RUNNING


@needs("wandb")
def test_wandb_offline_run_with_config(tmp_path):
    res = run_logged(tmp_path, "wandb")
    assert res.returncode == 0, res.stderr
    offline = list((tmp_path / "home" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, list((tmp_path / "home").rglob("*"))[:20]
    (log,) = offline[0].glob("run-*.wandb")  # the offline transaction log (`wandb sync` uploads it)
    data = log.read_bytes()
    assert b"didactic-r1" in data and b"expected_reward" in data and data.count(b"loss") >= STEPS


def test_unknown_or_missing_backend_is_one_line(tmp_path):
    res = run_logged(tmp_path, "neptune")
    assert res.returncode == 2 and "--log-to" in res.stderr and "Traceback" not in res.stderr
