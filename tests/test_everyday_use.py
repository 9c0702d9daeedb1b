"""Everyday use, second pass (issue 27): what a user sees and the exit codes they get."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.conftest import ROOT, run_harness
from tests.test_plugins import make_distribution


def test_version_answers_fast_and_has_a_short_flag():
    for flag in ("--version", "-V"):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'harness'; "
                              "from harness.cli import main; main()", flag], capture_output=True, text=True, cwd=ROOT)
        took = time.perf_counter() - t0
        assert out.returncode == 0 and "alignment-harness, version" in out.stdout, out.stderr
        assert "torch" not in out.stderr
        assert took < 2.5, f"{flag} took {took:.1f} s (it must not import the commands and torch)"
    probe = subprocess.run([sys.executable, "-c", "import sys; sys.argv[1:] = ['-V']; from harness.cli import main; "
                            "main(); print('torch' in sys.modules)"], capture_output=True, text=True, cwd=ROOT)
    assert probe.stdout.split()[-1] == "False", probe.stdout + probe.stderr


def test_methods_name_shows_trainer_keys_and_real_model_defaults():
    out = run_harness("methods", "dpo")
    assert out.returncode == 0, out.stderr
    lr = [line for line in out.stdout.splitlines() if "train.lr=" in line]
    assert lr and "real model: 5e-07" in lr[0], out.stdout
    assert "train.steps=" in out.stdout and "train.optimizer=" in out.stdout
    data = json.loads(run_harness("methods", "online-dpo", "--json").stdout)[0]
    beta = next(p for p in data["params"] if p["name"] == "beta")
    assert beta["real_model_default"] == 0.1 and beta["default"] != 0.1
    assert {p["name"] for p in data["train"]} >= {"lr", "steps", "rounds", "batch_size"}


def test_no_development_machine_path_in_the_product():
    for path in [*(ROOT / "harness").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]:
        text = path.read_text()
        assert "/work/shared" not in text and "/home/" not in text, path


def test_quarantined_plugin_is_listed_as_broken_and_check_plugin_fails_with_exit_1(tmp_path):
    site = make_distribution(tmp_path, "harness_broken27", {"broken27": "broken27_plugin"},
                             {"broken27_plugin": "raise ImportError('no gpu')\n"})
    env = {"PYTHONPATH": f"{site}:{ROOT}", "HARNESS_LOAD_PLUGINS": "sft,didactic,broken27"}
    out = run_harness("plugins", "--json", env=env)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["broken27"]["status"] == "broken" and "ImportError: no gpu" in rows["broken27"]["error"]
    assert rows["sft"]["status"] == "ok"
    out = run_harness("check-plugin", "broken27", env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "quarantined" in out.stdout and "no loaded plugin" not in out.stdout + out.stderr


def test_progress_bars_hold_no_multiprocessing_semaphore():
    """tqdm's default lock is a multiprocessing RLock: in a sweep worker a named semaphore that a killed worker
    leaves behind (the resource tracker's "leaked semaphore objects" warning on Ctrl-C)."""
    import multiprocessing.synchronize

    from tqdm.std import tqdm

    import harness.core.progress  # noqa: F401 - sets the lock

    lock = tqdm.get_lock()
    assert not isinstance(lock, multiprocessing.synchronize.SemLock)
    assert not any(isinstance(x, multiprocessing.synchronize.SemLock) for x in getattr(lock, "locks", ()))


def test_ctrl_c_during_a_checkpoint_write_leaves_no_tmp_file(tmp_path, monkeypatch):
    import torch

    from harness.core.plugins import load
    from harness.training import checkpoints
    from harness.training.trainer import TrainConfig
    from tests.test_train import make_trainer

    trainer = make_trainer(load(env={"HARNESS_LOAD_PLUGINS": "sft"}), "sft", TrainConfig(steps=1, batch_size=4),
                           checkpoint_dir=tmp_path / "checkpoint")
    real_save = torch.save

    def interrupted_save(obj, path):  # the user presses Ctrl-C while the file is half written
        real_save(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.torch, "save", interrupted_save)
    try:
        checkpoints.save(trainer, 0)
    except KeyboardInterrupt:
        pass
    assert not (tmp_path / "checkpoint" / "checkpoint.pt.tmp").exists()


def test_ctrl_c_in_harness_run_exits_130(tmp_path):
    import os
    import signal

    out = tmp_path / "cell"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--method", "sft", "--benchmark", "didactic-r1",
                             "--set", "train.steps=100000", "--set", "benchmark.n_states=4", "--set",
                             "benchmark.warm_steps=2", "--set", "train.checkpoint_every=5", "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_RESULTS": str(tmp_path / "results")},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint" / "checkpoint.pt").exists():
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise AssertionError("the run ended (or hung) before its first checkpoint: "
                                     + proc.communicate()[1][-2000:])
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Aborted!" not in err and "Traceback" not in err and "interrupted" in err
    assert not (out / "checkpoint" / "checkpoint.pt.tmp").exists()
