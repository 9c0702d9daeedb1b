"""Services benchmarks use to score a model: the LLM judge and the code sandbox.

Owns the judge (``judge``: MT-Bench-style prompts, rating parsing, a judgment cache) and the sandbox
that runs model-written programs (``sandbox`` and its parts: ``sandbox_bwrap`` worlds under bubblewrap,
``sandbox_pool`` of warm worlds, ``sandbox_slots`` for uids and cgroups, ``sandbox_types`` the shared
data types), and ``benchmark_data``: the copy of a benchmark's data its ``path`` names (embedded, a local path,
the hub), read and hashed. Benchmarks themselves are plugins (``plugins/benchmarks``).
Parts of the sandbox the names above use: ``sandbox_pidfd`` (signals through pidfds), ``sandbox_seccomp``
(the system-call filter) and ``sandbox_stub`` (pid 1 of every world, run as a script).
May import: ``harness.core``, ``harness.models``, ``harness.engines``.
"""
