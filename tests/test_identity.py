"""Identity from code: editing a plugin gives its cells new ids, so they rerun with the new code; the old
records stay under the old ids; `--rerun` forces cells; the leaderboard notes mixed code."""

from __future__ import annotations

import sqlite3

import pytest

from harness.cell.run import CellConfig, resolve
from harness.core.identity import code_hash, mixed_code
from harness.core.plugins import load
from tests.conftest import run_harness
from tests.test_sweep import sweep_env

PLUGIN = '''\
"""SFT with a scaled loss: editing SCALE is editing the loss."""
from harness import hookimpl
from harness.core.registry import MethodSpec
from harness.training.samplers import offline_demonstrations

SCALE = {scale}


def objective(batch, params):
    return -SCALE * batch.logps["demo"], {{}}


@hookimpl
def register_methods(register):
    register(MethodSpec(name="scaled", description="scaled sft", paper="-", sampler=offline_demonstrations,
                        objective=objective, needs=frozenset({{"demonstrations"}}), reference="none"))
'''

SUITE = """\
name = "edited"
models = ["tiny:nano"]
benchmarks = ["didactic-r1"]
seeds = [0]
threads = 1
[train]
steps = 6
batch_size = 4
lr = 0.01
[benchmark_params.didactic-r1]
n_states = 4
warm_steps = 5
[methods.scaled]
"""


def test_cell_id_follows_the_plugin_source(tmp_path):
    path = tmp_path / "scaled.py"
    path.write_text(PLUGIN.format(scale=1.0))
    cfg = CellConfig(model="tiny:nano", method="scaled", benchmark="didactic-r1")
    env = {"HARNESS_LOAD_PLUGINS": "didactic"}
    first = resolve(cfg, load([str(path)], env=env))
    again = resolve(cfg, load([str(path)], env=env))
    assert first.cell_id == again.cell_id  # the same code: the same cell (and `harness run` folder)
    path.write_text(PLUGIN.format(scale=0.5))
    edited = resolve(cfg, load([str(path)], env=env))
    assert edited.cell_id != first.cell_id and edited.code["scaled"] != first.code["scaled"]
    assert edited.code["didactic"] == first.code["didactic"]  # other plugins' hashes are unchanged
    host = load(env={"HARNESS_LOAD_PLUGINS": "sft"})
    assert code_hash(host.infos["sft"]) == code_hash(load(env={"HARNESS_LOAD_PLUGINS": "sft"}).infos["sft"])


def test_mixed_code_note():
    def cell(commit, plugin="1 code a"):
        return {"status": "done", "plugins": {"p": plugin}, "provenance": {"git_commit": commit, "git_dirty": False}}

    assert mixed_code([cell("abc"), cell("abc")]) is None
    note = mixed_code([cell("abc"), cell("def")])
    assert note and "harness commit (2: abc, def)" in note
    assert "plugin p" in mixed_code([cell("abc"), cell("abc", "1 code b")])


def test_mixed_data_note():
    """Cells whose evaluations read different copies of a benchmark's data (by content hash) are named."""
    def cell(copy, sha):
        return {"status": "done", "provenance": {"data": {"gsm8k": {"copy": copy, "sha256": sha, "parts": {}}}}}

    assert mixed_code([cell("embedded", "a" * 64), cell("path", "a" * 64)]) is None  # same rows: no note
    note = mixed_code([cell("embedded", "a" * 64), cell("path", "b" * 64), cell("embedded", "a" * 64)])
    assert note == f"note: this sweep's cells ran under different code or data: gsm8k data (2: embedded {'a' * 12}, " \
                   f"path {'b' * 12})"


def final_rewards(store) -> dict[str, float]:
    con = sqlite3.connect(store)
    rows = con.execute("SELECT cell_id, value FROM metrics WHERE metric='expected_reward' AND round=1").fetchall()
    con.close()
    return dict(rows)


@pytest.mark.slow
def test_editing_a_plugin_reruns_its_cells_with_new_numbers(tmp_path):
    path = tmp_path / "scaled.py"
    path.write_text(PLUGIN.format(scale=1.0))
    suite = tmp_path / "edited.toml"
    suite.write_text(SUITE)
    store = tmp_path / "h.db"
    env = {**sweep_env(tmp_path), "HARNESS_LOAD_PLUGINS": "didactic"}

    def sweep(*extra):
        res = run_harness("--plugin", str(path), "sweep", str(suite), "--store", str(store), *extra, env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stderr  # the sweep's status lines (the leaderboard goes to stdout)

    assert "1 to run, 0 already done" in sweep()
    old = final_rewards(store)
    assert "1 to run, 0 already done" in sweep("--rerun")  # forced: the same code gives the same numbers
    assert final_rewards(store) == old
    path.write_text(PLUGIN.format(scale=0.02))  # a much weaker loss: the policy moves less
    assert "1 to run, 0 already done" in sweep()  # without --rerun: the edit alone reruns the cell
    new = final_rewards(store)
    assert set(old) < set(new) and len(new) == 2  # the old record stays, under its old id
    (old_id, old_reward), = old.items()
    new_reward = next(v for k, v in new.items() if k != old_id)
    assert new[old_id] == old_reward and abs(new_reward - old_reward) > 1e-4


def test_builtin_identity_is_the_plugin_source_only_whatever_the_current_folder(tmp_path):
    """A built-in cell's code hash covers alignment_harness_plugins and nothing else: not the harness (its
    version is in the id), not the tests, not an editable finder naming the checkout. Real processes, one started
    in a folder holding an egg-info that lists harness and test files (as `pip install -e .` leaves in a checkout,
    found through the current directory on sys.path): both must give the same hash and the same files."""
    import json
    import subprocess
    import sys

    probe = ("import json, pathlib, alignment_harness_plugins as pkg; from harness.core.plugins import get_host; "
             "from harness.core.identity import source_files, code_hash; i = get_host().infos['sft']; "
             "root = pathlib.Path(pkg.__path__[0]).resolve(); files = source_files(i.module, i.dist); "
             "print(json.dumps([code_hash(i), len(files), all(root in p.resolve().parents for p in files)]))")
    odd = tmp_path / "checkout"
    info = odd / "alignment_harness.egg-info"
    info.mkdir(parents=True)
    (info / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: alignment-harness\nVersion: 0.1.0\n")
    (info / "SOURCES.txt").write_text("tools/extra.py\ntests/test_extra.py\n")
    import importlib.metadata

    (info / "entry_points.txt").write_text(importlib.metadata.distribution("alignment-harness").read_text(
        "entry_points.txt") or "")  # the built-ins load from it too, as from a real in-tree egg-info
    for f in ("tools/extra.py", "tests/test_extra.py"):
        (odd / f).parent.mkdir(exist_ok=True)
        (odd / f).write_text("x = 1\n")
    seen = [json.loads(subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True,
                                      check=True).stdout) for cwd in (tmp_path, odd)]
    assert seen[0] == seen[1], seen
    assert seen[0][2] is True  # only files of alignment_harness_plugins: no harness, test or finder file
