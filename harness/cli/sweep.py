"""The sweep commands: ``harness sweep``, ``harness leaderboard``, ``harness report``, ``harness sweeps``.

``harness.cli.app`` calls :func:`register` at import, which attaches them to its group.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from tabulate import tabulate

from harness.core.errors import HarnessError

if TYPE_CHECKING:
    from harness.sweeps.executors import Executor

STORE_HELP = "Results database (default: $HARNESS_RESULTS/harness.db, i.e. results/harness.db)."

# The exit statuses of `harness sweep` (and, for 2 and 4, of every command); listed in `harness --help`.
EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNFINISHED, EXIT_OS_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


class SystemFailure(click.ClickException):
    """The machine, not the input: a full disk, an I/O error. One line, exit 4; what was recorded is kept."""

    exit_code = EXIT_OS_ERROR


@contextmanager
def os_errors(what: str) -> Iterator[None]:
    """Turn a full disk or another OS/SQLite I/O error into one line (exit 4) instead of a traceback."""
    try:
        yield
    except HarnessError:
        raise
    except sqlite3.DatabaseError as exc:
        if not isinstance(exc, sqlite3.OperationalError):
            raise SystemFailure(f"{what}: the results database is damaged ({exc}); copy the file and run "
                                f"`sqlite3 FILE .recover`") from None
        raise SystemFailure(f"{what}: the results database failed ({exc}); the cells recorded so far are "
                            f"kept; fix the cause (e.g. free disk space) and rerun to resume") from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise SystemFailure(f"{what}:{where} {exc.strerror or exc}; the cells recorded so far are kept; fix the "
                            f"cause (e.g. free disk space) and rerun to resume") from None


def _warn(db: Any) -> None:
    for warning in getattr(db, "warnings", []):
        click.echo(f"warning: {warning}", err=True)


def failed_lines(db: Any, sweep_id: str | None) -> list[str]:
    """Lines listing a sweep's failed (and not yet done) cells, for under its leaderboard table."""
    sweep = db.sweep(sweep_id)
    cells = db.cells(sweep["id"])
    failed = [c for c in cells if c["status"] == "failed"]
    todo = [c for c in cells if c["status"] in ("pending", "running")]
    out = []
    if failed:
        out.append(f"{len(failed)} of {len(cells)} cells failed (not in the table; --retry-failed reruns them):")
        out += [f"  {c['id']}  {c['label']}  {c['benchmark']}  seed={c['seed']}: {(c['error'] or '')[:200]}"
                for c in failed]
    if todo:
        out.append(f"{len(todo)} of {len(cells)} cells not run yet (pending or running)")
    return out


def _store_path(store: Path | None) -> Path:
    from harness.sweeps.store import default_store_path

    return store or default_store_path()


def _host(ctx: click.Context):  # noqa: ANN202 - harness.core.plugins.PluginHost
    from harness.core.plugins import get_host

    obj = ctx.find_root().obj or {}
    return obj.get("host") or get_host()


def _adhoc_plugins(ctx: click.Context) -> list[str]:
    """The group's ``--plugin`` values (workers load the same plugins; HARNESS_PLUGINS they inherit)."""
    return list(ctx.find_root().params.get("plugins") or ())


def _reset_for_rerun(db: Any, suite: Any) -> None:
    """``--rerun``: the suite's done and failed cells become pending, their folders are cleared."""
    import shutil

    from harness.core.identity import reset_cells
    from harness.sweeps.sweep import cell_dir

    for cid in reset_cells(db, (c.id for c in suite.iter_cells())):
        shutil.rmtree(cell_dir(db, cid), ignore_errors=True)


WIDE_HELP = ("--format table: keep the wide table (one column per metric) even where it is wider than the "
             "terminal (COLUMNS); by default such a table is printed long, one row per method x metric.")


def terminal_width() -> int:
    from harness.results.fit import terminal_width as width

    return width()


