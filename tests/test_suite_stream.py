"""Suite expansion streams: a big grid's cells are produced one at a time (``Suite.iter_cells``), in the same
order and with the same ids as a kept list, and ``harness sweep --dry-run`` and the store's registration of
such a grid stay within a small, fixed amount of memory."""

from __future__ import annotations

import json
import textwrap
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from tabulate import tabulate

from harness.core.errors import HarnessError
from harness.core.plugins import load
from harness.suite.expand import KEEP_CELLS, expand, load_suite, read_suite
from harness.sweeps.store import Store
from tests.conftest import ROOT

BIG = """\
name = "big"
models = ["tiny:nano"]
benchmarks = ["didactic-r1"]
[train]
steps = 1
[methods.dpo.grid]
beta = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
"""
SEEDS = 300  # x 10 betas = 3,000 cells: above KEEP_CELLS, so they stream; seconds to expand (nothing trains)

# Excludes, includes, an include that repeats grid cells (same label) and an entry that repeats a grid
# point under another label (a warning).
MIXED = """\
name = "mixed"
models = ["tiny:nano"]
benchmarks = ["didactic-r1", "didactic-r2"]
seeds = [0, 1]
[train]
steps = 5
[methods.sft]
[methods.dpo.grid]
beta = [0.05, 0.1]
[methods.dpo2]
method = "dpo"
beta = 0.05
[[exclude]]
method = "sft"
benchmark = "didactic-r2"
[[exclude]]
method = "sft"
seed = 9
[[include]]
method = "dpo"
benchmark = "didactic-r2"
seed = 0
beta = 0.3
[[include]]
method = "dpo"
benchmark = "didactic-r1"
beta = 0.1
"""


@pytest.fixture(scope="module")
def host():
    return load()


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _same(kept, streamed) -> None:
    assert streamed.kept is None and kept.kept is not None
    want = kept.kept
    got = list(streamed.iter_cells())
    assert [c.id for c in got] == [c.id for c in want]  # same ids, same order
    assert [c.row() for c in got] == [c.row() for c in want] and [c.prefix for c in got] == [c.prefix for c in want]
    assert (streamed.id, streamed.n_cells, streamed.labels, streamed.models, streamed.benchmarks, streamed.widest,
            streamed.warnings) == (kept.id, kept.n_cells, kept.labels, kept.models, kept.benchmarks, kept.widest,
                                   kept.warnings)
    assert kept.n_cells == len(want) and [c.id for c in kept.iter_cells()] == [c.id for c in want]


def _suite_files() -> list[Path]:
    return sorted((ROOT / "suites").glob("*.toml"))


@pytest.mark.parametrize("path", _suite_files(), ids=lambda p: p.stem)
def test_streamed_cells_equal_the_kept_list(path, host):
    """Every shipped suite: the cells streamed from the axes are the list the old expansion built."""
    data = read_suite(path)
    try:
        kept = expand(data, host, path=path, keep_cells=10**9)
    except HarnessError as exc:  # e.g. a model or dataset not on this machine
        pytest.skip(f"{path.name} does not expand here: {exc}")
    _same(kept, expand(data, host, path=path, keep_cells=0))


def test_streamed_dedup_excludes_includes_and_warnings(tmp_path, host):
    data = read_suite(write(tmp_path, MIXED))
    kept = expand(data, host, keep_cells=10**9)
    assert any("repeats" in w for w in kept.warnings) and any("exclude[1]: matches no cell" in w for w in kept.warnings)
    _same(kept, expand(data, host, keep_cells=0))


def test_streamed_errors_are_the_same(tmp_path, host):
    """A bad value in a grid cell and a bad exclude key: the same first error, kept or streamed."""
    text = MIXED + '[[exclude]]\nbogus = 1\n'
    for keep in (0, 10**9):
        with pytest.raises(HarnessError, match=r"exclude\[2\]\.bogus: unknown key"):
            expand(read_suite(write(tmp_path, text)), host, keep_cells=keep)
    text = MIXED.replace("beta = [0.05, 0.1]", 'beta = [0.05, "x"]')
    errors = []
    for keep in (0, 10**9):
        with pytest.raises(HarnessError) as exc:
            expand(read_suite(write(tmp_path, text)), host, keep_cells=keep)
        errors.append(str(exc.value))
    assert errors[0] == errors[1] and "beta" in errors[0]


