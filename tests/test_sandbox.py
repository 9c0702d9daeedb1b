"""The code sandbox with real subprocesses: ordinary programs, limits, the isolation record, the refusal
without bubblewrap.

The hostile corpus (programs attacking each other, the host and their own verdicts) is in
tests/test_sandbox_hostile.py. Tests that need bubblewrap skip, saying so, where it is missing.
"""

from __future__ import annotations

import os
import textwrap
import time

import pytest

from harness.evaluation import sandbox, sandbox_bwrap, sandbox_slots
from harness.evaluation.sandbox import CheckedProgram, run_many, run_program

needs_bwrap = pytest.mark.skipif(bool(sandbox_bwrap.unusable_reason()), reason=sandbox_bwrap.unusable_reason())


def prog(text: str) -> str:
    return textwrap.dedent(text).lstrip()


@needs_bwrap
def test_passing_program_captures_stdout_and_stderr() -> None:
    res = run_program("print('hello')\nimport sys\nprint('warn', file=sys.stderr)\n")
    assert res.status == "passed", res
    assert (res.stdout, res.stderr, res.returncode, res.reason) == ("hello\n", "warn\n", 0, "")


@needs_bwrap
def test_failures_are_reported_with_a_one_line_reason() -> None:
    res = run_program("def f():\n    return 1\nassert f() == 2, 'wrong answer'\n")
    assert (res.status, res.returncode) == ("failed", 1)
    assert res.reason == "exit code 1: AssertionError: wrong answer"
    assert 'File "/work/main.py", line 3' in res.stderr
    assert run_program("def f(:\n").reason.startswith("exit code 1: SyntaxError")
    assert run_program("import sys\nsys.exit(3)\n").returncode == 3
    res = run_program("import os, signal\nos.kill(os.getpid(), signal.SIGABRT)\n")
    assert (res.status, res.returncode, res.reason) == ("failed", -6, "killed by signal SIGABRT")


@needs_bwrap
def test_program_runs_as_a_script_named_main() -> None:
    res = run_program(prog("""
        import os, sys
        print(__name__, __file__, sys.argv, os.getcwd(), open(__file__).read().count("\\n"))
        print(sorted(k for k in globals() if not k.startswith("__")))
        print(sys.stdin.read() == "", os.environ.get("HOME"), sorted(os.environ))
    """))
    lines = res.stdout.splitlines()
    assert lines[0] == "__main__ /work/main.py ['main.py'] /work 4", res
    assert lines[1] == "['os', 'sys']"  # nothing of the supervisor's is left in its globals
    assert lines[2] == "True /work ['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']"


@needs_bwrap
def test_output_is_capped_and_the_harness_keeps_working() -> None:
    res = run_program("import sys\nsys.stdout.write('x' * 10_000_000)\nsys.stderr.write('y' * 200_000)\n",
                      max_output=1000)
    assert res.status == "passed"
    assert res.stdout.startswith("x" * 1000) and "[output truncated: 10000000 bytes, first 1000 kept]" in res.stdout
    assert "[output truncated: 200000 bytes" in res.stderr


def test_invalid_limits_are_rejected() -> None:
    for kwargs in ({"timeout_s": 0}, {"memory_mb": 0}, {"max_output": -1}, {"cpu_s": -1}):
        with pytest.raises(ValueError):
            run_program("pass", **kwargs)


@needs_bwrap
def test_isolation_record_says_which_mechanism_ran() -> None:
    iso = run_program("pass").isolation
    assert iso["mechanism"] == "bubblewrap"
    assert iso["userns"] and iso["pidns"] and iso["mountns"] and iso["netns"] and iso["network"] == "netns"
    assert iso["memory_bound"] in ("cgroup-v2", "cgroup-v1", "rlimit-as-per-process")
    if os.geteuid() == 0:
        assert iso["uid"] >= sandbox_slots.UID_BASE and iso["privilege_drop"] == "setuid+userns"
    assert iso["limits"]["memory_mb"] == 1024


