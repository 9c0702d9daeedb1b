"""`harness new method|benchmark NAME`: the generated packages install and pass check-plugin and their own tests.

The packages are installed for real (a wheel built from their pyproject, `pip install --no-deps --target`)
into a fresh virtual environment whose only other content is a .pth line that adds this harness
environment's site-packages (so nothing is downloaded and the harness is not installed twice)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

import pytest

from harness.authoring.scaffold import scaffold
from harness.core.errors import HarnessError
from tests.conftest import run_cli


def test_new_refuses_bad_names_and_existing_folders(tmp_path):
    with pytest.raises(HarnessError, match="lowercase letters"):
        scaffold("method", "My Method", tmp_path)
    scaffold("method", "simpo", tmp_path)
    with pytest.raises(HarnessError, match="exists"):
        scaffold("method", "simpo", tmp_path)
    text = (tmp_path / "harness-simpo" / "pyproject.toml").read_text()
    assert '[project.entry-points.harness]\nsimpo = "harness_simpo.method"' in text


def fresh_env(tmp_path):
    """A new venv (no pip) that sees this environment's packages through one .pth line."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    with open(os.path.join(site, "zz_harness_env.pth"), "w") as f:
        f.write(f"import site; site.addsitedir({ours!r})\n")
    return python, site


@pytest.mark.slow
def test_scaffolded_method_and_benchmark_pass_check_plugin_and_their_tests(tmp_path):
    res = run_cli("new", "method", "my-simpo", "--dir", str(tmp_path))
    assert res.returncode == 0 and f"created {tmp_path / 'harness-my-simpo'}" in res.stdout, res.stderr
    scaffold("benchmark", "adder", tmp_path)
    python, site = fresh_env(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    env.pop("HARNESS_PLUGINS", None)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    site, str(tmp_path / "harness-my-simpo"), str(tmp_path / "harness-adder")],
                   check=True, capture_output=True, env=env, timeout=300)
    res = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(tmp_path / "harness-my-simpo" / "tests"), str(tmp_path / "harness-adder" / "tests")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 passed" in res.stdout  # each runs `harness check-plugin NAME`: found through its entry point
