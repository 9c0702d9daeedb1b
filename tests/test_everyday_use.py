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
