"""MT-Bench's judgment parser against the INSTALLED FastChat (``make install`` puts ``fschat`` in with
``--no-deps``): its patterns, read from ``fastchat/llm_judge/common.py`` without importing it (the module
imports openai and anthropic at the top), and its parse of real-looking judgments."""

from __future__ import annotations

import ast
import importlib.util
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.evaluation.judge import ONE_SCORE_PATTERN, ONE_SCORE_PATTERN_BACKUP, parse_rating


def _fastchat_patterns() -> SimpleNamespace:
    spec = importlib.util.find_spec("fastchat")
    if spec is None or spec.origin is None:
        pytest.skip("FastChat (fschat) is not installed (make install installs it)")
    source = Path(spec.origin).parent / "llm_judge" / "common.py"
    found = {}
    with warnings.catch_warnings():  # FastChat's own non-raw regex strings ('\\[')
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(source.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and \
                node.targets[0].id in ("one_score_pattern", "one_score_pattern_backup"):
            found[node.targets[0].id] = eval(compile(ast.Expression(node.value), str(source), "eval"), {"re": re})
    assert set(found) == {"one_score_pattern", "one_score_pattern_backup"}, f"{source} changed its patterns"
    return SimpleNamespace(**found)


common = _fastchat_patterns()

JUDGMENTS = [
    "The answer is helpful and accurate. Rating: [[8]]",
    "Rating: [[8.5]] and later [3]",
    "The response is poor. Rating: [4]",
    "Score: 7/10, no brackets",
    "[[10]] excellent",
    "Rating: [[ 6 ]]",
    "",
]

def fastchat_rating(judgment: str) -> float:
    """FastChat's single-answer grading rule (llm_judge/common.py, run_judge_single)."""
    match = re.search(common.one_score_pattern, judgment) or re.search(common.one_score_pattern_backup, judgment)
    return float(ast.literal_eval(match.groups()[0])) if match else -1.0


def test_patterns_and_ratings_are_fastchats():
    assert ONE_SCORE_PATTERN.pattern == common.one_score_pattern.pattern
    assert ONE_SCORE_PATTERN_BACKUP.pattern == common.one_score_pattern_backup.pattern
    for j in JUDGMENTS:
        assert parse_rating(j) == fastchat_rating(j), j
