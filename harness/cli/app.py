"""The ``harness`` command line: a thin click group over the host."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from harness.core.errors import HarnessError
from harness.core.params import describe, parse_set, route_sets
from harness.core.plugins import PluginHost, get_host, load, set_host
from harness.core.progress import log, set_quiet, status
from harness.core.threads import apply_threads, threads_option
from harness.core.version import __version__


def _host(ctx: click.Context) -> PluginHost:
    return ctx.find_root().obj["host"]


class HarnessGroup(click.Group):
    """Loads plugins (and their extra commands) before resolving a sub-command."""

    def _ensure_loaded(self, ctx: click.Context, args: list[str]) -> None:
        adhoc = _peek_plugins(args)
        if getattr(self, "_plugins_loaded", None) == (tuple(adhoc), os.environ.get("HARNESS_PLUGINS", "")):
            return  # the same plugins as the last command in this process (a program may invoke several)
        host = load(adhoc)
        for line in host.import_errors:  # quarantined plugins: one warning line each
            click.echo(f"Warning: {line}", err=True)
        set_host(host)
        ctx.ensure_object(dict)["host"] = host
        host.add_commands(self)
        self._plugins_loaded = (tuple(adhoc), os.environ.get("HARNESS_PLUGINS", ""))

    def invoke(self, ctx: click.Context) -> Any:
        """Any unexpected exception is one line plus the path of its traceback (``--debug``: the traceback)."""
        from harness.core.contract import guarded
        from harness.core.paths import results_root

        log = results_root() / "logs" / "error.log"
        try:
            return guarded(lambda: super(HarnessGroup, self).invoke(ctx), log)
        except KeyboardInterrupt:  # Ctrl-C: the documented 130, not click's "Aborted!" and 1
            from harness.core.progress import clear_bars

            clear_bars()
            click.echo("\ninterrupted (Ctrl-C); rerun the same command to resume", err=True)
            ctx.exit(130)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args[:1] not in (["--version"], ["-V"]):
            try:
                self._ensure_loaded(ctx, list(args))
            except HarnessError as exc:
                exc.show()
                sys.exit(exc.exit_code)
        return super().parse_args(ctx, args)


def _peek_plugins(args: list[str]) -> list[str]:
    """The values of the global ``--plugin`` option, read before click parses (commands come from plugins)."""
    out = []
    it = iter(args)
    for a in it:
        if a == "--plugin":
            value = next(it, None)
            if value is not None:
                out.append(value)
        elif a.startswith("--plugin="):
            out.append(a.split("=", 1)[1])
        elif not a.startswith("-"):
            break  # the sub-command: its own options follow
    return out


@click.group(cls=HarnessGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="alignment-harness")
@click.option(
    "--plugin",
    "plugins",
    multiple=True,
    metavar="MODULE|FILE.py",
    help="Load an extra plugin (module name or path to a .py file); repeatable. Also: HARNESS_PLUGINS.",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks (also: HARNESS_DEBUG=1); by default an error is one "
              "line and the path of a log with the traceback.")
@click.option("--quiet", "-q", "quiet_", is_flag=True, help="No progress bars or status lines (any command).")
@click.option("--results", "results_root", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="One folder for the store, run folders, cache and converted models (also: HARNESS_HOME; "
                   "default ./results).")
@click.pass_context
def cli(ctx: click.Context, plugins: tuple[str, ...], debug: bool, quiet_: bool, results_root: Path | None) -> None:
    """alignment-harness: train and evaluate alignment methods as plugins.

    Methods and benchmarks come from plugins (see `harness plugins`); `harness run` trains and
    evaluates one cell.

    \b
    Exit status:
      0    success (`harness sweep`: every cell of the sweep is done)
      1    a run failed after work started (a plugin's bug, a crash; `harness sweep`: some cell failed, now
           or earlier; --retry-failed reruns them)
      2    bad input: one line naming the file, key or flag; nothing ran, nothing recorded changed
      3    `harness sweep`: some cell is not done because another live sweep runs it
      4    the machine failed (disk full, I/O error): one line; what was recorded is kept
      130  interrupted (Ctrl-C)
    """
    if debug:
        os.environ["HARNESS_DEBUG"] = "1"  # sub-processes (sweep workers) inherit it
    launched = os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1") and "RANK" in os.environ
    if launched and ctx.invoked_subcommand not in (None, "run"):  # never the same work N times over
        raise HarnessError(f"harness {ctx.invoked_subcommand} runs in one process: under torchrun / accelerate "
                           f"launch only `harness run` takes part (as one rank); start it without the launcher")
    if quiet_:
        set_quiet(True)
    from harness.core.paths import sync_env, use_results_root

    if results_root is not None:
        use_results_root(results_root)
    sync_env()
    obj = ctx.ensure_object(dict)
    if "host" not in obj:  # e.g. invoked programmatically
        obj["host"] = get_host(plugins)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List loaded plugins: name, version, hooks and what each registered."""
    host = _host(ctx)
    rows = host.describe()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        table = [
            [r["name"], r["version"] or "", ", ".join(r["hooks"]),
             "; ".join(f"{k}: {', '.join(v)}" for k, v in r["registered"].items())
             if r["status"] == "ok" else "BROKEN (quarantined; see the warning above)"]
            for r in rows
        ]
        click.echo(tabulate(table, headers=["plugin", "version", "hooks", "registered"]))
    if host.import_errors:  # already printed, as warnings, when the plugins were loaded
        ctx.exit(2)


