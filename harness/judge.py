"""An LLM judge for benchmark plugins (MT-Bench's single-answer grading).

:func:`make_judge` (a judge model or endpoint), :func:`chat_prompt` (messages through a tokenizer's chat
template, or a plain transcript), :func:`parse_rating` (the ``[[N]]`` rating in a judgment),
:class:`JudgmentCache` and :func:`cache_key` (judgments stored once per question, answer and judge).
The code lives in ``harness.evaluation.judge``; this module is its public face.
"""

from harness.evaluation.judge import Judge, JudgmentCache, cache_key, chat_prompt, make_judge, parse_rating

__all__ = ["Judge", "JudgmentCache", "cache_key", "chat_prompt", "make_judge", "parse_rating"]