def make_executor(name: str, *, jobs: int | None, address: str | None = None, num_cpus: float = 1,
                  num_gpus: float = 0, reuse: bool = False) -> Executor:
    """``local`` or ``ray``, by name; ``reuse``: workers run cell after cell (see :mod:`harness.sweeps.executors`)."""
    if name == "local":
        from harness.sweeps.local_executor import LocalExecutor

        return LocalExecutor(jobs or 1, reuse=reuse)
    if name == "ray":
        from harness.sweeps.ray_executor import RayExecutor

        return RayExecutor(address=address, num_cpus=num_cpus, num_gpus=num_gpus, jobs=jobs, reuse=reuse)
    from harness.core.errors import unknown_name

    raise unknown_name("executor", name, ["local", "ray"], where="--executor")


@click.command()
@click.argument("suite_file", metavar="SUITE", type=click.Path(path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override the suite before expansion (TOML value): train.steps=5, methods.dpo.beta=0.2, "
                   "seeds=[0]; repeatable.")
@click.option("--dry-run", is_flag=True, help="Expand and validate only: print the cells, load no model.")
@click.option("--store", type=click.Path(path_type=Path), default=None, help=STORE_HELP)
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--jobs", type=int, default=None, help="Cells at once (local: worker processes). Default: the "
              "suite's `jobs`, else 1 (ray: as many as the cluster fits).")
@click.option("--threads", type=int, default=None,
              help="Torch threads per local worker. Default: the suite's `threads`, else 1 for tiny: models and "
                   "machines with <= 4 cores, else cores // jobs (see harness/core/threads.py).")
@click.option("--reuse-workers/--no-reuse-workers", "reuse_workers", default=None,
              help="Run cells one after another in the same worker process, which keeps what a process pays once "
                   "(CUDA context, cuBLAS, loaded kernels, compiled code); every cell still loads its model, "
                   "reseeds and frees its memory, and a worker whose cell fails is replaced. Default: on when the "
                   "cells run on CUDA, else off.")
@click.option("--cell-timeout", type=float, default=None, metavar="SECONDS",
              help="Kill a cell after this long and mark it failed (default: the suite's cell_timeout, else none).")
@click.option("--retry-failed", is_flag=True, help="Rerun cells that failed before (done cells are always kept).")
@click.option("--rerun", is_flag=True, help="Rerun every cell of the suite from scratch, done ones included (their "
              "stored results are replaced). A cell whose plugin code changed reruns without it.")
@click.option("--cache", "cache_dir", default=None, metavar="DIR|off",
              help="Cache of warm starts, reference log-probs and samples shared by cells (default: $HARNESS_CACHE, "
                   "i.e. results/cache); 'off' computes everything in every cell.")
@click.option("--address", default=None, help="ray: join the cluster at this address (default: start a local one).")
@click.option("--num-cpus", type=float, default=None, help="ray: CPUs per cell (default: suite [resources], else 1).")
@click.option("--num-gpus", type=float, default=None, help="ray: GPUs per cell (default: suite [resources], else 0).")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "markdown", "csv", "latex", "html", "json"]),
              help="Format of the leaderboard printed at the end.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json: only JSON on stdout.")
@click.option("--wide", is_flag=True, help=WIDE_HELP)
@click.option("--quiet", is_flag=True, help="No live status lines (log lines and the summary still go to stderr).")
@click.option("--max-cells", type=click.IntRange(min=1), default=None, metavar="N",
              help="Allow a grid of up to N cells (default 10,000; larger suites are refused before expansion).")
@click.option("--log-to", "log_to", multiple=True, metavar="wandb|mlflow|tensorboard",
              help="Log each cell as a run there, grouped by the suite's name (optional extras); repeatable.")
