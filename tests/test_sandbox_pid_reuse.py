"""Pid reuse: the sandbox never signals a process that is not its own, even when a pid it knew is reused.

The reuse is forced deterministically inside a private pid namespace (``unshare --pid --fork
--mount-proc``; never on the real host): after a world's pid 1 has exited and been reaped by
bubblewrap, ``/proc/sys/kernel/ns_last_pid`` is set so that the next fork gets exactly that pid, a
bystander is started there, and the world is then killed and finished as the pool does. Before
pidfds, ``World.kill`` sent SIGKILL to the bare pid and killed the bystander.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from harness.evaluation import sandbox_bwrap

pytestmark = [
    pytest.mark.skipif(bool(sandbox_bwrap.unusable_reason()), reason=sandbox_bwrap.unusable_reason() or "bwrap"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                       reason="needs root and unshare(1) for a private pid namespace"),
]

SCRIPT = textwrap.dedent("""
    import json, os, signal, time
    from harness.evaluation.sandbox import SandboxLimits
    from harness.evaluation.sandbox_pool import World

    assert os.getpid() == 1, "not in a private pid namespace"

    def bystander_at(pid):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        child = os.fork()
        if child == 0:
            time.sleep(60)
            os._exit(0)
        return child

    report = []
    for round_ in range(3):
        world = World(SandboxLimits(timeout_s=5.0), None)
        res = world.run("print('done')")
        stub, bwrap = world._child_pid(), world.proc.pid
        os.waitid(os.P_PID, bwrap, os.WEXITED | os.WNOWAIT)  # bwrap has reaped pid 1 and exited (not reaped)
        victim = bystander_at(stub)
        world.kill()
        world.kill(everything=True)
        problem = world.finish()
        world._kill_monitor()
        time.sleep(0.05)
        alive = os.waitpid(victim, os.WNOHANG) == (0, 0)
        report.append({"status": res.status, "stub": stub, "victim": victim, "alive": alive,
                       "problem": problem})
        if alive:  # our own child, unreaped: its pid is still its own
            os.kill(victim, signal.SIGKILL)
            os.waitpid(victim, 0)
    print(json.dumps(report))
""")


def test_a_reused_pid_of_the_world_is_never_signalled() -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", SCRIPT],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report) == 3
    for row in report:
        assert row["status"] == "passed" and row["problem"] == ""
        assert row["victim"] == row["stub"]  # the bystander really holds the world's old pid 1
        assert row["alive"], f"the harness killed a bystander at reused pid {row['victim']}"
