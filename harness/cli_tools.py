"""Extra commands: ``harness schema`` (and the browse/compare commands of :mod:`harness.export` and
:mod:`harness.compare`). ``harness.cli`` calls :func:`register` at import."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _host(ctx: click.Context):  # noqa: ANN202 - harness.plugins.PluginHost
    from harness.plugins import get_host

    obj = ctx.find_root().obj or {}
    return obj.get("host") or get_host()


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write it here (default: stdout).")
@click.pass_context
def schema(ctx: click.Context, out: Path | None) -> None:
    """Print the JSON Schema of the suite format (for editors), for the plugins loaded here."""
    from harness.suite_schema import suite_schema

    text = json.dumps(suite_schema(_host(ctx)), indent=1) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        click.echo(f"schema: {out}", err=True)


def register(cli: click.Group) -> None:
    """Attach the extra commands to the ``harness`` group."""
    for cmd in (schema,):
        cli.add_command(cmd)