@click.pass_context
def sweep(ctx: click.Context, suite_file: Path, sets: tuple[str, ...], dry_run: bool, store: Path | None,
          executor: str, jobs: int | None, threads: int | None, cell_timeout: float | None, retry_failed: bool,
          rerun: bool, cache_dir: str | None, address: str | None, num_cpus: float | None, num_gpus: float | None,
          fmt: str, as_json: bool, quiet: bool, max_cells: int | None, log_to: tuple[str, ...],
          reuse_workers: bool | None, wide: bool) -> None:
    """Run a suite file: every cell not done yet, one process per cell (or, with --reuse-workers, cell after
    cell in each worker); then print the leaderboard.

    While cells run, a live line per running cell shows its round, step, total steps and ETA (refreshed
    in place on a terminal, else printed every 10 s). A killed sweep, run again, resumes: done cells are
    kept and a cell that was running continues from its last round's checkpoint.

    Every value is checked before any cell starts (ranges, paths, the suite's baseline, the grid's size).

    \b
    Exit status:
      0    every cell of the sweep is done (also those done before)
      1    some cell failed, in this run or earlier (--retry-failed reruns them)
      2    bad input: one line naming the file, key or flag; nothing ran, the store is unchanged
      3    some cell is not done: another live sweep runs it (rerun once it ends)
      4    the machine failed (disk full, I/O error): one line; the cells recorded so far are kept
      130  interrupted (Ctrl-C): running cells were given back; rerun to resume

    Status (live lines, log, summary) goes to stderr, the leaderboard to stdout.
    """
    import sys

    from harness.core.progress import set_quiet
    from harness.suite import checks
    from harness.suite.expand import load_suite

    fmt = "json" if as_json else fmt
    if quiet:
        set_quiet(True)
    if store is not None and not (os.environ.get("HARNESS_HOME") or os.environ.get("HARNESS_RESULTS")):
        from harness.core.paths import use_results_root

        use_results_root(Path(store).expanduser().resolve().parent)  # cache and models beside the store
    if log_to:  # before the fork server starts: workers inherit the choice
        from harness.cell.tracking import configure
        from harness.suite.parse import tomllib

        try:
            group = str(tomllib.loads(Path(suite_file).read_text()).get("name") or Path(suite_file).stem)
        except (OSError, ValueError):
            group = Path(suite_file).stem
        configure(log_to, group)

    checks.check_count(jobs, "--jobs")
    checks.check_count(threads, "--threads")
    if cell_timeout is not None and cell_timeout <= 0:
        raise HarnessError(f"--cell-timeout {cell_timeout:g}: give a positive number of seconds")
    if not dry_run:
        checks.check_options(jobs=jobs, threads=threads, cache=cache_dir, store=_store_path(store))
    if not dry_run and executor == "local":
        from harness.sweeps.local_executor import prestart

        prestart()
    host = _host(ctx)
    suite = load_suite(suite_file, host, sets, max_cells=max_cells)
    for warning in suite.warnings:
        click.echo(f"warning: {warning}", err=True)
    if dry_run:
        _print_dry_run(suite, suite_file, fmt)
        return
    checks.preflight(suite)  # models resolvable, devices present: once, before the store is touched

    from harness.results.leaderboard import build, render
    from harness.sweeps.executors import reuse_by_default
    from harness.sweeps.store import Store
    from harness.sweeps.sweep import LiveStatus, run_sweep

    jobs = jobs or suite.data.get("jobs")
    res = suite.resources
    if reuse_workers is None:
        reuse_workers = reuse_by_default({c.config.device for c in suite.cells})
    ex = make_executor(executor, jobs=jobs, address=address,
                       num_cpus=num_cpus if num_cpus is not None else res.get("num_cpus", 1),
                       num_gpus=num_gpus if num_gpus is not None else res.get("num_gpus", 0), reuse=reuse_workers)
    from harness.core.threads import default_threads

    models = set(suite.models)
    threads = threads or suite.data.get("threads") or default_threads(
        jobs or 1, model=models.pop() if len(models) == 1 else None)
    from harness.core.cache import cache_disabled

    if cache_dir is not None and not cache_disabled(cache_dir):
        cache_dir = str(Path(cache_dir).resolve())
    live = LiveStatus(sys.stderr)
    if quiet:
        live.show = lambda lines: None  # type: ignore[method-assign]
    with os_errors(f"sweep {suite.id}"), Store(_store_path(store)) as db:
        _warn(db)
        if rerun:
            _reset_for_rerun(db, suite)
        try:
            summary = run_sweep(suite, db, ex, retry_failed=retry_failed, cell_timeout=cell_timeout, threads=threads,
                                plugins=_adhoc_plugins(ctx), log=live.log, status=live.show, cache=cache_dir)
        except KeyboardInterrupt:
            live.close()
            resume = resume_command(ctx, suite_file, store=store, sets=sets, cache_dir=cache_dir,
                                    max_cells=max_cells, executor=executor, address=address)
            click.echo(f"\ninterrupted: running cells were given back; `{resume}` resumes", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        finally:
            live.close()
        click.echo("", err=True)
        for line in summary.lines():
            click.echo(line, err=True)
        click.echo("", err=True)
        click.echo(render(build(db, suite.id), fmt, width=terminal_width(), wide=wide))
        _print_failed(db, suite.id, fmt)
    ctx.exit(summary.exit_code())


def resume_command(ctx: click.Context, suite_file: Path, *, store: Path | None, sets: tuple[str, ...],
                   cache_dir: str | None = None, max_cells: int | None = None, executor: str = "local",
                   address: str | None = None) -> str:
    """The command that resumes this sweep: the same suite, store, results folder, plugins and ``--set``
    overrides (without them it would be another sweep, or another store)."""
    import shlex

    root = ctx.find_root().params
    parts = ["harness"]
    for plugin in root.get("plugins") or ():
        parts += ["--plugin", str(plugin)]
    if root.get("results_root") is not None:
        parts += ["--results", str(root["results_root"])]
    parts += ["sweep", str(suite_file)]
    if store is not None:
        parts += ["--store", str(store)]
    for item in sets:
        parts += ["--set", item]
    if cache_dir is not None:
        parts += ["--cache", str(cache_dir)]
    if max_cells is not None:
        parts += ["--max-cells", str(max_cells)]
    if executor != "local":
        parts += ["--executor", executor]
    if address is not None:
        parts += ["--address", address]
    return shlex.join(parts)


def _print_dry_run(suite: Any, suite_file: Path, fmt: str, chunk: int = 200) -> None:
    """The cells of a dry run, printed as they stream (a chunk at a time, never the whole grid in memory);
    the text is what one tabulate/json.dumps call over every cell would print."""
    import itertools
    import json

    def rows() -> Iterator[list[list[Any]]]:
        it = suite.iter_cells()
        while batch := list(itertools.islice(it, chunk)):
            yield [[c.id, c.config.model, c.label, c.config.benchmark, c.config.seed] for c in batch]

    if fmt == "json":
        click.echo(f'{{\n "sweep": {json.dumps(suite.id)},\n "valid": true,\n "cells": [')
        first = True
        for batch in rows():
            text = ",\n".join(json.dumps({"cell": r[0], "model": r[1], "method": r[2], "benchmark": r[3],
                                          "seed": r[4]}, indent=1) for r in batch)
            click.echo(("" if first else ",\n") + "\n".join("  " + line for line in text.split("\n")), nl=False)
            first = False
        click.echo("\n ]\n}")
        return
    # every chunk is tabulated together with a row of the widest values (gathered at expansion), so its
    # columns are as wide as the whole table's; that row is not printed
    model, label, bench, seed = suite.widest
    widest = ["0" * 16, model, label, bench, seed]
    headers = ["cell", "model", "method", "benchmark", "seed"]
    for i, batch in enumerate(rows()):
        lines = tabulate([widest, *batch], headers=headers).split("\n")
        click.echo("\n".join(lines[:2] + lines[3:] if i == 0 else lines[3:]))
    click.echo(f"\n{suite.n_cells} cells in sweep {suite.id} ({suite_file}); valid")


def _print_failed(db: Any, sweep_id: str | None, fmt: str) -> None:
    """The failed cells under the table (on stderr for machine formats, so the output stays parseable)."""
    lines = failed_lines(db, sweep_id)
    if lines:
        machine = fmt in ("csv", "json", "html", "latex")
        if not machine:
            click.echo("")
        for line in lines:
            click.echo(line, err=machine)


@click.command()
@click.option("--sweep", "sweep_id", default=None, help="Sweep id or unique prefix (default: the latest).")
@click.option("--store", type=click.Path(path_type=Path), default=None, help=STORE_HELP)
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "markdown", "csv", "latex", "html", "json"]))
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--baseline", default=None, metavar="METHOD",
              help="Add differences to this method label, paired by seed (default: the suite's).")
