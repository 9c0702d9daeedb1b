"""The plugin contract and manager: entry points, --plugin files, errors, tracing, the CLI listings."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.core import hookspecs
from harness.core.errors import HarnessError
from harness.core.plugins import load
from tests.conftest import ROOT, run_cli, run_harness

BUILTINS = {"sft", "dpo", "didactic", "engines"}

FILE_PLUGIN = '''\
"""A 20-line third-party method, loaded with --plugin."""
from dataclasses import dataclass

from harness import hookimpl
from harness.core.params import param
from harness.core.registry import MethodSpec
from harness.training.samplers import offline_demonstrations


@dataclass(frozen=True)
class Params:
    scale: float = param(1.0, "loss scale")


@hookimpl
def register_methods(register):
    register(MethodSpec(
        name="scaled-sft", description="SFT times a constant", paper="none",
        sampler=offline_demonstrations, objective=lambda b, p: (-p.scale * b.logps["demo"], {}),
        params=Params, needs=frozenset({"demonstrations"}), reference="none"))
'''


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def make_distribution(tmp_path: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """A real installed-looking distribution: modules plus a .dist-info with entry_points.txt."""
    site = tmp_path / f"site-{dist}"
    info = site / f"{dist}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[harness]\n{eps}\n")
    for mod, src in modules.items():
        (site / f"{mod}.py").write_text(textwrap.dedent(src))
    return site


def test_every_hook_is_documented_with_its_signature():
    hooks = [n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "harness_spec")]
    assert set(hooks) == {"register_methods", "register_benchmarks", "register_engines", "register_datasets",
                          "register_commands"}
    for name in hooks:
        fn = getattr(hookspecs, name)
        doc = inspect.getdoc(fn)
        assert doc and "Called" in doc and "Returns" in doc, name
        sig = inspect.signature(fn)
        assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()), name


def test_every_hook_is_exercised_by_a_plugin(tmp_path):
    """A plugin implementing all four hooks: each is called and what it registered is usable."""
    plugin = write(tmp_path, "allhooks.py", '''
        import click
        from harness import hookimpl
        from harness.core.context import EvalResult
        from harness.core.registry import BenchmarkSpec, EngineSpec, MethodSpec

        @hookimpl
        def register_methods(register):
            register(MethodSpec(name="m-all", description="d", paper="p", sampler=lambda c: [],
                                objective=lambda b, p: (0, {})))

        @hookimpl
        def register_benchmarks(register):
            register(BenchmarkSpec(name="b-all", description="d", paper="p",
                                   evaluate=lambda ctx: EvalResult({"x": 1.0})))

        @hookimpl
        def register_engines(register):
            register(EngineSpec(name="e-all", description="d", factory=lambda model=None: None))

        @hookimpl
        def register_commands(cli):
            @cli.command(name="hello-all")
            def hello():
                """Say hello."""
                click.echo("hello from a plugin command")
    ''')
    host = load([str(plugin)], env={"HARNESS_LOAD_PLUGINS": "sft"})
    assert host.registry.origin[("method", "m-all")] == "allhooks"
    assert host.registry.origin[("benchmark", "b-all")] == "allhooks"
    assert host.registry.origin[("engine", "e-all")] == "allhooks"
    assert set(host.hooks_of("allhooks")) == {
        "register_methods", "register_benchmarks", "register_engines", "register_commands"}
    out = run_harness("--plugin", str(plugin), "hello-all", env={"HARNESS_LOAD_PLUGINS": "sft"})
    assert out.returncode == 0, out.stderr
    assert "hello from a plugin command" in out.stdout


def test_builtins_load_through_entry_points():
    host = load(env={})
    names = {info.name for info in host.infos.values()}
    assert BUILTINS <= names
    for name in BUILTINS:
        assert host.infos[name].source.startswith(f"entry point {name} = alignment_harness_plugins.")
    assert {"sft", "dpo"} <= set(host.registry.specs["method"])
    assert "didactic-r1" in host.registry.specs["benchmark"]
    assert "hf" in host.registry.specs["engine"]


def test_plugins_json_lists_builtins():
    out = run_harness("plugins", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert BUILTINS <= set(rows)
    assert rows["sft"]["registered"] == {"methods": ["sft"]}
    assert rows["sft"]["hooks"] == ["register_methods"]
    assert rows["sft"]["version"]


def test_file_plugin_adds_a_method_that_methods_shows(tmp_path):
    plugin = write(tmp_path, "scaled.py", FILE_PLUGIN)
    assert len(FILE_PLUGIN.splitlines()) <= 20
    out = run_harness("--plugin", str(plugin), "methods")
    assert out.returncode == 0, out.stderr
    assert "scaled-sft" in out.stdout and "loss scale" in out.stdout
    # HARNESS_PLUGINS does the same.
    out = run_harness("methods", "--json", env={"HARNESS_PLUGINS": str(plugin)})
    assert "scaled-sft" in {m["name"] for m in json.loads(out.stdout)}


def test_third_party_entry_point_plugin(tmp_path, monkeypatch):
    site = make_distribution(
        tmp_path, "harness_thirdparty", {"thirdparty": "thirdparty_plugin"},
        {"thirdparty_plugin": FILE_PLUGIN.replace("scaled-sft", "thirdparty-sft")},
    )
    monkeypatch.syspath_prepend(str(site))
    host = load(env={})
    assert host.registry.origin[("method", "thirdparty-sft")] == "thirdparty"
    assert host.infos["thirdparty"].version == "1.2.3"
    # And from the real CLI in a fresh process.
    out = run_harness("plugins", "--json", env={"PYTHONPATH": f"{site}:{ROOT}"})
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["thirdparty"]["registered"] == {"methods": ["thirdparty-sft"]}


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_misspelled_hook_is_an_error(tmp_path):
    plugin = write(tmp_path, "typo.py", '''
        from harness import hookimpl

        @hookimpl
        def register_method(register):
            pass
    ''')
    line = one_line_error(run_harness("--plugin", str(plugin), "methods"))
    assert "'typo'" in line and "register_method" in line and "did you mean 'register_methods'" in line


def test_name_registered_twice_names_both_plugins(tmp_path):
    plugin = write(tmp_path, "dupe.py", FILE_PLUGIN.replace('"scaled-sft"', '"sft"'))
    line = one_line_error(run_harness("--plugin", str(plugin), "methods"))
    assert "method 'sft' is registered twice" in line and "'sft'" in line and "'dupe'" in line


def test_unknown_method_suggests(tmp_path):
    line = one_line_error(run_cli("run", "--method", "sfft", "--benchmark", "didactic-r1"))
    assert "unknown method 'sfft'" in line and "did you mean 'sft'" in line
    line = one_line_error(run_cli("run", "--method", "sft", "--benchmark", "didactic-r3"))
    assert "unknown benchmark 'didactic-r3'" in line and "did you mean" in line


def test_broken_entry_point_is_reported_and_others_still_load(tmp_path):
    site = make_distribution(
        tmp_path, "harness_broken", {"broken": "broken_plugin"}, {"broken_plugin": "raise ImportError('no gpu')\n"}
    )
    out = run_harness("plugins", "--json", env={"PYTHONPATH": f"{site}:{ROOT}"})
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    err = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(err) == 1
    assert "plugin 'broken'" in err[0] and "ImportError: no gpu" in err[0] and "HARNESS_LOAD_PLUGINS" in err[0]
    assert BUILTINS <= {r["name"] for r in json.loads(out.stdout)}
    # Leaving it out with the allowlist makes the rest work.
    out = run_harness("methods", env={"PYTHONPATH": f"{site}:{ROOT}", "HARNESS_LOAD_PLUGINS": "sft,dpo"})
    assert out.returncode == 0 and "sft" in out.stdout and "didactic" not in out.stdout


def test_allowlist_and_unknown_allowlist_name():
    host = load(env={"HARNESS_LOAD_PLUGINS": "sft"})
    assert set(host.infos) == {"sft", "engines"}  # the built-in engines always load: `hf` keeps working
    assert "hf" in host.registry.specs["engine"]
    with pytest.raises(HarnessError, match="no installed plugin.*did you mean 'sft'"):
        load(env={"HARNESS_LOAD_PLUGINS": "sfd"})


def test_trace_prints_hook_calls():
    out = run_harness("methods", env={"HARNESS_TRACE_PLUGINS": "1", "HARNESS_LOAD_PLUGINS": "sft"})
    assert out.returncode == 0
    assert "sft: register_methods(register)" in out.stderr
    assert "loading entry point sft" in out.stderr


def test_register_checks_types(tmp_path):
    plugin = write(tmp_path, "wrongtype.py", '''
        from harness import hookimpl

        @hookimpl
        def register_methods(register):
            register("not a spec")
    ''')
    line = one_line_error(run_harness("--plugin", str(plugin), "methods"))
    assert "'wrongtype'" in line and "MethodSpec" in line


def test_missing_plugin_file():
    line = one_line_error(run_harness("--plugin", "nope/missing.py", "methods"))
    assert "missing.py" in line


def test_version_and_help_on_every_command():
    out = run_harness("--version")
    assert out.returncode == 0 and "alignment-harness" in out.stdout
    from harness.cli.app import cli

    for name, cmd in cli.commands.items():
        assert cmd.help, f"command {name} has no help text"


def test_wheel_in_fresh_venv_lists_every_builtin(tmp_path):
    """Build a wheel, install it into a new venv (dependencies borrowed from ours), list the plugins."""
    import shutil

    wheel_dir = tmp_path / "wheels"
    # Build from a copy: an in-tree build writes build/ and *.egg-info into the checkout, and a harness process
    # started there meanwhile would see that egg-info's file list and hash other plugin code than its worker.
    src = tmp_path / "src"
    top = {".venv", ".venv-latest", ".git", "results", "build", "dist", ".pytest_cache", ".ruff_cache"}
    shutil.copytree(ROOT, src, ignore=lambda folder, names: [
        n for n in names if n == "__pycache__" or n.endswith(".egg-info") or (Path(folder) == ROOT and n in top)])
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir),
         str(src)], check=True, capture_output=True,
    )
    wheel = next(wheel_dir.glob("alignment_harness-*.whl"))
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    fresh_py = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(fresh_py), "install", "-q", "--no-deps", str(wheel)],
        check=True, capture_output=True,
    )
    site = next((venv / "lib").glob("python*/site-packages"))
    ours = next(p for p in sys.path if p.endswith("site-packages"))
    (site / "zz_deps.pth").write_text(ours + "\n")  # a plain path: our editable finder stays out
    out = subprocess.run([str(venv / "bin" / "harness"), "plugins", "--json"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert BUILTINS <= set(rows)
    probe = subprocess.run([str(fresh_py), "-c", "import harness, alignment_harness_plugins as p; print(p.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert str(venv) in probe.stdout, probe.stdout + probe.stderr


@pytest.mark.slow
def test_broken_installed_plugin_is_quarantined_and_builtin_runs_still_work(tmp_path):
    """One plugin fails to import, another fails in its register hook: `harness run` of a built-in method
    still trains (one warning line each, naming it and HARNESS_DISABLE_PLUGINS), even with an allowlist
    that leaves out the built-in engines."""
    site = make_distribution(tmp_path, "harness_broken", {"broken": "broken_plugin", "badreg": "badreg_plugin"}, {
        "broken_plugin": "raise ImportError('no gpu')\n",
        "badreg_plugin": '''
            from harness import hookimpl

            @hookimpl
            def register_methods(register):
                raise RuntimeError("config file missing")
        ''',
    })
    env = {"PYTHONPATH": f"{site}:{ROOT}", "OMP_NUM_THREADS": "1"}
    out = run_harness("run", "--method", "sft", "--benchmark", "didactic-r1", "--set", "train.steps=2",
                      "--set", "benchmark.n_states=4", "--set", "benchmark.warm_steps=2", "--quiet",
                      "--out", str(tmp_path / "cell"), env={**env, "HARNESS_LOAD_PLUGINS": "sft,didactic,broken,badreg"})
    assert out.returncode == 0, out.stderr
    assert "expected_reward" in out.stdout
    warnings = [line for line in out.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 2, out.stderr
    assert "plugin 'broken'" in warnings[1] + warnings[0] and "ImportError: no gpu" in out.stderr
    assert "plugin 'badreg' failed in register_methods: RuntimeError: config file missing" in out.stderr
    assert "HARNESS_DISABLE_PLUGINS=broken" in out.stderr and "HARNESS_DISABLE_PLUGINS=badreg" in out.stderr
    out = run_harness("methods", env={**env, "HARNESS_DISABLE_PLUGINS": "broken"})
    assert out.returncode == 0 and "sft" in out.stdout and "broken" not in out.stderr and "badreg" in out.stderr
