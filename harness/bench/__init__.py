"""Speed benchmarks (targets live here, never in timed tests).

``python -m harness.bench`` times generation, reference scoring and training against bare loops
(``stages``); ``python -m harness.bench.sweep`` a sweep's overhead, ``python -m harness.bench.humaneval``
the sandbox's per-program cost, ``python -m harness.bench.threads`` thread counts.
Also ``python -m harness.bench.coverage`` (the leaderboard intervals' coverage study) and
``python -m harness.bench.workers`` (a fresh worker against a reused one).
May import: every lower layer (``core`` ... ``authoring``).
"""

from harness.core.threads import set_passive_wait

# These modules are programs (``python -m harness.bench.X``), so they set the thread policy as the ``harness``
# command does, here: the package runs before a program's own imports load torch and OpenMP.
set_passive_wait()