@click.option("--metric", "metrics", multiple=True,
              help="Only this metric (name or benchmark/name); repeatable. Default: the suite's, else all.")
@click.option("--all-metrics", is_flag=True, help="Every metric, whatever the suite lists.")
@click.option("--wide", is_flag=True, help=WIDE_HELP)
def leaderboard(sweep_id: str | None, store: Path | None, fmt: str, as_json: bool, baseline: str | None,
                metrics: tuple[str, ...], all_metrics: bool, wide: bool) -> None:
    """Print a sweep's leaderboard: mean ± 95% CI over seeds, ranks, the best marked."""
    from harness.results.leaderboard import build, render
    from harness.sweeps.store import Store

    fmt = "json" if as_json else fmt
    with os_errors("leaderboard"), Store(_store_path(store), readonly=True) as db:
        _warn(db)
        lb = build(db, sweep_id, metrics=list(metrics) or (["*"] if all_metrics else None), baseline=baseline)
        click.echo(render(lb, fmt, width=terminal_width(), wide=wide))
        _print_failed(db, sweep_id, fmt)


@click.command()
@click.option("--sweep", "sweep_id", default=None, help="Sweep id or unique prefix (default: the latest).")
@click.option("--store", type=click.Path(path_type=Path), default=None, help=STORE_HELP)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for report.html and its PNGs, or the .html file to write (default: "
                   "results/<sweep>/report.html, next to the store).")
