"""Everyday use, second pass (issue 27): what a user sees and the exit codes they get."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.conftest import ROOT, run_cli, run_harness
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
    out = run_cli("methods", "dpo")
    assert out.returncode == 0, out.stderr
    lr = [line for line in out.stdout.splitlines() if "train.lr=" in line]
    assert lr and "real model: 5e-07" in lr[0], out.stdout
    assert "train.steps=" in out.stdout and "train.optimizer=" in out.stdout
    data = json.loads(run_cli("methods", "online-dpo", "--json").stdout)[0]
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


def _gsm8k_file(tmp_path, n: int = 5):
    file = tmp_path / "mini.jsonl"
    file.write_text("".join(json.dumps({"question": f"q{i}?", "answer": f"so\n#### {i}"}) + "\n" for i in range(n)))
    return file


def test_the_item_counter_moves_during_generation():
    """Counts arrive while the engine generates (each finished batch of rows), not when the call returns."""
    from harness.core.progress import CountingEngine, Items
    from harness.engines.hf import HFEngine
    from harness.models.loading import load_model
    from harness.models.text import PromptEncoder

    loaded = load_model("tiny:nano", seed=0)
    engine = HFEngine(loaded.model, loaded.tokenizer, batch_size=2)
    prompts = [PromptEncoder(loaded.tokenizer).prompt(f"question {i}") for i in range(6)]
    seen: list[tuple[int, int | None, bool]] = []
    returned = []
    items = Items("eval test", on_change=lambda done, total, what: seen.append((done, total, not returned)))
    items(0, 6)
    CountingEngine(engine, items).generate(prompts, max_new_tokens=3)
    returned.append(True)
    items.close()
    during = [done for done, _, inside in seen if inside]
    assert 2 in during and 4 in during, seen  # after the first and second batch of 2 rows
    assert seen[-1][:2] == (6, 6)


def test_eval_summary_counts_every_item_and_the_time_it_took(tmp_path, capsys):
    from harness.cell.run import evaluate_model
    from harness.core.plugins import load

    host = load(env={"HARNESS_LOAD_PLUGINS": "gsm8k"})
    evaluate_model(host, "tiny:nano", ["gsm8k-chat"], {"path": str(_gsm8k_file(tmp_path)), "chunk_size": "1",
                                                        "max_new_tokens": "4"}, log=lambda _: None, limit=5)
    err = capsys.readouterr().err
    summary = [line for line in err.splitlines() if line.startswith("eval gsm8k-chat:")]
    assert summary and "5/5 items" in summary[-1], err  # it said "1 items" with chunk_size=1
    from harness.core.progress import Items

    items = Items("eval slow")
    time.sleep(0.3)  # the whole work happens before the first count (one batch)
    items(4, 4)
    items.close()
    line = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("eval slow:")][-1]
    assert "4/4 items" in line and float(line.split(",")[-1].split()[0]) >= 0.3, line  # it said 0.0 s


def test_quiet_run_prints_no_round_trained_or_cache_lines_and_cached_only_on_a_hit(tmp_path):
    args = ("run", "--method", "sft", "--benchmark", "didactic-r1", "--set", "train.steps=2", "--set",
            "benchmark.n_states=4", "--set", "benchmark.warm_steps=2")
    env = {"OMP_NUM_THREADS": "1", "HARNESS_RESULTS": str(tmp_path / "results"),
           "HARNESS_CACHE": str(tmp_path / "cache"), "HARNESS_LOAD_PLUGINS": "sft,didactic"}
    first = run_harness(*args, "--out", str(tmp_path / "a"), env=env)
    assert first.returncode == 0, first.stderr
    warm = [ln for ln in first.stderr.splitlines() if ln.startswith("warm start for")]
    assert warm and "cache miss" in warm[0] and "(cached)" not in warm[0], first.stderr
    quiet = run_harness(*args, "--quiet", "--out", str(tmp_path / "b"), env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "expected_reward" in quiet.stdout  # the results still print
    for word in ("round 0:", "round 1:", "trained:", "cache:", "warm start for"):
        assert word not in quiet.stderr, quiet.stderr
    assert json.loads((tmp_path / "b" / "record.json").read_text())["warm_start"] == "hit"


def test_an_error_printed_while_a_bar_is_drawn_starts_on_a_fresh_line(capsys):
    from harness.core import progress
    from harness.core.errors import HarnessError

    if progress.quiet():
        return
    b = progress.bar(10, desc="train round 1/1", unit="step", mininterval=0)
    b.update(1)
    b.refresh()
    HarnessError("suite.toml: bad value").show()
    err = capsys.readouterr().err
    assert "train round 1/1" in err  # the bar was drawn
    last = err.rstrip("\n").split("\n")[-1].split("\r")
    assert last[-1] == "Error: suite.toml: bad value" and not last[-2].strip(), repr(err[-300:])  # bar erased


def test_leaderboard_table_fits_the_terminal_long_format_and_wide_forces_the_wide_one(tmp_path):
    from harness.results.leaderboard import build, render
    from tests.test_leaderboard import fill

    store = fill(tmp_path / "h.db")
    with store:
        lb = build(store, metrics=["*"], baseline="sft")
    wide = render(lb, "table")
    assert max(len(line) for line in wide.split("\n")) > 70
    text = render(lb, "table", width=70)
    assert max(len(line) for line in text.split("\n")) <= 70, text
    # the long format: one row per method x metric, the same numbers
    reward = [line for line in text.split("\n") if line.startswith("dpo(beta=0.1)") and "reward ↑" in line]
    assert len(reward) == 1, text
    assert render(lb, "table", width=70, wide=True) == wide
    out = run_cli("leaderboard", "--store", str(tmp_path / "h.db"), "--all-metrics", env={"COLUMNS": "70"})
    assert out.returncode == 0 and max(len(line) for line in out.stdout.split("\n")) <= 70, out.stdout
    out = run_cli("leaderboard", "--store", str(tmp_path / "h.db"), "--all-metrics", "--wide",
                  env={"COLUMNS": "70"})
    assert out.returncode == 0 and max(len(line) for line in out.stdout.split("\n")) > 70


def test_report_bar_titles_fit_their_panels_and_stderr_gets_no_chart(tmp_path):
    import dataclasses

    from harness.results import report
    from harness.results.leaderboard import build
    from tests.test_leaderboard import fill

    with fill(tmp_path / "h.db") as store:
        lb = build(store, metrics=["*"])
    long_cols = [dataclasses.replace(c, benchmark="gsm8k-chat-with-a-long-name", train="gsm8k-chat-with-a-long-name",
                                     metric=f"{c.metric},flexible-extract") for c in lb.columns]
    stderr_col = dataclasses.replace(long_cols[0], metric="exact_match_stderr,flexible-extract")
    assert not report.charted(stderr_col) and all(report.charted(c) for c in long_cols)
    for r in lb.rows:  # the same values under the long names
        r.cells = {**r.cells, **{n.key: r.cells[o.key] for o, n in zip(lb.columns, long_cols, strict=True)
                                 if o.key in r.cells}}
    lb.columns = long_cols
    plt = report._plt()
    fig = report.bar_figure(plt, lb, long_cols, "gsm8k-chat-with-a-long-name")
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    fig_box = fig.bbox
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]
    for box in boxes:  # inside the figure: not clipped
        assert box.x0 >= fig_box.x0 - 1 and box.x1 <= fig_box.x1 + 1, (box, fig_box)
    for i, a in enumerate(boxes):  # and never over another panel's title
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    plt.close(fig)


def test_scaffolded_benchmark_declares_its_metric_and_its_test_uses_only_the_public_api(tmp_path):
    import re

    from harness.authoring.scaffold import scaffold

    folder = scaffold("benchmark", "adder", tmp_path)
    test = next((folder / "tests").glob("test_*.py")).read_text()
    assert not re.search(r"from harness\.\w", test) and "_policy" not in test, test  # no private internals
    module = (folder / "harness_adder" / "benchmark.py").read_text()
    assert 'MetricSpec("accuracy", item="correct")' in module
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "by_hand",
                          str(folder / "tests")], capture_output=True, text=True, cwd=folder,
                         env={**__import__("os").environ, "PYTHONPATH": f"{folder}:{ROOT}", "OMP_NUM_THREADS": "1"},
                         timeout=300)
    assert res.returncode == 0 and "2 passed" in res.stdout, res.stdout + res.stderr


def test_a_big_dry_run_shows_its_validation_progress_from_the_start(tmp_path):
    from harness.suite.expand import KEEP_CELLS

    seeds = KEEP_CELLS // 2 + 10
    suite = tmp_path / "big.toml"
    suite.write_text(f'name = "big"\nmodels = ["tiny:nano"]\nbenchmarks = ["didactic-r1", "didactic-r2"]\n'
                     f'seeds = {list(range(seeds))}\n[methods.sft]\n')
    out = run_harness("sweep", str(suite), "--dry-run", "--max-cells", "100000", env={"HARNESS_QUIET": ""})
    assert out.returncode == 0, out.stderr
    assert "validating the grid" in out.stderr and f"/{2 * seeds}" in out.stderr, out.stderr[-500:]
    assert out.stdout.rstrip().endswith("; valid")


def test_a_cells_evaluation_reports_item_counts_and_its_own_start_to_the_live_status(tmp_path):
    from harness.cell.run import CellConfig, resolve, run_cell
    from harness.core.plugins import load
    from harness.sweeps.sweep import progress_text

    host = load(env={"HARNESS_LOAD_PLUGINS": "sft,gsm8k"})
    cell = resolve(CellConfig(model="tiny:nano", method="sft", benchmark="gsm8k-chat",
                              benchmark_params={"path": str(_gsm8k_file(tmp_path, 4)), "max_new_tokens": 2,
                                                "chunk_size": 1}, train={"rounds": 0}), host)
    seen: list[dict] = []
    run_cell(cell, host, progress=False, log=lambda _: None, cache=None, status=seen.append)
    evals = [s for s in seen if s["phase"] == "eval" and "items" in s]
    assert evals and evals[-1]["items"] == 4 and evals[-1]["items_total"] == 4, seen
    assert all(s["started"] == evals[0]["started"] for s in evals)
    text = progress_text({**evals[1], "t": evals[1]["started"] + 2.0}, 500.0, now=evals[1]["started"] + 3.0)
    assert "gsm8k-chat" in text and f"{evals[1]['items']}/4 items" in text and "(3 s)" in text, text
