"""Imported first by the local executor's fork server (its preload): the fork server asks for SIGKILL
when the sweep that started it dies (``PR_SET_PDEATHSIG``), whatever else still holds its pipe. Its
workers ask the same of the fork server, so a killed sweep leaves no worker behind.

Only the fork server imports this module; importing it anywhere else would tie that process to its
parent.
"""

from __future__ import annotations

from harness.core.threads import set_passive_wait
from harness.sweeps.local_executor import die_with_parent

die_with_parent()
set_passive_wait()  # the workers' thread policy, also when the sweep was started from Python rather than the CLI
