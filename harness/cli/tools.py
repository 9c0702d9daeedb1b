"""Extra commands: ``harness schema`` (and the browse/compare commands of :mod:`harness.results.export` and
:mod:`harness.results.compare`). ``harness.cli.app`` calls :func:`register` at import."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _host(ctx: click.Context):  # noqa: ANN202 - harness.core.plugins.PluginHost
    from harness.core.plugins import get_host

    obj = ctx.find_root().obj or {}
    return obj.get("host") or get_host()


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write it here (default: stdout).")
@click.pass_context
def schema(ctx: click.Context, out: Path | None) -> None:
    """Print the JSON Schema of the suite format (for editors), for the plugins loaded here."""
    from harness.suite.schema import suite_schema

    text = json.dumps(suite_schema(_host(ctx)), indent=1) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        click.echo(f"schema: {out}", err=True)


STORE_HELP = "Results database (default: <results root>/harness.db)."


def _store(store: Path | None) -> Path:
    from harness.sweeps.store import default_store_path

    return store or default_store_path()


@click.command()
@click.option("--sweep", "sweep_id", default=None, help="Sweep id or unique prefix (default: the latest).")
@click.option("--store", type=click.Path(path_type=Path), default=None, help=STORE_HELP)
@click.option("--format", "fmt", type=click.Choice(["inspect", "html"]), default="inspect", show_default=True,
              help="inspect: one inspect_ai log per cell and benchmark (`inspect view --log-dir OUT`); html: one "
                   "searchable page of every item.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder (inspect) or .html file (default: <store folder>/<sweep>/inspect or items.html).")
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
def export(sweep_id: str | None, store: Path | None, fmt: str, out: Path | None, as_json: bool) -> None:
    """Export a sweep's per-item records (prompt, completion, target, score, judge output) for browsing."""
    from harness.core.errors import HarnessError
    from harness.results.export import export_html, export_inspect
    from harness.sweeps.store import Store

    with Store(_store(store), readonly=True) as db:  # a store in a read-only folder exports as well
        sid = db.sweep(sweep_id)["id"]
        base = Path(db.path).parent / sid
        target = out or (base / "inspect" if fmt == "inspect" else base / "items.html")
        flag = "--out" if out is not None else "the default --out"
        if fmt == "html" and target.is_dir():
            raise HarnessError(f"{flag} {target}: is a folder; give a .html file path")
        if fmt == "inspect" and target.exists() and not target.is_dir():
            raise HarnessError(f"{flag} {target}: is a file; give a folder for the inspect logs")
        try:
            if fmt == "inspect":
                paths = export_inspect(db, sid, target)
            else:
                paths = [export_html(db, sid, target)]
        except OSError as exc:
            raise HarnessError(f"{flag} {target}: can't write there ({exc.strerror or exc}); give a writable "
                               f"--out") from None
    if as_json:
        click.echo(json.dumps([str(p) for p in paths]))
        return
    for p in paths:
        click.echo(str(p))
    if fmt == "inspect":
        click.echo(f"{len(paths)} logs; browse with: inspect view --log-dir {paths[0].parent if paths else out}",
                   err=True)


@click.command()
@click.argument("sweep_a")
@click.argument("sweep_b")
@click.option("--store", type=click.Path(path_type=Path), default=None, help=STORE_HELP)
@click.option("--store-b", type=click.Path(path_type=Path), default=None, help="SWEEP_B's store (default: --store).")
@click.option("--metric", "metrics", multiple=True, help="Only this metric (name or benchmark/name); repeatable.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "html", "json"]), default="table",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def compare(sweep_a: str, sweep_b: str, store: Path | None, store_b: Path | None, metrics: tuple[str, ...],
            fmt: str, as_json: bool) -> None:
    """Compare two sweeps row by row: B - A per metric with a 95% CI, paired by seed where the rows match."""
    from harness.results.compare import compare as run_compare
    from harness.results.compare import render
    from harness.sweeps.store import Store

    with Store(_store(store), readonly=True) as db:  # read-only: a store in a read-only folder compares too
        if store_b is not None and store_b != store:
            from harness.results.compare import compare_stores

            with Store(store_b, readonly=True) as db_b:
                result = compare_stores(db, sweep_a, db_b, sweep_b, list(metrics))
        else:
            result = run_compare(db, sweep_a, sweep_b, list(metrics))
    if as_json or fmt == "json":
        click.echo(json.dumps(result, indent=1))
    else:
        click.echo(render(result, fmt))


def register(cli: click.Group) -> None:
    """Attach the extra commands to the ``harness`` group."""
    for cmd in (schema, export, compare, plan):
        cli.add_command(cmd)


@click.command()
@click.option("--sweep", "sweep_id", default=None, help="Sweep id or unique prefix (default: the latest).")
@click.option("--store", type=click.Path(path_type=Path), default=None, help=STORE_HELP)
@click.option("--baseline", default=None, metavar="METHOD", help="Compare to this method label (default: the suite's).")
@click.option("--effect", type=float, default=None, help="Also say how many seeds detect a difference this large.")
@click.option("--power", type=click.FloatRange(0.5, 0.99), default=0.8, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(sweep_id: str | None, store: Path | None, baseline: str | None, effect: float | None, power: float,
         as_json: bool) -> None:
    """How many seeds? Per comparison to the baseline, the smallest difference detectable at --power with the
    sweep's seeds and items, and the seeds needed to detect --effect (from the sweep's variance components)."""
    from harness.core.errors import HarnessError
    from harness.results.leaderboard import build
    from harness.results.plan import plan as make_plan
    from harness.results.plan import render as render_plan
    from harness.sweeps.store import Store

    if effect is not None and effect <= 0:
        raise HarnessError(f"--effect {effect:g}: give a difference > 0 (in the metric's units)")
    with Store(_store(store), create=False, readonly=True) as db:
        lb = build(db, sweep_id, baseline=baseline)
        if not lb.baseline:
            raise HarnessError("plan: no baseline; pass --baseline METHOD (or set [leaderboard] baseline)")
        rows = make_plan(lb, effect, power)
    if as_json:
        click.echo(json.dumps({"sweep": lb.sweep["id"], "baseline": lb.baseline, "effect": effect, "power": power,
                               "comparisons": rows}, indent=1))
    else:
        click.echo(render_plan(rows, effect, power))
