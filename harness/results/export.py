"""Browse a sweep's per-item records: inspect_ai eval logs per cell, or one self-contained HTML page.

``harness export --format inspect`` writes one inspect_ai log (JSON, ``version: 2``) per done cell and
evaluated benchmark into a folder, so ``inspect view --log-dir DIR`` browses every item: its prompt, the
completion, the target, the score and (MT-Bench) the judge's output. ``--format html`` writes one page
with every item of every cell, a search box and filters by cell and benchmark (no network, no scripts
from elsewhere). Records are stored as each benchmark wrote them; :func:`sample_view` reads the common
field names (question/prompt/input, completion/completions/output, target/answer, correct/passed/score).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from pathlib import Path
from typing import Any

from harness.sweeps.store import Store

INPUT_KEYS = ("question", "prompt", "input", "prompt_text", "turns", "state")
OUTPUT_KEYS = ("completion", "completions", "answers", "output", "text", "action", "actions")
TARGET_KEYS = ("target", "answer", "reference", "canonical_solution")
SCORE_KEYS = ("correct", "passed", "score", "rating", "reward", "pass@1", "exact_match")
JUDGE_KEYS = ("judgments", "judgment", "judge_output", "explanation", "results")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n---\n".join(value)
    return json.dumps(value, default=str)


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for k in keys:
        if k in record and record[k] is not None:
            return k, record[k]
    return None, None


def _score_value(value: Any) -> Any:
    """An inspect score value: a number, a string, or a dict of numbers (e.g. per filter)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _score_value(v) for k, v in value.items() if isinstance(_score_value(v), (int, float, str))}
    return _text(value)


def sample_view(record: dict[str, Any]) -> dict[str, Any]:
    """The common fields of a benchmark's per-item record: input, output, target, score, judge, the rest."""
    ik, inp = _first(record, INPUT_KEYS)
    ok, out = _first(record, OUTPUT_KEYS)
    tk, target = _first(record, TARGET_KEYS)
    sk, score = _first(record, SCORE_KEYS)
    jk, judge = _first(record, JUDGE_KEYS)
    used = {ik, ok, tk, sk, jk, "benchmark"}
    return {"input": _text(inp), "output": _text(out), "target": _text(target), "score_name": sk or "score",
            "score": _score_value(score) if score is not None else None, "judge": _text(judge) if judge else "",
            "metadata": {k: v for k, v in record.items() if k not in used}}


def _iso(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts or 0, tz=dt.timezone.utc).isoformat()


def _cell_records(db: Store, cell_id: str) -> list[dict[str, Any]]:
    rows = db.db.execute("SELECT record_json FROM records WHERE cell_id=? ORDER BY idx", (cell_id,)).fetchall()
    return [json.loads(r["record_json"]) for r in rows]


def _cell_metrics(db: Store, cell_id: str) -> dict[str, dict[str, float]]:
    rows = db.db.execute("SELECT benchmark, metric, value FROM metrics WHERE cell_id=? AND "
                         "round=(SELECT MAX(round) FROM metrics WHERE cell_id=?)", (cell_id, cell_id)).fetchall()
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(r["benchmark"], {})[r["metric"]] = r["value"]
    return out


