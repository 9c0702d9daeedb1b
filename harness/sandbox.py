"""The code sandbox for benchmark plugins that run model-written programs (HumanEval).

:func:`run_program` / :func:`run_many` (a program, or many in parallel, under bubblewrap with time, memory,
output and process limits; never raises for what the program does), :class:`CheckedProgram` (a candidate
and its tests, run apart so the candidate cannot fake the verdict), :class:`SandboxResult`,
:func:`mechanism` (what would run a program now) and :func:`check_isolation` (what a sandboxed program can
see). The code lives in ``harness.evaluation.sandbox``; this module is its public face.
"""

from harness.evaluation.sandbox import (
    CheckedProgram,
    SandboxResult,
    check_isolation,
    mechanism,
    run_many,
    run_program,
)

__all__ = ["CheckedProgram", "SandboxResult", "check_isolation", "mechanism", "run_many", "run_program"]
