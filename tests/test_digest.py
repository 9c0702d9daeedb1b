"""One digest helper (harness.core.digest) for every hash the harness keeps, and the values it replaced unchanged.

Each "unchanged" test spells out with hashlib the formula the site used before it went through the helper:
ids, cache keys and code hashes recorded under the old formula must still match.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness.core.digest import FULL, Hasher, canonical_json, digest

ROOT = Path(__file__).resolve().parents[1]
ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc"), FIPS 180-2


def test_digest_of_bytes_text_and_values() -> None:
    assert digest(b"abc", FULL) == digest("abc", 64) == Hasher(b"abc").hex(64) == ABC
    assert digest("abc") == ABC[:16] and digest(b"abc", 8) == ABC[:8] and digest(b"abc", 1) == "b"
    value = {"b": [1, "caf\u00e9"], "a": None}
    assert canonical_json(value) == '{"a": null, "b": [1, "caf\\u00e9"]}'
    assert digest(value, 64) == hashlib.sha256(canonical_json(value).encode()).hexdigest()
    assert digest({"a": None, "b": [1, "caf\u00e9"]}, 64) == digest(value, 64)  # key order is not content
    assert digest([1, 2]) != digest([2, 1])  # list order is
    assert digest({"path": Path("/x")}) == digest({"path": "/x"})  # not JSON: its str
    for bad in (0, 65):
        with pytest.raises(ValueError, match="digest length"):
            digest(b"abc", bad)


def test_a_hasher_fed_in_parts_equals_the_digest_of_the_whole() -> None:
    h = Hasher(b"a")
    h.update("b")
    h.update(memoryview(b"c"))
    assert h.hex(64) == ABC and h.raw() == bytes.fromhex(ABC)
    assert Hasher().hex(64) == hashlib.sha256(b"").hexdigest()


def test_cache_keys_and_digests_are_unchanged() -> None:
    from harness.core.cache import cache_key, prompts_digest, rows_digest
    from harness.core.data import Prompt, Row, Sequence

    parts = ("model", "tiny:nano", 0, {"b": 1, "a": "caf\u00e9"}, None)
    old = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    assert cache_key(*parts) == hashlib.sha256(old.encode()).hexdigest()[:24]

    def ids(values: list[int]) -> bytes:
        return len(values).to_bytes(4, "little") + np.asarray(values, dtype="<i8").tobytes()

    prompts = [SimpleNamespace(ids=[5, 6, 7]), SimpleNamespace(ids=[])]
    assert prompts_digest(prompts) == hashlib.sha256(ids([5, 6, 7]) + ids([])).hexdigest()[:24]
    row = Row({"rejected": Sequence(Prompt((1, 2)), (4, 5)), "chosen": Sequence(Prompt((1, 2)), (3,))})
    by_hand = b"chosen\0" + ids([1, 2]) + ids([3]) + b"rejected\0" + ids([1, 2]) + ids([4, 5]) + b"\1"
    assert rows_digest([row]) == hashlib.sha256(by_hand).hexdigest()[:24]


def test_item_ids_judge_keys_and_tokenizer_fingerprints_are_unchanged() -> None:
    from harness.core.context import item_id
    from harness.evaluation.judge import cache_key as judge_key
    from harness.training.irl_reward import tokenizer_fingerprint

    content = ("What is 2 + 2?", {"turn": 1, "lang": "fran\u00e7ais"})
    assert item_id(*content) == hashlib.sha256(
        json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]
    parts = {"model": "gpt", "prompt": "caf\u00e9", "n": 2}
    assert judge_key(**parts) == hashlib.sha256(
        json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")).hexdigest()
    tok = SimpleNamespace(get_vocab=lambda: {"\u00e9t\u00e9": 1, "a": 0})
    assert tokenizer_fingerprint(tok) == hashlib.sha256(
        json.dumps([["a", 0], ["\u00e9t\u00e9", 1]], ensure_ascii=False).encode()).hexdigest()[:16]


def test_code_hashes_and_file_keys_are_unchanged(tmp_path) -> None:
    from harness.core.identity import HASH_CHARS, hash_files
    from harness.models.loading import gguf_cache_path

    (tmp_path / "pkg").mkdir()
    a, b = tmp_path / "pkg" / "a.py", tmp_path / "pkg" / "b.py"
    a.write_bytes(b"x = 1\n")
    b.write_bytes(b"y = 2\n")
    h = hashlib.sha256()
    for path in (a, b):
        h.update(f"pkg/{path.name}".encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    assert HASH_CHARS == 12 and hash_files([b, a]) == h.hexdigest()[:12]
    st = a.stat()
    key = hashlib.sha256(f"{a.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    assert gguf_cache_path(a).name == f"a-{key}"


def _imports_hashlib(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "hashlib" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "hashlib":
            return True
    return False


# Plugins hash through the public API (``from harness import digest``).
PLUGINS_HASHING_ON_THEIR_OWN: set[str] = set()


def test_no_module_but_the_digest_helper_imports_hashlib() -> None:
    """Every hash of the harness goes through harness.core.digest (top-level and function-local imports)."""
    found = {str(p.relative_to(ROOT)) for folder in ("harness", "plugins") for p in (ROOT / folder).rglob("*.py")
             if "__pycache__" not in p.parts and _imports_hashlib(p)}
    assert found - PLUGINS_HASHING_ON_THEIR_OWN == {"harness/core/digest.py"}, \
        f"hash with harness.core.digest (digest / Hasher) instead: {sorted(found)}"
