"""What a store's cells mean: leaderboards, reports, exports and comparisons.

Owns the leaderboard (``leaderboard``: mean and CI over seeds, paired comparisons), the report with
plots (``report``, ``report_cells``), per-item exports (``export``: inspect_ai logs, HTML), sweep
comparison (``compare``) and the README's generated tables (``docs_tables``).
May import: every lower layer, ``harness.sweeps`` included (for the store).
"""

from harness._moved import forward_old_names

# ``harness.results`` was a module before 0.2; its names still resolve here, with a DeprecationWarning.
__getattr__ = forward_old_names(__name__, "harness.sweeps.cell_outputs")