@needs_bwrap
def test_check_isolation_reports_an_unprivileged_separate_program() -> None:
    info = sandbox.check_isolation()
    assert info["mechanism"] == "bubblewrap" and info["unprivileged"] and info["network_blocked"], info
    if info["root"]:
        assert info["privilege_drop_works"] and info["separate_uid"], info


@needs_bwrap
def test_timeouts_kill_the_program() -> None:
    res = run_program("while True:\n    pass\n", timeout_s=1)
    assert res.status == "timeout" and "wall-clock timeout after 1s" in res.reason
    assert res.duration_s < 3
    res = run_program("import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_DFL)\nwhile True:\n    pass\n",
                      timeout_s=5, cpu_s=1)
    assert res.status == "timeout", res
    assert "CPU time limit" in res.reason or "wall-clock" in res.reason


@needs_bwrap
def test_memory_bound_covers_the_whole_program() -> None:
    # three children of 200 MiB each under a 400 MiB bound: each is under RLIMIT_AS, the sum is not
    source = prog("""
        import os, time
        kids = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                block = bytearray(200 * 2**20)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(1)
                os._exit(0)
            kids.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(k, 0)[1]) for k in kids]
        assert codes == [0, 0, 0], codes
    """)
    res = run_program(source, memory_mb=400, timeout_s=20)
    assert res.status == "failed", res
    if res.isolation["memory_bound"].startswith("cgroup"):
        assert "memory limit exceeded" in res.reason or "[0, 0, 0]" not in res.reason
    assert run_program("x = bytearray(300 * 2**20)\n", memory_mb=128).reason == "exit code 1: MemoryError"


@needs_bwrap
def test_run_many_keeps_order_and_runs_in_parallel() -> None:
    sources = [f"import time\ntime.sleep(0.5)\nprint({i})\n" for i in range(8)]
    start = time.monotonic()
    results = run_many(sources, jobs=4)
    elapsed = time.monotonic() - start
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]
    assert elapsed < 8 * 0.5, elapsed  # sequential would take 4 s
    uids = {r.isolation["uid"] for r in results}
    if os.geteuid() == 0:
        assert len(uids) >= 2  # concurrent programs never share a uid


@needs_bwrap
def test_run_many_mixed_outcomes_one_verdict_each() -> None:
    sources = ["pass", "assert False", "while True: pass", "import sys; sys.exit(0)", "def f(:"]
    results = run_many(sources, timeout_s=1.5, jobs=3)
    assert [r.status for r in results] == ["passed", "failed", "timeout", "passed", "failed"]
    assert run_many([]) == []


def test_without_bubblewrap_the_sandbox_refuses_with_one_line_and_the_install_hint(monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_SANDBOX_NO_BWRAP", "1")
    assert sandbox.mechanism() == "refuse"
    res = run_program("print('should not run')")
    assert res.status == "error" and res.stdout == "" and res.isolation["mechanism"] == "refuse"
    assert res.reason == ("refusing to run untrusted code: HARNESS_SANDBOX_NO_BWRAP is set "
                          "(apt-get install bubblewrap, or `make install` as root)")
    assert [r.status for r in run_many(["pass", "pass"])] == ["error", "error"]
    assert run_program(CheckedProgram("def f(): pass", "def check(c): pass", "f")).status == "error"
    info = sandbox.check_isolation()
    assert not info["unprivileged"] and "refusing" in info["reason"]


@needs_bwrap
def test_a_sandbox_failure_costs_only_that_program_its_verdict(monkeypatch) -> None:
    real_acquire = sandbox_slots.acquire
    calls = []

    def flaky_acquire(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("no slot for you")
        return real_acquire(*args, **kwargs)

    monkeypatch.setattr(sandbox_slots, "acquire", flaky_acquire)
    results = run_many(["print('a')", "print('b')", "print('c')", "print('d')"], jobs=2)
    assert sorted(r.status for r in results) == ["error", "passed", "passed", "passed"]
    bad = next(r for r in results if r.status == "error")
    assert bad.reason == "sandbox setup failed: OSError: no slot for you"
    monkeypatch.setattr(sandbox_bwrap, "BWRAP", "/bin/false")
    res = run_program("print('x')")
    assert res.status == "error" and res.reason.startswith("sandbox setup failed"), res
