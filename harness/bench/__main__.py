"""``python -m harness.bench``: the stage bench (see :mod:`harness.bench.stages`)."""

from harness.bench.stages import main

main()
