"""The one error type users see: a single line, exit code 2, no traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import click


class HarnessError(click.ClickException):
    """Bad input (suite file, dataset row, plugin, CLI flag): one line naming the place and the fix."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split("\n")))

    def show(self, file: object = None) -> None:
        """The one line, on a line of its own: progress bars still drawn are taken down first."""
        from harness.core.progress import clear_bars

        clear_bars()
        super().show(file)  # type: ignore[arg-type]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str], where: str = "") -> HarnessError:
    """An error for an unknown method/benchmark/engine/key, with a suggestion and the full list."""
    choices = sorted(choices)
    place = f"{where}: " if where else ""
    return HarnessError(
        f"{place}unknown {kind} '{name}'{did_you_mean(name, choices)}; "
        f"known: {', '.join(choices) if choices else '(none)'}"
    )
