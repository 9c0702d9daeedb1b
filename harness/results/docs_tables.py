"""The README's method and benchmark tables, generated from the registry (a test keeps them in sync).

    python -m harness.results.docs_tables            # print both tables
    python -m harness.results.docs_tables --write    # rewrite them in README.md between their markers

The tables sit between ``<!-- methods-table -->`` / ``<!-- benchmarks-table -->`` and ``<!-- end -->``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from harness.core.plugins import PluginHost, load

MARKERS = ("methods-table", "benchmarks-table")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def methods_table(host: PluginHost) -> str:
    rows = ["| method | family | data it needs | paper |", "|---|---|---|---|"]
    for name, s in sorted(host.registry.specs["method"].items(), key=lambda kv: (kv[1].family, kv[0])):
        rows.append(f"| `{name}` | {s.family or '-'} | {', '.join(sorted(s.needs)) or '-'} | {_cell(s.paper)} |")
    return "\n".join(rows)


def benchmarks_table(host: PluginHost) -> str:
    rows = ["| benchmark | version | provides for training | description |", "|---|---|---|---|"]
    for name, s in sorted(host.registry.specs["benchmark"].items()):
        desc = _cell(s.description.split(";")[0])[:90]
        rows.append(f"| `{name}` | {s.version} | {', '.join(sorted(s.provides)) or '-'} | {desc} |")
    return "\n".join(rows)


def tables(host: PluginHost) -> dict[str, str]:
    return {"methods-table": methods_table(host), "benchmarks-table": benchmarks_table(host)}


def update(text: str, host: PluginHost) -> str:
    """``text`` with each marked table replaced by the generated one."""
    for marker, table in tables(host).items():
        pattern = re.compile(rf"(<!-- {marker} -->\n).*?(\n<!-- end -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README has no <!-- {marker} --> ... <!-- end --> block")
        text = pattern.sub(lambda m, t=table: m.group(1) + t + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="rewrite the tables in README.md")
    ap.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[2] / "README.md")
    a = ap.parse_args(argv)
    host = load()
    if a.write:
        a.readme.write_text(update(a.readme.read_text(), host))
        print(f"updated {a.readme}")
    else:
        print("\n\n".join(tables(host).values()))


if __name__ == "__main__":
    main()