def _describe_specs(host: PluginHost, kind: str, as_json: bool, name: str | None, family: str | None = None) -> None:
    specs = host.registry.specs[kind]
    if name is not None:
        specs = {name: host.registry.get(kind, name)}
    if family is not None:
        known = sorted({s.family for s in specs.values() if s.family})
        if family not in known:
            raise HarnessError(f"--family {family}: no method of that family; families: {', '.join(known)}")
        specs = {n: s for n, s in specs.items() if s.family == family}
    out = [
        {
            "name": s.name,
            "description": s.description,
            "paper": s.paper,
            "plugin": host.registry.origin[(kind, s.name)],
            "params": describe(s.params),
            **({"family": s.family, "needs": sorted(s.needs)} if kind == "method" else {}),
            **({"provides": sorted(s.provides), "version": s.version,
                "metrics": [{"name": m.name, "direction": "lower" if m.lower_is_better else "higher",
                             "role": m.role, "item": m.item} for m in s.metrics]} if kind == "benchmark" else {}),
        }
        for s in sorted(specs.values(), key=lambda s: s.name)
    ]
    if kind == "method" and name is not None:  # one method: also its trainer settings, toy and real defaults
        _add_method_defaults(out[0], specs[name])
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    for item in out:
        click.echo(f"{item['name']}  ({item['plugin']})  {item['description']}")
        if "family" in item:
            click.echo(f"    family: {item['family'] or '-'}")
        click.echo(f"    paper: {item['paper']}")
        for key in ("needs", "provides"):
            if key in item:
                click.echo(f"    {key}: {', '.join(item[key]) or '-'}")
        if "metrics" in item:
            click.echo("    metrics: " + (", ".join(
                f"{m['name']} ({m['direction']} is better, {m['role']})" for m in item["metrics"]) or "- (none declared)"))
        for p in item["params"]:
            click.echo(_param_line(p["name"], p))
        if "train" in item:
            click.echo("    trainer settings (defaults for tiny: models; 'real model:' for any other model):")
            for p in item["train"]:
                click.echo(_param_line(f"train.{p['name']}", p))


def _param_line(key: str, p: dict[str, Any]) -> str:
    real = f" (real model: {p['real_model_default']!r})" if "real_model_default" in p else ""
    return f"    --set {key}={p['default']!r:<10} {p['type']:<18} {p['range']:<10} {p['help']}{real}"


def _add_method_defaults(item: dict[str, Any], spec: Any) -> None:
    """``item["train"]``: every ``train.*`` key with this method's default, and ``real_model_default`` on the
    keys (train and method) whose default differs for a real model (see :mod:`harness.training.defaults`)."""
    from harness.training.defaults import method_defaults, train_defaults
    from harness.training.trainer import TrainConfig

    toy_train = train_defaults(spec, "tiny:nano")
    real_train = train_defaults(spec, "a-real-model")
    real_params = method_defaults(spec, "a-real-model")
    for p in item["params"]:
        if p["name"] in real_params and real_params[p["name"]] != p["default"]:
            p["real_model_default"] = real_params[p["name"]]
    train = describe(TrainConfig)
    for p in train:
        p["default"] = toy_train.get(p["name"], p["default"])
        real = real_train.get(p["name"], p["default"])
        if real != p["default"]:
            p["real_model_default"] = real
    item["train"] = train


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--family", default=None, metavar="FAMILY",
              help="Only methods of this family: supervised, preference, unpaired-feedback, on-policy, imitation.")
