"""The ``harness`` command (click): one module per group of commands.

``app`` holds the group, ``run``, ``eval`` and the entry point ``main``; ``sweep`` the sweep,
leaderboard, report and sweeps commands; ``tools`` schema, export and compare; ``datasets`` the
dataset listing. Commands parse and print; the work is done by the subsystems below.
May import: every other subsystem.
"""


def main() -> None:
    """The ``harness`` console script (``harness.cli:main``). ``--version`` / ``-V`` alone answer before
    the commands (and torch) are imported, in a fraction of a second. Sets the thread policy first (before
    torch loads OpenMP), for this process and every worker it starts."""
    import sys

    from harness.core.threads import set_passive_wait

    set_passive_wait()
    if sys.argv[1:] in (["--version"], ["-V"]):
        from harness.core.version import __version__

        print(f"alignment-harness, version {__version__}")
        return
    from harness.cli.app import main as app_main

    app_main()

