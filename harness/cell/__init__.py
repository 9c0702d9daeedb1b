"""One cell: what defines it and how it runs, for ``harness run`` and for every worker of a sweep.

What defines a cell and its id (``definition``: ``CellConfig``, ``ResolvedCell``, ``resolve``), the named
phases of running it (``run``: ``CellRun``, ``run_cell``), one cell across N processes (``processes``),
what a finished cell leaves in its folder (``outputs``) and experiment tracking (``tracking``).
The ranges every cell's settings are checked against are in ``checks``.
May import: every lower layer (``core``, ``models``, ``engines``, ``evaluation``, ``training``).
"""
