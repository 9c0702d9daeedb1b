"""MT-Bench's judgment parser against the INSTALLED FastChat (``pip install fschat``): its patterns and its
parse of real-looking judgments. Skipped where FastChat is not installed (it is not a dependency)."""

from __future__ import annotations

import ast
import re

import pytest

from harness.judge import ONE_SCORE_PATTERN, ONE_SCORE_PATTERN_BACKUP, parse_rating

common = pytest.importorskip("fastchat.llm_judge.common", reason="FastChat (fschat) is not installed")

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
