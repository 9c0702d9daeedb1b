"""``harness datasets`` and the ``--data`` side of ``harness run`` (training on a dataset, evaluating on others).

``harness.cli.app`` calls :func:`register` at import, which attaches the command to its group.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import click

from harness.core.params import route_sets


def _host(ctx: click.Context):  # noqa: ANN202 - harness.core.plugins.PluginHost
    from harness.core.plugins import get_host

    obj = ctx.find_root().obj or {}
    return obj.get("host") or get_host()


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def datasets(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """List training datasets: what each provides, where it loads from, its columns and splits.

    Besides these, any hf:<org/name>[:config][@split] and any local JSON/JSONL/Parquet/CSV file can be
    trained on (`harness run --data FILE --eval BENCH`); see docs/datasets.md.
    """
    from harness.training.datasets import describe

    host = _host(ctx)
    reg = host.registry
    specs = {name: reg.dataset(name)} if name is not None else reg.specs["dataset"]
    out = [describe(s, reg.origin[("dataset", s.name)]) for s in sorted(specs.values(), key=lambda s: s.name)]
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for d in out:
        where = d["path"] or (d["hub"] + (f":{d['config']}" if d["config"] else ""))
        splits = ", ".join([d["split"], *(f"{k}: {v}" for k, v in d["splits"].items())])
        click.echo(f"{d['name']}  ({d['plugin']})  {d['description']}")
        click.echo(f"    provides: {', '.join(d['provides'])}")
        click.echo(f"    from: {where}  split: {splits}  version: {d['version']}"
                   + (f"  limit: {d['limit']}" if d["limit"] else ""))
        if d["columns"]:
            click.echo(f"    columns: {', '.join(f'{k}={v}' for k, v in d['columns'].items())}")
        if d["paper"]:
            click.echo(f"    paper: {d['paper']}")


def split_data_sets(sets: dict[str, str], host: Any, method: str, evals: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Route ``--set`` keys of a ``--data`` run: ``data.k`` (dataset params, ``data.columns.<role>``),
    ``method.k``, ``train.k``, ``benchmark.k`` (the first ``--eval`` benchmark's), or a bare key found in one."""
    from harness.core.registry import DatasetParams
    from harness.training.trainer import TrainConfig

    reg = host.registry
    owners = {
        "method": {f.name for f in fields(reg.method(method, where="--method").params)},
        "data": {f.name for f in fields(DatasetParams)},
        "train": {f.name for f in fields(TrainConfig)},
        "benchmark": {f.name for f in fields(reg.benchmark(evals[0], where="--eval").params)} if evals else set(),
    }
    return route_sets(sets, owners, ", data.columns.<role>")


def register(cli: click.Group) -> None:
    """Attach ``datasets`` to the ``harness`` group."""
    cli.add_command(datasets)
