"""More hostile programs for the code sandbox, beyond tests/test_sandbox.py: stealing the harness's
environment, signalling every process in sight, and daemons that escape their session and outlive the
timeout.

Like tests/test_sandbox.py, every test that runs hostile code first checks :func:`check_isolation` and
skips (saying why) unless model code really runs unprivileged. Each program must be contained and
reported as not passed with a reason, and the test process and files outside the sandbox left intact.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import sandbox
from harness.sandbox import SandboxResult, run_program

# iso, hostile_ok, other_user and mode are fixtures in tests/conftest.py, shared with test_sandbox.py.
SECRET_VAR = "HARNESS_SECRET_TOKEN"


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside the sandbox whose files must be byte-for-byte and mode-for-mode untouched."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-outside-", dir="/tmp"))
    path.chmod(0o755)
    (path / "keep.txt").write_text("keep me")
    (path / "keep.txt").chmod(0o644)
    before = _snapshot(path)
    yield path
    assert _snapshot(path) == before
    shutil.rmtree(path, ignore_errors=True)


def _snapshot(path: Path) -> list[tuple[str, bytes, int]]:
    return sorted((p.name, p.read_bytes(), p.stat().st_mode) for p in path.iterdir())


def prog(text: str) -> str:
    return textwrap.dedent(text).lstrip()


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _with_marker(marker: str) -> list[int]:
    """Pids (live or zombie) whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _in_dir(workdir: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd").startswith(workdir):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _harness_intact(res: SandboxResult) -> None:
    os.kill(os.getpid(), 0)
    assert subprocess.run(["true"], check=False).returncode == 0
    assert run_program("print('after')").stdout == "after\n"
    if res.pgid is not None:
        with pytest.raises(ProcessLookupError):
            os.killpg(res.pgid, 0)


# ----------------------------------------------------------------------------------------------
# (a) The harness's environment


def test_program_gets_a_minimal_environment(mode: str, monkeypatch) -> None:
    secret = "hst-" + secrets.token_hex(16)
    monkeypatch.setenv(SECRET_VAR, secret)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    res = run_program("import json, os\nprint(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))\n")
    assert res.status == "passed", res
    report = json.loads(res.stdout)
    env = report["env"]
    assert secret not in res.stdout + res.stderr
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_CTYPE"}, env  # LC_CTYPE: Python's own coercion
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["HOME"] == env["TMPDIR"] == report["cwd"]  # the program's own temporary directory
    assert not os.path.exists(report["cwd"])


def test_cannot_read_the_harness_environment_through_proc(other_user: dict, mode: str, monkeypatch,
                                                          outside: Path) -> None:
    secret = "hst-" + secrets.token_hex(16)
    monkeypatch.setenv(SECRET_VAR, secret)
    me = os.getpid()
    # The secret's halves are joined at run time, so the program's own source holds no copy to find.
    head, tail = secret[:12], secret[12:]
    source = prog(
        f"""
        import json, os
        secret = {head!r}.encode() + {tail!r}.encode()
        leaks, readable = [], 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{{pid}}/environ", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            readable += 1
            if secret in data:
                leaks.append(int(pid))
        print(json.dumps({{"leaks": leaks, "readable": readable}}), flush=True)
        print(open("/proc/{me}/environ", "rb").read())  # the harness's own environment
        """
    )
    res = run_program(source, timeout_s=10)
    assert res.status == "failed", res
    assert "PermissionError" in res.reason
    report = json.loads(res.stdout.splitlines()[0])
    assert report["leaks"] == [], report  # no process whose environment holds the secret is readable
    assert secret not in res.stdout + res.stderr
    _harness_intact(res)


# ----------------------------------------------------------------------------------------------
# (b) Signalling every process it can see


@pytest.fixture
def sentinels(iso: dict) -> Iterator[dict[str, subprocess.Popen]]:
    """``sleep 60`` processes outside the sandbox: one as the test's user, one as the sandbox user."""
    procs = {"harness_user": subprocess.Popen(["sleep", "60"], start_new_session=True)}
    if os.geteuid() == 0 and iso.get("uid") not in (None, 0):
        procs["sandbox_user"] = subprocess.Popen(
            ["sleep", "60"], user=iso["uid"], group=iso["gid"], extra_groups=[], start_new_session=True
        )
    try:
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_kill_minus_one_reaches_nothing_outside_its_pid_namespace(hostile_ok: dict, sentinels: dict,
                                                                   outside: Path) -> None:
    if not hostile_ok["pidns"]:
        pytest.skip("no pid namespace here: kill(-1) as the sandbox user would also hit every other process "
                    "of that user on this machine (other tests' programs), so it is not sent")
    source = prog(
        """
        import os, signal
        print(os.getpid(), flush=True)
        os.kill(-1, signal.SIGKILL)
        print("signalled everything")
        """
    )
    res = run_program(source, timeout_s=10)
    # In its namespace the program (pid 2) sees only its init (pid 1, never a kill(-1) target) and itself.
    assert res.status == "failed", res
    assert "ProcessLookupError" in res.reason  # ESRCH: there was no process to signal at all
    assert res.stdout == "2\n"
    time.sleep(0.2)
    for who, proc in sentinels.items():
        assert proc.poll() is None and _alive(proc.pid), f"the {who} sentinel was killed"
    _harness_intact(res)


def test_without_a_pid_namespace_only_sandbox_user_processes_are_in_reach(hostile_ok: dict, sentinels: dict,
                                                                          monkeypatch) -> None:
    """The documented limit of the fallback, probed with signal 0 (which delivers nothing)."""
    if "sandbox_user" not in sentinels:
        pytest.skip("needs a root harness to start a process as the sandbox user")
    monkeypatch.setattr(sandbox, "_USE_NAMESPACES", False)
    me, own, other = os.getpid(), sentinels["harness_user"].pid, sentinels["sandbox_user"].pid
    source = prog(
        f"""
        import os
        for pid in ({me}, {own}):
            try:
                os.kill(pid, 0)
            except PermissionError:
                continue
            raise SystemExit(f"could signal {{pid}}")
        os.kill({other}, 0)  # a process of the sandbox user: reachable without a pid namespace
        os.kill(-1, 0)
        raise PermissionError("probe done")
        """
    )
    res = run_program(source, timeout_s=10)
    assert not res.isolation["pidns"]
    assert res.status == "failed" and "PermissionError: probe done" in res.reason, res
    assert all(p.poll() is None for p in sentinels.values())
    _harness_intact(res)


# ----------------------------------------------------------------------------------------------
# (c) Daemons that leave the session and outlive the timeout


def test_setsid_daemons_outliving_the_timeout_are_killed(hostile_ok: dict, mode: str, outside: Path) -> None:
    marker = "escapee-" + secrets.token_hex(8)
    source = prog(
        f"""
        import os, signal, sys, time
        print(os.getcwd(), flush=True)
        for _ in range(3):
            if os.fork() == 0:
                os.setsid()  # a new session and process group: out of the program's group
                if os.fork() == 0:
                    os.setsid()  # not a group leader: a session of its own again
                    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                        signal.signal(sig, signal.SIG_IGN)
                    os.execv(sys.executable,
                             [sys.executable, "-c", "import time\\nwhile True: time.sleep(0.1)", {marker!r}])
                os._exit(0)  # the middle process exits: the daemon is orphaned
        time.sleep(0.5)
        print("daemons started", flush=True)
        time.sleep(60)
        """
    )
    try:
        res = run_program(source, timeout_s=2)
        assert res.status == "timeout", res
        assert "timeout" in res.reason
        workdir, started = res.stdout.splitlines()[:2]
        assert started == "daemons started"
        assert _with_marker(marker) == []
        assert _in_dir(workdir) == []
        assert not os.path.exists(workdir)
        _harness_intact(res)
    finally:
        for pid in _with_marker(marker):  # only if the test failed: leave nothing running
            os.kill(pid, signal.SIGKILL)


def test_fork_walker_is_stopped(hostile_ok: dict, mode: str, outside: Path) -> None:
    """A process that keeps forking and exiting, so that its pid never stays put.

    Scanning /proc can miss such a process (each pid lives for a moment), so the walker proves it is alive
    by appending to a heartbeat file: after the run the file must stop growing. In a pid namespace the
    walker dies with the namespace; without one, every generation it leaves is an unreaped zombie of the
    launcher (its subreaper) until the end, so RLIMIT_NPROC stops it after max_procs generations.
    """
    folder = Path(tempfile.mkdtemp(prefix="sandbox-heartbeat-", dir="/tmp"))  # reachable by the sandbox user
    folder.chmod(0o755)
    beat = folder / "heartbeat"
    beat.touch()
    beat.chmod(0o666)  # the sandbox user may append to this one file
    walk = (
        f"import os, time\nfd = os.open({str(beat)!r}, os.O_WRONLY | os.O_APPEND)\n"
        "end = time.time() + 20\n"  # bounded, so that a failure here cannot leave it running for ever
        "while time.time() < end:\n    if os.fork():\n        os._exit(0)\n    os.write(fd, b'x')\n"
    )
    source = prog(
        f"""
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            os.execv(sys.executable, [sys.executable, "-c", {walk!r}])
        time.sleep(60)
        """
    )
    try:
        res = run_program(source, timeout_s=2)
        assert res.status == "timeout", res
        assert "timeout" in res.reason
        size = beat.stat().st_size
        assert size > 0  # it did walk
        time.sleep(0.5)
        assert beat.stat().st_size == size, "the walker is still running after the run returned"
        _harness_intact(res)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