@click.option("--baseline", default=None, metavar="METHOD", help="Add the paired table for this method label.")
@click.option("--metric", "metrics", multiple=True, help="Only this metric; repeatable.")
@click.option("--json", "as_json", is_flag=True, help='Print {"report": path} as JSON.')
def report(sweep_id: str | None, store: Path | None, out: Path | None, baseline: str | None,
           metrics: tuple[str, ...], as_json: bool) -> None:
    """Write an HTML report of a sweep (default: the latest): the leaderboard, bar charts with 95% CIs,
    learning curves over steps (loss) and rounds (eval metrics), and action distributions where a
    benchmark records them. Prints the report's path."""
    from harness.results.report import write_report
    from harness.sweeps.store import Store

    with os_errors("report"), Store(_store_path(store), readonly=True) as db:
        _warn(db)
        index = write_report(db, sweep_id, out, metrics=list(metrics) or None, baseline=baseline)
    if as_json:
        import json

        click.echo(json.dumps({"report": str(index)}))
        return
    click.echo(f"report: {index}")


@click.command(name="sweeps")
@click.option("--store", type=click.Path(path_type=Path), default=None, help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def sweeps_(store: Path | None, as_json: bool) -> None:
    """List the sweeps in a results database, newest first, with their cell counts."""
    from harness.sweeps.store import Store

    with os_errors("sweeps"), Store(_store_path(store), readonly=True) as db:
        _warn(db)
        if as_json:
            import json

            click.echo(json.dumps([dict(s) for s in db.sweeps()], indent=1, default=str))
            return
        rows = [[s["id"], s["suite_path"] or "", s["cells"], s["done"], s["failed"], s["pending"] + s["running"],
                 time.strftime("%Y-%m-%d %H:%M", time.localtime(s["updated_at"]))] for s in db.sweeps()]
    click.echo(tabulate(rows, headers=["sweep", "suite", "cells", "done", "failed", "to do", "updated"]))


def register(cli: click.Group) -> None:
    """Attach the sweep commands to the ``harness`` group."""
    for cmd in (sweep, leaderboard, report, sweeps_):
        cli.add_command(cmd)
