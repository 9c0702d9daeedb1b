"""GSM8K extraction and scoring against the INSTALLED lm-evaluation-harness: its gsm8k task YAML (the regexes
and the exact_match settings, read from the package, not copied here), its RegexFilter and its
exact_match_hf_evaluate, on completions made from real GSM8K solutions (the reference solution itself, and
the same solution ended in the ways models end theirs)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

import alignment_harness_plugins.benchmarks.gsm8k as g

lm_eval = pytest.importorskip("lm_eval")
yaml = pytest.importorskip("yaml")



def _task() -> dict:
    path = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    return yaml.safe_load(path.read_text())


def _completions(solutions: list[str], rng: random.Random) -> list[str]:
    """Each real solution as written, and rewritten the ways model answers end: a sentence, a dollar sign
    and thousands separator, a trailing period, '####' without its space, a wrong number, no number."""
    out = []
    for sol in solutions:
        body, _, answer = sol.rpartition("#### ")
        n = int(answer.replace(",", ""))
        out += [
            sol,
            f"{body}The answer is {answer}.",
            f"{body}#### ${n:,}",
            f"{body}#### {answer}.",
            f"{body}####{answer}",
            f"{body}#### {n + rng.randint(1, 9)}",
            f"{body}#### {-n}",
            body.replace("<<", "").replace(">>", " "),
            "I don't know.",
        ]
    return out


def test_extraction_and_exact_match_agree_with_the_installed_lm_eval():
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    task = _task()
    assert str(task["metadata"]["version"]) == "3.0"  # the version gsm8k's spec claims to follow
    filters = {}
    for f in task["filter_list"]:
        regex = next(step for step in f["filter"] if step["function"] == "regex")
        filters[f["name"]] = RegexFilter(regex_pattern=regex["regex_pattern"], group_select=regex.get("group_select", 0))
    assert set(filters) == set(g.FILTERS)
    metric = next(m for m in task["metric_list"] if m["metric"] == "exact_match")
    settings = {k: metric[k] for k in ("regexes_to_ignore", "ignore_case", "ignore_punctuation")}

    rows = [p._asdict() for p in g.load_split(g.GSM8KParams(), "test")[:150]]  # the copy shipped with the package
    rng = random.Random(0)
    completions = _completions([r["answer"] for r in rows], rng)
    targets = [r["answer"] for r in rows for _ in range(len(completions) // len(rows))]
    hits = {name: 0 for name in filters}
    for name, flt in filters.items():
        theirs = [x[0] for x in flt.apply([[c] for c in completions], [{}] * len(completions))]
        ours = [g.extract(c)[name] for c in completions]
        assert ours == theirs, name
        for c, target, pred in zip(completions, targets, theirs, strict=True):
            expected = bool(exact_match_hf_evaluate([pred], [target], **settings)["exact_match"])
            assert g.score(c, target)[name] == expected, (name, c[-60:], target[-20:])
            hits[name] += expected
    # the variants exercise both outcomes under both filters
    assert all(0 < h < len(completions) for h in hits.values()), hits
    assert re.search(r"####\s", completions[0])
