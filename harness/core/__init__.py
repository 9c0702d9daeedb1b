"""The plugin contract and the host's ground floor: what every other subsystem stands on.

Owns the hook specifications (``hookspecs``), the registry of specs (``registry``: ``MethodSpec``,
``BenchmarkSpec``, ``DatasetSpec``, ``EngineSpec``), the plugin manager (``plugins``: discovery,
quarantine), typed parameters (``params``), the data types rows are made of (``data``), the contexts
hooks receive (``context``), the objective contract (``contract``), errors, paths, threads, progress,
the content-addressed cache (``cache``), cell identity from plugin code (``identity``), the one digest
every id and key is made with (``digest``), derived seeds (``seeds``), the Hugging Face hub (``hub``: offline or
reachable, and the one reader of a hub dataset's split) and the package version (``version``).
Modules not named above: ``errors`` (``HarnessError``, one-line messages), ``paths`` (the results
root), ``threads`` (thread counts) and ``progress`` (bars, phases, the log).
May import: nothing else of the harness (only ``TYPE_CHECKING`` imports for annotations).
"""
