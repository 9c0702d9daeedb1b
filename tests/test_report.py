"""The HTML report: it parses, every image it shows exists, and it has the leaderboard, bars, loss and
per-round curves and action distributions; ``harness report`` with no arguments reports the latest sweep."""

from __future__ import annotations

import math
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.results.report import write_report
from harness.sweeps.store import Store

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    """Collects <img> sources, headings and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []
        self.headings: list[str] = []
        self.errors: list[str] = []
        self._in_h = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.stack.append(tag)
        self._in_h = tag in ("h1", "h2")

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()
        self._in_h = False

    def handle_data(self, data):
        if self._in_h:
            self.headings.append(data.strip())


def check_page(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert not page.errors and not page.stack, (page.errors, page.stack)
    assert page.images
    for src in page.images:
        assert (path.parent / src).is_file(), src
        assert (path.parent / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return page


def fake_sweep(store: Store, name: str, *, actions: bool = True, failed: bool = False) -> str:
    """A sweep of 2 methods x 2 seeds on didactic-r1 with 2 rounds, written as a worker would."""
    methods = ["sft", "dpo(beta=0.1)"]
    cells = []
    for m in methods:
        for seed in (0, 1):
            cid = f"{name}-{m[:3]}-{seed}"
            cells.append({"id": cid, "base_id": cid, "label": m, "plugins": {},
                          "config": {"model": "tiny:nano", "method": m[:3], "benchmark": "didactic-r1",
                                     "benchmark_version": "1", "seed": seed}})
    sid = f"{name}-0000"
    store.add_sweep(sid, name, f"suites/{name}.toml", {"leaderboard": {"metrics": ["expected_reward", "kl_ref"]}},
                    cells)
    run = store.start_run(sid, "local")
    for k, c in enumerate(cells):
        store.claim(c["id"], "me")
        if failed and k == len(cells) - 1:
            store.fail(c["id"], "RuntimeError: boom")
            continue
        seed, shift = c["config"]["seed"], 0.1 * (k // 2)
        probs = [math.exp(-((a - 70 * shift * 5) / 20) ** 2) for a in range(100)]
        probs = [p / sum(probs) for p in probs]
        records = [{"benchmark": "didactic-r1", "state": st, "expected_reward": 0.5,
                    **({"action_probs": probs, "pi_ref_probs": [0.01] * 100, "expert_probs": probs[::-1]}
                       if actions else {})} for st in range(3)]
        store.finish(c["id"], {
            "config": {"benchmark": "didactic-r1", "benchmark_version": "1", "evals": []},
            "rounds": [{"round": r, "metrics": {"didactic-r1/expected_reward": 0.04 + r * shift + 0.01 * seed,
                                                "didactic-r1/kl_ref": r * shift * 2 + 0.001 * seed,
                                                "didactic-r1/entropy": 4.0}} for r in range(3)],
            "steps": [{"round": r, "step": i, "loss": 1.0 / (1 + i + 5 * r) + 0.01 * seed}
                      for r in range(2) for i in range(5)],
            "records": records, "timings": {}, "provenance": {}, "warm_start": "hit",
        }, wall_s=1.0)
    store.end_run(run, {"done": 4 - failed, "failed": int(failed), "wall_s": 12.5,
                        "warm_start": {"hit": 2, "miss": 2, "none": 0},
                        "cache": {"reflogps": {"hits": 1, "misses": 1}}})
    return sid


def test_report_parses_and_shows_everything(tmp_path):
    with Store(tmp_path / "h.db") as store:
        sid = fake_sweep(store, "demo")
        path = write_report(store)
    assert path == tmp_path / sid / "report.html"
    page = check_page(path)
    text = path.read_text()
    assert page.headings[:2] == [f"Sweep {sid}", "Leaderboard"]
    assert "Final action distributions" in page.headings and "Learning curves: evaluation per round" in page.headings
    assert "reference log-probs 1 hits, 1 misses; samples 0 hits, 0 misses" in text
    assert "dpo(beta=0.1)" in text and "<table>" in text
    assert sorted(page.images) == ["actions_didactic-r1.png", "bars_didactic-r1.png", "loss_didactic-r1.png",
                                   "rounds_didactic-r1.png"]


def test_report_without_distributions_and_with_a_failed_cell(tmp_path):
    with Store(tmp_path / "h.db") as store:
        fake_sweep(store, "plain", actions=False, failed=True)
        path = write_report(store, out=tmp_path / "custom" / "page.html")
    assert path == tmp_path / "custom" / "page.html"
    page = check_page(path)
    assert "Final action distributions" not in page.headings
    assert not list((tmp_path / "custom").glob("actions_*.png"))
    assert "1 failed" in path.read_text()


def test_harness_report_with_no_arguments_reports_the_latest_sweep(tmp_path, monkeypatch):
    from harness.cli.app import cli

    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    with Store(tmp_path / "harness.db") as store:
        fake_sweep(store, "older")
        latest = fake_sweep(store, "newer")
    res = CliRunner().invoke(cli, ["report"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"report: {tmp_path / latest / 'report.html'}"
    check_page(tmp_path / latest / "report.html")


def test_harness_report_without_a_store_says_so(tmp_path, monkeypatch):
    from harness.cli.app import cli

    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "none"))
    res = CliRunner().invoke(cli, ["report"])
    assert res.exit_code != 0
    assert "no such results database" in res.output


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_didactic_records_carry_the_whole_action_distribution(kind, tiny_lm):
    import numpy as np

    from harness.core.context import EvalContext
    from plugins.benchmarks import didactic

    spec = didactic.make_spec("didactic-r1", 70.0, multi=kind == "multi")
    params = spec.params(n_states=2, eval_samples=8) if kind == "multi" else spec.params(n_states=2)
    res = spec.evaluate(EvalContext(engine=tiny_lm.engine, lm=tiny_lm, encoder=tiny_lm.encoder, params=params,
                                    seed=0))
    assert len(res.records) == 2
    reward = didactic.reward_values(70.0, params.width)
    for rec in res.records:
        assert len(rec["action_probs"]) == 100 and abs(sum(rec["action_probs"]) - 1) < 1e-4
        assert np.allclose(rec["pi_ref_probs"], didactic.pi_ref_probs(), rtol=1e-5)
        assert np.allclose(rec["expert_probs"], didactic.expert_probs(reward, params.tau), rtol=1e-5, atol=1e-12)
    if kind == "single":  # exact: its top actions are the distribution's
        rec = res.records[0]
        assert rec["top_probs"][0] == pytest.approx(max(rec["action_probs"]), rel=1e-5)