@click.pass_context
def methods(ctx: click.Context, name: str | None, as_json: bool, family: str | None) -> None:
    """List methods: name, family, description, paper, data it needs, parameters with types and defaults."""
    _describe_specs(_host(ctx), "method", as_json, name, family)


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def benchmarks(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """List benchmarks: name, description, source, data they provide, declared metrics, parameters."""
    _describe_specs(_host(ctx), "benchmark", as_json, name)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def engines(ctx: click.Context, as_json: bool) -> None:
    """List generation engines and whether each can run here."""
    host = _host(ctx)
    specs = list(host.registry.specs["engine"].values())
    if as_json:
        click.echo(json.dumps([{"name": s.name, "available": bool(s.available()), "install_hint": s.install_hint,
                                "description": s.description} for s in specs], indent=2))
        return
    rows = [[s.name, "yes" if s.available() else f"no: {s.install_hint}", s.description] for s in specs]
    click.echo(tabulate(rows, headers=["engine", "available", "description"]))


def _split_sets(sets: dict[str, str], host: PluginHost, method: str, benchmark: str) -> dict[str, dict[str, str]]:
    """Route ``--set`` keys: ``method.k``, ``benchmark.k``, ``train.k`` or a bare key found in exactly one."""
    from dataclasses import fields

    from harness.training.trainer import TrainConfig

    owners = {
        "method": {f.name for f in fields(host.registry.method(method, where="--method").params)},
        "benchmark": {f.name for f in fields(host.registry.benchmark(benchmark, where="--benchmark").params)},
        "train": {f.name for f in fields(TrainConfig)},
    }
    return route_sets(sets, owners)


@cli.command()
@click.option("--model", default="tiny:nano", show_default=True,
              help="tiny:<preset>, a hub name, a local directory, a .gguf file, or smollm2-135m.")
@click.option("--method", required=True, help="A method name (see `harness methods`).")
@click.option("--benchmark", default=None, help="The benchmark that gives training data and is evaluated.")
@click.option("--data", "data", default=None, metavar="NAME|hf:ORG/NAME|FILE",
              help="Train on this dataset instead (see `harness datasets`; a local JSON/JSONL/Parquet/CSV file or "
                   "hf:org/name[:config][@split]), evaluating on the --eval benchmarks only.")
@click.option("--eval", "evals", multiple=True, help="Also evaluate on this benchmark; repeatable.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a parameter: method.k, benchmark.k, train.k, or a bare key; repeatable.")
@click.option("--engine", default="hf", show_default=True, help="Generation engine.")
@click.option("--dtype", default="float32", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Directory for the record (default: results/runs/<cell id>).")
@click.option("--no-resume", "--rerun", "no_resume", is_flag=True,
              help="Rerun from scratch: ignore an existing checkpoint and results of this cell.")
@click.option("--quiet", is_flag=True, help="No progress bars or status lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the record's summary as JSON (stdout) instead of tables.")
@click.option("--log-to", "log_to", multiple=True, metavar="wandb|mlflow|tensorboard",
              help="Also log config and per-step metrics there (optional extras); repeatable.")
@click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="N",
              help="Train this one cell in N processes with torch.distributed (same as --set train.processes=N; "
                   "train.strategy=ddp|fsdp). Under torchrun / accelerate launch, leave it out.")
@click.option("--store", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Record the run in this results database as a one-cell sweep, for report, leaderboard, export "
                   "and compare (default: <results root>/harness.db).")
@threads_option
@click.pass_context
def run(ctx: click.Context, model: str, method: str, benchmark: str | None, data: str | None,
        evals: tuple[str, ...], seed: int, sets: tuple[str, ...], engine: str, dtype: str, device: str,
        out: Path | None, no_resume: bool, quiet: bool, as_json: bool, log_to: tuple[str, ...],
        nproc: int | None, store: Path | None, threads: int | None) -> None:
    """Train and evaluate one cell: a model, a method, a benchmark (or --data and --eval) and a seed.

    Progress and status go to stderr; the final table (or --json) to stdout. Under torchrun or accelerate
    launch (or with --nproc N) the processes train the cell together and rank 0 alone writes and prints."""
    from harness.cell.run import CellConfig, resolve, run_cell
    from harness.training import distributed

    rank = int(os.environ.get("RANK", "0")) if distributed.launched_size() > 1 else 0
    if quiet or rank:
        set_quiet(True)  # other ranks are silent unless they fail
    if nproc is not None:
        sets = (*sets, f"train.processes={nproc}")
    from harness.cell.tracking import configure

    configure(log_to, "harness-run")
    apply_threads(threads, model=model)

    host = _host(ctx)
    if (benchmark is None) == (data is None):
        raise HarnessError("give --benchmark NAME (trained on and evaluated), or --data NAME_OR_FILE with "
                           "--eval BENCH (trained on the data, evaluated on the benchmarks)")
    if data is not None:
        from harness.cli.datasets import split_data_sets

        routed = split_data_sets(parse_set(sets), host, method, evals)
        config = CellConfig(model=model, method=method, benchmark=data, seed=seed, method_params=routed["method"],
                            benchmark_params=routed["data"], train=routed["train"], eval_benchmarks=tuple(evals),
                            eval_params={evals[0]: routed["benchmark"]} if routed["benchmark"] else {},
                            engine=engine, dtype=dtype, device=device, train_data=True)
        benchmark = data
    else:
        routed = _split_sets(parse_set(sets), host, method, benchmark)
        config = CellConfig(model=model, method=method, benchmark=benchmark, seed=seed,
                            method_params=routed["method"], benchmark_params=routed["benchmark"],
                            train=routed["train"], eval_benchmarks=tuple(evals), engine=engine, dtype=dtype,
                            device=device)
    cell = resolve(config, host, where="--data" if data is not None else "")
    from harness.core.paths import results_root

    out = out or results_root() / "runs" / cell.cell_id
    status(f"cell {cell.cell_id}: {model} x {method} x {benchmark} (seed {seed}) -> {out}")
    from harness.core.contract import guarded

    try:
        record = guarded(lambda: run_cell(cell, host, out_dir=out, resume=not no_resume, progress=not quiet,
                                          log=log), out / (f"error.rank{rank}.log" if rank else "error.log"))
    except click.ClickException as exc:
        if distributed.launched_size() > 1:  # name the rank that failed
            exc.message = f"rank {rank} of {distributed.launched_size()}: {exc.message}"
        raise
    if rank:
        return  # rank 0 prints
    from harness.sweeps.single_runs import record_run

    sweep_id = _record(lambda path: record_run(path, cell, host, record), store)
    if as_json:
        click.echo(json.dumps({"cell_id": record["cell_id"], "out": str(out), "final": record["final"],
                               "sweep": sweep_id,
                               "rounds": record["rounds"], "timings": record["timings"],
                               "config": record["config"],
                               **{k: record[k] for k in ("model_dir", "reward_model_dir") if k in record}},
                               indent=1, default=str))
        return
    _print_final(record)


@cli.command(name="eval")
@click.option("--model", default="tiny:nano", show_default=True,
              help="tiny:<preset>, a hub name, a local directory, a .gguf file, or smollm2-135m.")
@click.option("--benchmark", "benchmarks_", multiple=True, required=True, help="A benchmark; repeatable.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Benchmark parameter (KEY or benchmark.KEY); repeatable.")
@click.option("--limit", type=int, default=None, help="Evaluate at most this many items of each benchmark.")
@click.option("--engine", default="hf", show_default=True)
@click.option("--dtype", default="float32", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Write metrics and per-item records as JSON here.")
@click.option("--quiet", is_flag=True, help="No progress bars or status lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON (stdout).")
@click.option("--store", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Record the evaluation in this results database as a one-cell sweep (label `untrained`), for "
                   "report, leaderboard, export and compare (default: <results root>/harness.db).")
@threads_option
@click.pass_context
def eval_(ctx: click.Context, model: str, benchmarks_: tuple[str, ...], seed: int, sets: tuple[str, ...],
          limit: int | None, engine: str, dtype: str, device: str, out: Path | None, quiet: bool, as_json: bool,
          store: Path | None, threads: int | None) -> None:
    """Evaluate a model on benchmarks, without training (baseline rows)."""
    from harness.cell.run import evaluate_model

    if quiet:
        set_quiet(True)
    apply_threads(threads, model=model)

    host = _host(ctx)
    records: list[dict[str, Any]] = []
    data: dict[str, Any] = {}  # benchmark -> the copy of its data it read (embedded / path / hub, sha256)
    overrides = {k.removeprefix("benchmark."): v for k, v in parse_set(sets).items()}  # as `harness run` spells them
    import time

    t0 = time.perf_counter()
    metrics = evaluate_model(host, model, list(benchmarks_), overrides, seed=seed, engine=engine,
                             dtype=dtype, device=device, log=log, limit=limit, records=records, data=data)
    named = {"data": data} if data else {}
    from harness.sweeps.single_runs import record_eval

    _record(lambda path: record_eval(path, host, model=model, benchmarks=list(benchmarks_),
                                     overrides=overrides, seed=seed, engine=engine, dtype=dtype, device=device,
                                     limit=limit, metrics=metrics, records=records,
                                     wall_s=time.perf_counter() - t0), store)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model": model, "metrics": metrics, **named, "records": records}, indent=1,
                                  default=str))
    if as_json:
        click.echo(json.dumps({"model": model, "metrics": metrics, **named}, indent=1))
        return
    click.echo(tabulate(sorted(metrics.items()), headers=["metric", "value"], floatfmt=".4f"))