def inspect_log(cell: dict[str, Any], benchmark: str, records: list[dict[str, Any]], metrics: dict[str, float],
                sweep_id: str) -> dict[str, Any]:
    """One cell's evaluation on one benchmark as an inspect_ai ``EvalLog`` (JSON, version 2)."""
    cfg = cell.get("config") or {}
    created = _iso(cell.get("finished_at") or cell.get("created_at"))
    samples = []
    for i, rec in enumerate(records):
        v = sample_view(rec)
        score = {"value": v["score"] if v["score"] is not None else 0, "answer": v["output"][:2000],
                 "explanation": v["judge"] or None, "metadata": {}}
        samples.append({
            "id": rec.get("index", rec.get("task_id", rec.get("question_id", i))), "epoch": 1,
            "input": v["input"], "target": v["target"],
            "messages": [{"role": "user", "content": v["input"], "source": "input"},
                         {"role": "assistant", "content": v["output"], "source": "generate"}],
            "output": {"model": cfg.get("model", ""), "choices": [
                {"message": {"role": "assistant", "content": v["output"], "source": "generate"},
                 "stop_reason": "max_tokens" if rec.get("finish_reason") == "length" else "stop"}]},
            "scores": {v["score_name"]: score},
            "metadata": json.loads(json.dumps(v["metadata"], default=str)),
            "store": {}, "events": [], "model_usage": {},
        })
    scores = [{"name": name, "scorer": benchmark, "params": {}, "metrics": {
        name: {"name": name, "value": value, "params": {}}}} for name, value in sorted(metrics.items())
        if value is not None]
    return {
        "version": 2,
        "status": "success",
        "eval": {
            "run_id": sweep_id, "created": created, "task": benchmark, "task_id": f"{cell['id']}-{benchmark}",
            "task_version": 0, "task_args": {}, "solver": cell.get("label") or cfg.get("method"),
            "dataset": {"name": benchmark, "samples": len(records), "shuffled": False},
            "model": cfg.get("model", ""), "model_args": {}, "config": {},
            "metadata": {"cell": cell["id"], "sweep": sweep_id, "label": cell.get("label"), "config": cfg,
                         "provenance": cell.get("provenance")},
            "packages": {"alignment-harness": ((cell.get("provenance") or {}).get("versions") or {}).get(
                "alignment-harness") or ""},
        },
        "plan": {"name": "plan", "steps": [{"solver": cell.get("label") or cfg.get("method", ""), "params": {}}],
                 "config": {}},
        "results": {"total_samples": len(records), "completed_samples": len(records), "scores": scores},
        "stats": {"started_at": _iso(cell.get("started_at")), "completed_at": created, "model_usage": {}},
        "samples": samples,
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "x"


def export_inspect(db: Store, sweep_id: str | None, out_dir: Path) -> list[Path]:
    """Write one inspect_ai log per done cell and benchmark into ``out_dir``; returns the files."""
    sweep = db.sweep(sweep_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for cell in db.cells(sweep["id"]):
        if cell["status"] != "done":
            continue
        records = _cell_records(db, cell["id"])
        metrics = _cell_metrics(db, cell["id"])
        for bench in sorted({r.get("benchmark", "") for r in records} | set(metrics)):
            recs = [r for r in records if r.get("benchmark", "") == bench]
            log = inspect_log(cell, bench, recs, metrics.get(bench, {}), sweep["id"])
            stamp = log["eval"]["created"][:19].replace(":", "-")
            path = out_dir / f"{stamp}_{_slug(bench)}_{_slug(cell.get('label') or '')}_{cell['id'][:8]}.json"
            path.write_text(json.dumps(log, indent=1, default=str))
            written.append(path)
    return written


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>
body{{font-family:system-ui,sans-serif;margin:1.5em}} .item{{border:1px solid #ccc;margin:.6em 0;padding:.5em}}
pre{{white-space:pre-wrap;margin:.2em 0;background:#f6f6f6;padding:.3em}} .meta{{color:#555;font-size:.9em}}
input,select{{font-size:1em;margin-right:.5em}}
</style></head><body><h1>{title}</h1>
<p><input id="q" placeholder="search prompts, completions, targets" size="50">
<select id="cell"><option value="">all cells</option>{cell_options}</select>
<select id="bench"><option value="">all benchmarks</option>{bench_options}</select> <span id="n"></span></p>
{items}
<script>
const q=document.getElementById('q'),c=document.getElementById('cell'),b=document.getElementById('bench');
function f(){{let n=0;for(const e of document.querySelectorAll('.item')){{
const ok=(!c.value||e.dataset.cell===c.value)&&(!b.value||e.dataset.bench===b.value)&&
(!q.value||e.textContent.toLowerCase().includes(q.value.toLowerCase()));e.style.display=ok?'':'none';n+=ok;}}
document.getElementById('n').textContent=n+' items';}}
q.oninput=c.onchange=b.onchange=f;f();
</script></body></html>"""


def item_anchor(cell_id: str, round_: Any) -> str:
    """The id of a cell's first item of one evaluated round on the items page."""
    return f"cell-{cell_id}-r{round_ if round_ is not None else 'final'}"


def export_html(db: Store, sweep_id: str | None, out: Path) -> Path:
    """One self-contained page with every item of every done cell of the sweep (every evaluated round, with the
    extracted answer and ``finish_reason`` where the benchmark records them), searchable."""
    sweep = db.sweep(sweep_id)
    e = html.escape
    items, cells, benches = [], [], set()
    for cell in db.cells(sweep["id"]):
        if cell["status"] != "done":
            continue
        name = f"{cell.get('label')} / {cell['benchmark']} / seed {cell['seed']} ({cell['id'][:8]})"
        cells.append((cell["id"], name))
        anchored: set[Any] = set()
        for rec in db.item_records(cell["id"]):  # every evaluated round's items, earliest first
            v = sample_view(rec)
            bench = str(rec.get("benchmark", ""))
            benches.add(bench)
            rnd = rec.get("round")
            anchor = ""
            if rnd not in anchored:  # the report links here: items.html#cell-<id>-r<round>
                anchored.add(rnd)
                anchor = f' id="{e(item_anchor(cell["id"], rnd))}"'
            extracted, finish = rec.get("extracted"), rec.get("finish_reason")
            items.append(
                f'<div class="item"{anchor} data-cell="{e(cell["id"])}" data-bench="{e(bench)}">'
                f'<div class="meta">{e(name)} &middot; {e(bench)}'
                + (f" &middot; round {e(str(rnd))}" if rnd is not None else "")
                + f' &middot; {e(v["score_name"])}: {e(json.dumps(v["score"], default=str))}'
                + (f" &middot; finish_reason: {e(str(finish))}" if finish is not None else "") + "</div>"
                f"<b>input</b><pre>{e(v['input'])}</pre><b>output</b><pre>{e(v['output'])}</pre>"
                + (f"<b>extracted answer</b><pre>{e(_text(extracted))}</pre>" if extracted is not None else "")
                + (f"<b>target</b><pre>{e(v['target'])}</pre>" if v["target"] else "")
                + (f"<b>judge</b><pre>{e(v['judge'])}</pre>" if v["judge"] else "")
                + "</div>")
    page = _PAGE.format(
        title=e(f"sweep {sweep['id']}: {len(items)} items"),
        cell_options="".join(f'<option value="{e(i)}">{e(n)}</option>' for i, n in cells),
        bench_options="".join(f'<option value="{e(b)}">{e(b)}</option>' for b in sorted(benches)),
        items="\n".join(items))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out
