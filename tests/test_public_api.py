"""The public API for plugins (``harness`` and its toolkit modules): small, typed, lazy, and free of side effects.

mypy reads a plugin that imports every public name; a name it types as ``Any`` (what a bare lazy
``__getattr__`` gives) fails the test. The built-in plugins use nothing the API does not export.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parents[1]


def _public() -> dict[str, list[str]]:
    """Module -> its public names: ``harness`` (less the toolkits) and each toolkit module's ``__all__``."""
    out = {"harness": [n for n in harness.__all__ if n not in harness._TOOLKITS]}
    for t in harness._TOOLKITS:
        out[f"harness.{t}"] = list(importlib.import_module(f"harness.{t}").__all__)
    return out


def test_the_api_is_small_and_every_toolkit_is_a_real_module_with_all():
    names = _public()
    assert 30 <= len(names["harness"]) <= 40, len(names["harness"])
    for module, exported in names.items():
        mod = importlib.import_module(module)
        assert exported and len(set(exported)) == len(exported), module
        for name in exported:
            assert getattr(mod, name) is not None, f"{module}.{name}"
    import harness.pg
    from harness import pg
    from harness.pg import gae

    assert pg is harness.pg and gae is harness.pg.gae
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        harness.nope  # noqa: B018


def test_the_type_checking_block_declares_exactly_the_lazy_names():
    """What mypy sees (the ``TYPE_CHECKING`` imports) is what ``__getattr__`` resolves at run time."""
    tree = ast.parse((ROOT / "harness" / "__init__.py").read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    declared: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom), ast.unparse(node)
        for a in node.names:
            assert a.asname == a.name, f"re-export {a.name} as itself ({ast.unparse(node)})"
            declared[a.name] = node.module if node.module != "harness" else f"harness.{a.name}"
    expected = {**harness._NAMES, **{t: f"harness.{t}" for t in harness._TOOLKITS}}
    assert declared == expected


def test_importing_harness_changes_nothing_outside_it_and_loads_no_torch():
    code = ("import os, sys; hooks = list(sys.meta_path); import harness; from harness import hookimpl, param, MethodSpec; "
            "assert 'OMP_WAIT_POLICY' not in os.environ, os.environ['OMP_WAIT_POLICY']; "
            "assert sys.meta_path == hooks, sys.meta_path; assert 'torch' not in sys.modules; print('ok')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert res.stdout.strip() == "ok", res.stderr


def _plugin_source(public: dict[str, list[str]]) -> tuple[str, list[str]]:
    """A plugin that imports every public name and asks mypy for each one's type (one ``reveal_type`` a line)."""
    lines = ["import harness"]
    lines += [f"import {m}" for m in public if m != "harness"]
    for module, names in public.items():
        lines.append(f"from {module} import {', '.join(names)}")
    lines.append("from harness import " + ", ".join(harness._TOOLKITS))
    shown: list[str] = []
    for module, names in public.items():
        for name in names:
            lines.append(f"reveal_type({name})  # {module}")
            shown.append(f"{module}.{name}")
    for t in harness._TOOLKITS:  # the module itself, both ways a plugin reaches it
        lines += [f"reveal_type({t})", f"reveal_type(harness.{t})"]
        shown += [f"harness.{t} (from harness import)", f"harness.{t} (attribute)"]
    return "\n".join(lines) + "\n", shown


def test_mypy_sees_a_real_type_for_every_public_name(tmp_path):
    public = _public()
    source, shown = _plugin_source(public)
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(source)
    first = source.count("\n") - len(shown) + 1  # the line of the first reveal_type
    # harness and pluggy are analysed (their own errors silenced); other packages (torch, transformers, ...) are not
    # read, so this stays fast: their types are Any, which may appear inside a signature but never as a name's type.
    (tmp_path / "mypy.ini").write_text(
        f"[mypy]\nmypy_path = {ROOT}\nfollow_imports = skip\nignore_missing_imports = True\n"
        f"cache_dir = {tmp_path / 'cache'}\n\n[mypy-harness.*,pluggy.*]\nfollow_imports = silent\n")
    res = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"),
                          "--no-error-summary", "--hide-error-context", str(plugin)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    revealed: dict[str, str] = {}
    errors = []
    for line in res.stdout.splitlines():
        m = re.match(r".*my_plugin\.py:(\d+): (\w+): (.*)$", line)
        if not m:
            continue
        lineno, kind, text = int(m[1]), m[2], m[3]
        t = re.fullmatch(r'Revealed type is "(.*)"', text)
        if kind == "note" and t:
            revealed[shown[lineno - first]] = t[1]
        elif kind == "error":
            errors.append(line)
    assert errors == [], "\n".join(errors)
    assert sorted(revealed) == sorted(shown), res.stdout[-3000:] + res.stderr[-2000:]
    # Any is what a bare lazy __getattr__ gives (object if it is annotated so): neither says what the name is
    untyped = {name: t for name, t in revealed.items() if t in ("Any", "object", "builtins.object")}
    assert untyped == {}, f"public names mypy does not type: {untyped}"
    # a spot check that the types are the real ones, not merely not-Any
    assert "harness.core.registry.MethodSpec" in revealed["harness.MethodSpec"]
    assert "harness.models.logprobs.LogProbBatch" in revealed["harness.LogProbBatch"]
    assert revealed["harness.pg (attribute)"] == "types.ModuleType" or "harness.pg" in revealed["harness.pg (attribute)"]


def test_builtin_plugins_use_only_what_the_api_exports():
    """Every ``from harness[.toolkit] import x`` and every ``toolkit.x`` in plugins/ names an exported name."""
    public = _public()
    bad = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules: dict[str, str] = {}  # local name -> toolkit module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in public:
                for a in node.names:
                    if node.module == "harness" and a.name in harness._TOOLKITS:
                        modules[a.asname or a.name] = f"harness.{a.name}"
                    elif a.name not in public[node.module]:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{a.name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                module = modules[node.value.id]
                if node.attr not in public[module]:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module}.{node.attr}")
    assert bad == [], "plugins use names the public API does not export:\n" + "\n".join(bad)
