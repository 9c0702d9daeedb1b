"""The report's per-cell section: every cell with its status, failure reason, resolved config and
provenance (folded), so a reader sees what ran, what failed and why, without opening the store."""

from __future__ import annotations

import html
import json
from typing import Any

from harness.sweeps.store import Store


def items_section(store: Store, sweep_id: str, items_page: str) -> list[str]:
    """HTML lines: a table of the done cells with, per evaluated round, a link to its items on ``items_page``
    (the completions, extracted answers and finish reasons behind each number of the leaderboard)."""
    from harness.results.export import item_anchor

    e = html.escape
    out = ["<h2>Per-item outputs</h2>",
           f'<p>Every item of every evaluated round: <a href="{e(items_page)}">{e(items_page)}</a> (searchable).</p>',
           "<table><tr><th>row</th><th>model</th><th>benchmark</th><th>seed</th><th>cell</th>"
           "<th>items per evaluated round</th></tr>"]
    for c in store.cells(sweep_id):
        if c["status"] != "done":
            continue
        rounds = sorted({r.get("round") for r in store.item_records(c["id"])}, key=lambda x: (x is None, x or 0))
        links = " ".join(f'<a href="{e(items_page)}#{e(item_anchor(c["id"], r))}">'
                         f'{"round " + str(r) if r is not None else "final"}</a>' for r in rounds) or "<i>none</i>"
        out.append(f"<tr><td>{e(str(c.get('label')))}</td><td>{e(c['model'])}</td><td>{e(c['benchmark'])}</td>"
                   f"<td>{c['seed']}</td><td>{e(c['id'][:12])}</td><td style='text-align:left'>{links}</td></tr>")
    out.append("</table>")
    return out


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