def _peak(fn) -> tuple[object, float]:
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_big_grid_dry_run_streams_in_little_memory(tmp_path, host):
    """``harness sweep --dry-run`` of a 3,000-cell grid, through the CLI. Keeping the cells (the old
    expansion) peaked at 13.5 MiB of Python memory here, each cell ~4 KB; streaming at 1.8 MiB. The bound
    sits between: a list of the cells (or of tabulate rows for all of them) breaks it."""
    from harness.cli.app import cli

    path = write(tmp_path, BIG)
    args = ["sweep", str(path), "--dry-run", "--set", f"seeds={list(range(SEEDS))}", "--max-cells", "5000"]
    assert SEEDS * 10 > KEEP_CELLS
    warm = CliRunner().invoke(cli, ["sweep", str(path), "--dry-run", "--set", "seeds=[0]"], obj={"host": host})
    assert warm.exit_code == 0, warm.output
    result, peak = _peak(lambda: CliRunner().invoke(cli, args, obj={"host": host}))
    assert result.exit_code == 0, result.output
    lines = result.stdout.rstrip("\n").split("\n")  # (the validation bar goes to stderr)
    assert lines[-1].startswith(f"{SEEDS * 10} cells in sweep big-") and lines[-1].endswith("; valid")
    assert peak < 6.0, f"dry run of {SEEDS * 10} cells peaked at {peak:.1f} MiB of Python memory"

    # what it printed is what one tabulate call over every cell printed before
    suite = load_suite(path, host, [f"seeds={list(range(SEEDS))}"], max_cells=5000)
    cells = suite.cells  # materialised here on purpose, to compare
    rows = [[c.id, c.config.model, c.label, c.config.benchmark, c.config.seed] for c in cells]
    want = tabulate(rows, headers=["cell", "model", "method", "benchmark", "seed"])
    assert "\n".join(lines[:-2]) == want
    assert lines[-1] == f"{len(cells)} cells in sweep {suite.id} ({path}); valid"
    js = CliRunner().invoke(cli, [*args, "--json"], obj={"host": host})
    assert js.exit_code == 0 and js.stdout == json.dumps({"sweep": suite.id, "valid": True, "cells": [
        {"cell": c.id, "model": c.config.model, "method": c.label, "benchmark": c.config.benchmark,
         "seed": c.config.seed} for c in cells]}, indent=1) + "\n"


def test_big_grid_registers_in_batches(tmp_path, host):
    """The store records a streamed grid from a generator, in order, without a list of its rows. A batch of
    rows is held at a time (~6 MiB with today's longer cell configs); a list of all 3,000 rows is ~14 MiB."""
    suite = load_suite(write(tmp_path, BIG), host, [f"seeds={list(range(SEEDS))}"], max_cells=5000)
    assert suite.kept is None
    with Store(tmp_path / "h.db") as db:
        _, peak = _peak(lambda: db.add_sweep(suite.id, suite.name, None, suite.data,
                                              (c.row() for c in suite.iter_cells())))
        assert peak < 8.0, f"registering {suite.n_cells} cells peaked at {peak:.1f} MiB of Python memory"
        assert list(db.sweep_statuses(suite.id)) == ["pending"] * suite.n_cells
        ids = [r[0] for r in db.db.execute("SELECT cell_id FROM sweep_cells WHERE sweep_id=? ORDER BY position",
                                           (suite.id,))]
    assert ids == [c.id for c in suite.iter_cells()]


def test_streamed_suite_runs_every_cell_from_a_small_window(tmp_path, host, monkeypatch):
    """``run_sweep`` on a streamed suite, holding at most 2 cells ahead (real local workers, evaluate-only
    cells): every cell runs once, numbered 1..N, and a rerun finds them all done."""
    import harness.sweeps.sweep as sweep_mod
    from harness.results.leaderboard import build
    from harness.sweeps.local_executor import LocalExecutor

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sweep_mod, "LOOKAHEAD", 2)
    text = BIG.replace("steps = 1", "rounds = 0").replace("beta = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]",
                                                         "beta = [0.1, 0.2]\n[methods.sft]")
    path = write(tmp_path, text.replace('benchmarks = ["didactic-r1"]', 'benchmarks = ["didactic-r1"]\nseeds = [0, 1]'))
    data = read_suite(path)
    suite = expand(data, host, path=path, keep_cells=0)
    assert suite.kept is None and suite.n_cells == 6
    lines: list[str] = []
    with Store(tmp_path / "h.db") as db:
        summary = sweep_mod.run_sweep(suite, db, LocalExecutor(2), log=lines.append, poll_s=0.2)
        assert (summary.done, summary.failed) == (6, 0), lines
        started = [line.split(" start ", 1)[1].split()[0] for line in lines if " start " in line]
        assert sorted(started) == sorted(c.id for c in suite.iter_cells())
        assert sorted(line.split("]")[0] for line in lines if " start " in line) == [f"[{i}/6" for i in range(1, 7)]
        again: list[str] = []
        sweep_mod.run_sweep(suite, db, LocalExecutor(1), log=again.append)
        assert "6 cells, 0 to run, 6 already done" in again[0]
        kept = build(db, expand(data, host, path=path, keep_cells=10**9).id)
        assert {r.label for r in kept.rows} == {"sft", "dpo(beta=0.1)", "dpo(beta=0.2)"}
