"""Which copy of a benchmark's data an evaluation read: ``rows_sha256`` and ``DataCopy`` (harness.core.data)."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from harness import DataCopy, HarnessError, read_jsonl, rows_sha256


def test_rows_sha256_is_the_sha256sum_of_the_canonical_jsonl(tmp_path) -> None:
    rows = [{"question": "1 + 1?", "answer": "#### 2"}, {"question": "caf\u00e9", "answer": "#### 3"}]
    text = '{"question": "1 + 1?", "answer": "#### 2"}\n{"question": "caf\\u00e9", "answer": "#### 3"}\n'
    assert rows_sha256(rows) == hashlib.sha256(text.encode()).hexdigest()
    assert rows_sha256([]) == hashlib.sha256(b"").hexdigest()
    assert rows_sha256(rows[::-1]) != rows_sha256(rows)  # order is content
    assert rows_sha256([{"answer": "#### 2", "question": "1 + 1?"}]) != rows_sha256(rows[:1])  # so is key order
    # The same rows compressed, or written with other spacing, hash the same once read.
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "b.jsonl").write_text(text.replace('", "', '","').replace("\n", "\n\n"))
    assert rows_sha256(read_jsonl(tmp_path / "a.jsonl.gz")) == rows_sha256(read_jsonl(tmp_path / "b.jsonl"))
    assert rows_sha256(read_jsonl(tmp_path / "b.jsonl")) == rows_sha256(rows)


def test_data_copy_hash_record_and_line() -> None:
    one = DataCopy("embedded", "/pkg/data/x.jsonl.gz", {"problems": "ab" * 32})
    assert one.sha256 == "ab" * 32  # one part: its own hash (the file's sha256sum)
    two = DataCopy("path", "/home/me/gsm8k", {"train": "1" * 64, "test": "2" * 64})
    by_hand = hashlib.sha256(f"test:{'2' * 64}\ntrain:{'1' * 64}\n".encode()).hexdigest()
    assert two.sha256 == by_hand == DataCopy("hub", "openai/gsm8k", {"test": "2" * 64, "train": "1" * 64}).sha256
    assert DataCopy("path", "/x", {"train": "1" * 64, "test": "3" * 64}).sha256 != two.sha256
    assert two.as_dict() == {"copy": "path", "source": "/home/me/gsm8k", "sha256": by_hand,
                             "parts": {"train": "1" * 64, "test": "2" * 64}}
    assert one.describe() == f"embedded copy (sha256 {'ab' * 6})"
    assert two.describe() == f"path copy /home/me/gsm8k (sha256 {by_hand[:12]})"
    with pytest.raises(HarnessError, match="one of embedded, path, hub"):
        DataCopy("local", "/x", {})