@cli.command()
@click.argument("prompt")
@click.option("--model", default="tiny:nano", show_default=True)
@click.option("--max-new-tokens", default=128, show_default=True)
@click.option("--temperature", default=0.0, show_default=True)
@click.option("--raw", is_flag=True, help="Do not apply the chat template.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option("--quiet", is_flag=True, help="No status lines.")
@click.option("--json", "as_json", is_flag=True, help="Print {prompt, model, text, finish_reason} as JSON.")
@threads_option
@click.pass_context
def generate(ctx: click.Context, prompt: str, model: str, max_new_tokens: int, temperature: float, raw: bool,
             seed: int, device: str, quiet: bool, as_json: bool, threads: int | None) -> None:
    """Answer one prompt with a model (chat template applied when the tokenizer has one)."""
    from harness.cell.run import _loading
    from harness.models.loading import load_model

    if quiet:
        set_quiet(True)
    host = _host(ctx)
    apply_threads(threads, model=model)
    with _loading(model):
        loaded = load_model(model, seed=seed, device=device)
    engine = host.registry.engine("hf").factory(loaded)
    out = engine.generate([loaded.encoder.prompt(prompt, raw=raw)], max_new_tokens=max_new_tokens,
                          temperature=temperature, seed=seed)
    if as_json:
        click.echo(json.dumps({"prompt": prompt, "model": model, "text": out[0][0].text,
                               "finish_reason": out[0][0].finish_reason}))
        return
    click.echo(out[0][0].text)


def _record(write: Any, store: Path | None) -> str | None:
    """Write a run into the store (``write(path)`` returns its sweep id) and say how to browse it; a store that
    can't be written is a warning: the run itself is done and its folder written."""
    import sqlite3

    from harness.sweeps.store import default_store_path

    path = store or default_store_path()
    try:
        sweep_id = write(path)
    except (HarnessError, OSError, sqlite3.Error) as exc:
        message = str(exc) if isinstance(exc, HarnessError) else f"{path}: {exc.strerror or exc}"
        click.echo(f"warning: not recorded in the store: {message}", err=True)
        return None
    status(f"recorded as sweep {sweep_id} in {path}: harness report --sweep {sweep_id}"
           + (f" --store {path}" if store is not None else ""))
    return sweep_id


def _print_final(record: dict[str, Any]) -> None:
    names = sorted({k for r in record["rounds"] for k in r["metrics"]})
    table = [[r["round"], *[r["metrics"].get(n) for n in names]] for r in record["rounds"]]
    click.echo("")
    click.echo(tabulate(table, headers=["round", *names], floatfmt=".4f"))
    t = record["timings"]
    click.echo(f"\ntrain {t['train_s']:.1f} s, eval {t['eval_s']:.1f} s, total {t['total_s']:.1f} s")


from harness.cli import sweep as cli_sweep  # noqa: E402 - sweep, leaderboard, report, sweeps attach to the group

cli_sweep.register(cli)
from harness.authoring import checkplugin, scaffold  # noqa: E402, I001 - check-plugin and new, in their own modules

checkplugin.register(cli)
scaffold.register(cli)
from harness.cli import tools as cli_tools  # noqa: E402 - schema, export, compare

cli_tools.register(cli)

from harness.cli import datasets as cli_datasets  # noqa: E402 - `harness datasets`

cli_datasets.register(cli)


def main() -> None:
    """Console entry point. A closed pipe (``harness methods | head -1``) ends the process quietly, the way
    Unix tools end (SIGPIPE), instead of click's exit 1 with a BrokenPipeError."""
    import signal

    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    cli(prog_name="harness")


if __name__ == "__main__":
    main()
