"""The report's per-cell section: every cell with its status, failure reason, resolved config and
provenance (folded), so a reader sees what ran, what failed and why, without opening the store."""

from __future__ import annotations

import html
import json
from typing import Any

from harness.sweeps.store import Store


def cells_section(store: Store, sweep_id: str) -> list[str]:
    """HTML lines: failed cells with their reasons first, then every cell's config and provenance."""
    cells = store.cells(sweep_id)
    e = html.escape
    out: list[str] = []
    failed = [c for c in cells if c["status"] == "failed"]
    out.append(f"<h2>Failed cells ({len(failed)})</h2>")
    if failed:
        out.append("<table><tr><th>cell</th><th>row</th><th>benchmark</th><th>seed</th><th>reason</th></tr>")
        out += [f"<tr><td>{e(c['id'][:12])}</td><td>{e(str(c.get('label')))}</td><td>{e(c['benchmark'])}</td>"
                f"<td>{c['seed']}</td><td style='text-align:left'>{e(c.get('error') or '?')}</td></tr>" for c in failed]
        out.append("</table>")
    else:
        out.append("<p><i>none</i></p>")
    out.append("<h2>Cells: resolved config and provenance</h2>")
    for c in cells:
        blob: dict[str, Any] = {"config": c.get("config"), "provenance": c.get("provenance"),
                                "timings": c.get("timings"), "plugins": c.get("plugins")}
        out.append(f"<details><summary>{e(c['id'][:12])} {e(str(c.get('label')))} / {e(c['benchmark'])} / seed "
                   f"{c['seed']}: {e(c['status'])}</summary><pre>{e(json.dumps(blob, indent=1, default=str))}"
                   "</pre></details>")
    return out
