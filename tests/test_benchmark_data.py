"""harness.benchmark_data: the copy of a benchmark's data its ``path`` names, read once (gzip too), hashed, and
the checks every benchmark shares (limit, declared parameter bounds)."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import param
from harness.core.data import read_jsonl
from harness.core.errors import HarnessError
from harness.evaluation import benchmark_data as bd

ROWS = [{"question": "q1", "answer": "#### 1"}, {"question": "q2", "answer": "#### 2"}]
TEXT = "".join(json.dumps(r) + "\n" for r in ROWS)


def test_source_names_the_copy() -> None:
    emb = Path("/pkg/data")
    assert bd.source(None, embedded=emb, hub="org/x") == bd.Source("embedded", str(emb))
    assert bd.source("hf:", embedded=emb, hub="org/x", hub_config="main") == bd.Source("hub", "org/x", "main")
    assert bd.source("hf:me/y", embedded=emb, hub="org/x") == bd.Source("hub", "me/y", None)
    assert bd.source("hf:me/y:cfg", embedded=emb, hub="org/x", hub_config="main") == bd.Source("hub", "me/y", "cfg")
    assert bd.source("~/d", embedded=emb, hub="org/x") == bd.Source("path", str(Path("~/d").expanduser()))
    parts = {"test": "ab" * 32}
    assert bd.Source("hub", "me/y", "cfg").data_copy(parts).source == "me/y:cfg"
    assert bd.Source("hub", "me/y").data_copy(parts).source == "me/y"
    assert bd.Source("embedded", str(emb)).data_copy(parts).source == str(emb)


def test_read_jsonl_reads_gzip_transparently_and_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(TEXT)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(TEXT.encode()))
    assert list(read_jsonl(tmp_path / "a.jsonl.gz")) == list(read_jsonl(tmp_path / "a.jsonl")) == ROWS
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress((TEXT + '{"question": "q3"}\n').encode()))
    with pytest.raises(HarnessError, match=r"b.jsonl.gz:3: missing field\(s\) answer"):
        list(read_jsonl(tmp_path / "b.jsonl.gz", required=("question", "answer")))
    (tmp_path / "c.jsonl.gz").write_bytes(b"not gzip at all\n")
    with pytest.raises(HarnessError, match=r"c.jsonl.gz: cannot read it"):
        bd.read_rows(tmp_path / "c.jsonl.gz")


def test_load_part_from_a_folder_a_file_and_the_embedded_copy(tmp_path: Path) -> None:
    sha = hashlib.sha256(TEXT.encode()).hexdigest()
    (tmp_path / "test.jsonl.gz").write_bytes(gzip.compress(TEXT.encode()))
    kw = {"files": ("test.jsonl", "test.jsonl.gz"), "required": ("question", "answer"), "where": "bench",
          "hint": "--set path=..."}
    rows = bd.load_part(bd.source(str(tmp_path), embedded=tmp_path, hub="x"), "test", **kw)
    assert list(rows) == ROWS and rows.sha256 == sha  # the content hash is the uncompressed file's sha256sum
    assert bd.read_rows(tmp_path / "test.jsonl.gz", required=("question", "answer")) is rows  # cached per file
    assert bd.load_part(bd.Source("embedded", str(tmp_path)), "test", shipped={"test": sha}, **kw) is rows
    with pytest.raises(HarnessError, match=r"bench: .* does not hold the shipped data \(test: sha256 "
                                           r"\w{12}, expected 000000000000\); reinstall") as err:
        bd.load_part(bd.Source("embedded", str(tmp_path)), "test", shipped={"test": "0" * 64}, **kw)
    assert "\n" not in err.value.message
    with pytest.raises(HarnessError, match=r"bench: path=.* has no train.jsonl; --set path="):
        bd.load_part(bd.Source("path", str(tmp_path)), "train", **{**kw, "files": ("train.jsonl",)})
    with pytest.raises(HarnessError, match=r"bench: path=.*nowhere: no such file or directory"):
        bd.load_part(bd.Source("path", str(tmp_path / "nowhere")), "test", **kw)


def test_an_unreachable_hub_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*_a, **_k):
        raise ConnectionError("no route to host\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)  # the hub is outside: faked
    with pytest.raises(HarnessError) as err:
        bd.hub_rows("org/nowhere", None, "test", where="bench", hint="use path=")
    msg = err.value.message
    assert "\n" not in msg and "org/nowhere" in msg and "no route to host" in msg and msg.endswith("use path=")
    monkeypatch.setattr(datasets, "load_dataset", lambda *_a, **_k: [{"question": 1}])
    with pytest.raises(HarnessError, match=r"row 0: missing or mistyped field\(s\) answer, question; h"):
        bd.hub_rows("org/typed", None, "test", required=("answer",), types={"question": str}, where="b", hint="h")


@dataclass(frozen=True)
class P:
    limit: int | None = param(None, "items", ge=1)
    rate: float = param(0.5, "a share", ge=0, le=1)
    name: str = param("x", "no bounds")


def test_declared_bounds_are_checked_where_a_value_is_given_and_the_limit_by_check_limit() -> None:
    from harness.core.params import apply_overrides

    apply_overrides(P, {"limit": 1, "rate": 1.0}, where="bench")
    bd.check_limit(3, "bench")
    for key, value, bound in (("limit", 0, ">= 1"), ("rate", 1.5, "in [0, 1]"), ("rate", -0.1, "in [0, 1]")):
        with pytest.raises(HarnessError, match=rf"bench: parameter '{key}' must be {re.escape(bound)}, got "):
            apply_overrides(P, {key: value}, where="bench")
    with pytest.raises(HarnessError, match="bench: limit must be a positive number of items"):
        bd.check_limit(0, "bench")
    from harness.core.context import EvalContext

    for bad in (0, -2):  # an evaluation's limit is checked once, when its context is made, for every benchmark
        with pytest.raises(HarnessError, match=rf"^evaluation: limit must be a positive number of items .*got {bad}$"):
            EvalContext(engine=None, lm=None, encoder=None, params=P(), seed=0, limit=bad)
    assert EvalContext(engine=None, lm=None, encoder=None, params=P(limit=3), seed=0).limit == 3


def test_select_keeps_the_first_items() -> None:
    assert bd.select([1, 2, 3], 2, where="b") == [1, 2] and bd.select((1, 2), None, where="b") == (1, 2)
    with pytest.raises(HarnessError, match="b: no items to evaluate"):
        bd.select([], None, where="b")
