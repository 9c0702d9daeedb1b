"""From a suite file to recorded cells: parsing, validation, running, storing.

Owns the suite format and its expansion into cells (``suite``, ``suite_schema``), the checks run once
before any cell (``checks``), the cell runner (``run``: load, warm start, train, evaluate, record),
executors and their fork server (``executors``, ``forkserver_guard``), the SQLite store (``store``),
the sweep loop (``sweep``), what a finished cell leaves on disk (``cell_outputs``) and experiment
tracking (``tracking``).
May import: every lower layer (``core``, ``models``, ``engines``, ``evaluation``, ``training``).
"""
