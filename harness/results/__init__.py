"""What a store's cells mean: leaderboards, reports, exports and comparisons.

Owns the leaderboard (``leaderboard``: mean and CI over seeds, paired comparisons), the report with
plots (``report``, ``report_cells``), per-item exports (``export``: inspect_ai logs, HTML), sweep
comparison (``compare``) and the README's generated tables (``docs_tables``).
Also ``intervals`` (paired intervals and the multiple-comparison correction), ``student_t`` (Student's t,
exact), ``plan`` (``harness plan``: how many seeds) and ``fit`` (terminal tables that fit).
May import: every lower layer, ``harness.sweeps`` included (for the store).
"""
