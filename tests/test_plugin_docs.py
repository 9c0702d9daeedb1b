"""docs/plugins.md documents every spec field, every suite key and every hook; the package is typed."""

from __future__ import annotations

import dataclasses

from harness.core import hookspecs
from harness.core.registry import BenchmarkSpec, EngineSpec, MethodSpec
from harness.suite.parse import TOP_KEYS
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "plugins.md").read_text()


def test_every_spec_field_hook_and_suite_key_is_documented():
    for spec in (MethodSpec, BenchmarkSpec, EngineSpec):
        for f in dataclasses.fields(spec):
            assert f"`{f.name}" in DOC or f" {f.name}=" in DOC or f"({f.name}," in DOC, (spec.__name__, f.name)
    for hook in (n for n in dir(hookspecs) if n.startswith("register_")):
        assert f"`{hook}(" in DOC, hook
    section = DOC.split("## Suite files")[1].split("\n## ")[0]
    for key in TOP_KEYS:
        assert f"\n{key} = " in section or f"[{key}" in section or f"[[{key}]]" in section, key
    for name in ("batch.logps[role]", "batch.lengths(role)", 'reference="none"', "check-plugin", "--rerun",
                 "HARNESS_DISABLE_PLUGINS", "docs/datasets.md", "datasets.md"):
        assert name in DOC, name
    assert "docs/plugins.md" in (ROOT / "README.md").read_text()


def test_py_typed_ships_with_the_package():
    assert (ROOT / "harness" / "py.typed").is_file()
    assert 'harness = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()
