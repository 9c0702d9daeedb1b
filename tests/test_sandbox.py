"""The code sandbox, with real subprocesses and hostile programs.

Each hostile program must be contained and reported as not passed with a reason, and the test process
and every file outside the sandbox must be left intact. Tests that rely on the program running as
another, unprivileged user first check :func:`check_isolation` and skip (saying why) when it does not.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from harness import sandbox
from harness.sandbox import SandboxResult, run_many, run_program

# iso, hostile_ok, other_user and mode are fixtures in tests/conftest.py.


@pytest.fixture
def victim_dir():
    """A root-owned directory others may enter (0o755) holding a readable file and a root-only file."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-victim-", dir="/tmp"))
    path.chmod(0o755)
    (path / "keep.txt").write_text("keep me")
    (path / "keep.txt").chmod(0o644)
    (path / "secret.txt").write_text("top-secret-token")
    (path / "secret.txt").chmod(0o600)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def prog(text: str) -> str:
    return textwrap.dedent(text).lstrip()


def _first_line(res: SandboxResult) -> str:
    return res.stdout.splitlines()[0] if res.stdout else ""


def _leftovers(workdir: str, pgid: int | None) -> list[int]:
    """Live or zombie processes still in the program's group, or still working in its directory."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            in_group = pgid is not None and int(fields[2]) == pgid
        except (OSError, IndexError, ValueError):
            continue
        try:
            in_dir = bool(workdir) and os.readlink(f"/proc/{entry}/cwd").startswith(workdir)
        except OSError:
            in_dir = False
        if in_group or in_dir:
            found.append(int(entry))
    return found


def _assert_contained(res: SandboxResult, workdir: str) -> None:
    assert res.pgid is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(res.pgid, 0)
    assert _leftovers(workdir, res.pgid) == []
    assert not os.path.exists(workdir)
    # The test process itself still works: it can start a process.
    assert subprocess.run(["true"], check=False).returncode == 0


# ----------------------------------------------------------------------------------------------
# Ordinary programs


def test_passing_program_captures_stdout(mode: str) -> None:
    res = run_program("print('hello')\nimport sys\nprint('warn', file=sys.stderr)\n")
    assert res.status == "passed" and res.passed
    assert res.returncode == 0
    assert res.stdout == "hello\n"
    assert res.stderr == "warn\n"
    assert res.reason == ""
    assert res.duration_s > 0
    assert res.isolation["network"] in ("netns", "guard")
    assert res.isolation["limits"]["memory_mb"] == 1024
    if mode == "no-namespaces":
        assert res.isolation["network"] == "guard" and not res.isolation["pidns"]


def test_failing_assert_reports_assertion_error() -> None:
    res = run_program("def add(a, b):\n    return a - b\n\nassert add(1, 2) == 3, 'add is wrong'\n")
    assert res.status == "failed"
    assert res.returncode == 1
    assert "AssertionError" in res.reason and "add is wrong" in res.reason
    assert "Traceback" in res.stderr


def test_syntax_error_is_a_failure() -> None:
    res = run_program("def f(:\n    pass\n")
    assert res.status == "failed"
    assert "SyntaxError" in res.reason


def test_exit_code_and_signal_are_reported() -> None:
    res = run_program("import sys\nsys.exit(3)\n")
    assert (res.status, res.returncode, res.reason) == ("failed", 3, "exit code 3")
    res = run_program("import os, signal\nos.kill(os.getpid(), signal.SIGABRT)\n")
    assert res.status == "failed"
    assert res.returncode == -signal.SIGABRT
    assert "SIGABRT" in res.reason


def test_temp_working_dir_is_private_and_removed() -> None:
    res = run_program(
        prog(
            """
            import os, stat
            print(os.getcwd())
            open("scratch.txt", "w").write("x" * 1000)
            os.mkdir("sub")
            os.chmod("sub", 0)
            print(oct(stat.S_IMODE(os.stat(".").st_mode)), os.stat(".").st_uid == os.getuid())
            """
        )
    )
    assert res.status == "passed", res
    workdir, perms = res.stdout.splitlines()
    assert perms == "0o700 True"
    assert not os.path.exists(workdir)
    assert not os.path.exists(os.path.dirname(workdir))


def test_stdin_is_closed() -> None:
    res = run_program(
        "import sys\ndata = sys.stdin.read()\nassert data == '', data\nprint('eof')\n", timeout_s=5
    )
    assert res.status == "passed", res
    assert res.stdout == "eof\n"
    assert res.duration_s < 4


def test_ten_megabytes_of_output_is_capped() -> None:
    res = run_program("import sys\nsys.stdout.write('x' * 10_000_000)\nsys.stderr.write('y' * 200_000)\n")
    assert res.status == "passed", res.reason
    assert res.stdout.startswith("x" * 65536)
    assert len(res.stdout) < 65536 + 200 and "truncated: 10000000 bytes" in res.stdout
    assert len(res.stderr) < 65536 + 200 and "truncated" in res.stderr
    small = run_program("print('a' * 5000)\n", max_output=100)
    assert small.stdout.startswith("a" * 100) and len(small.stdout) < 300


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        run_program("pass", timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        run_program("pass", memory_mb=0)


def test_check_isolation_reports(iso: dict) -> None:
    for key in ("root", "privilege_drop_works", "unprivileged", "netns", "pidns", "network", "reason"):
        assert key in iso
    assert iso["root"] == (os.geteuid() == 0)
    if iso["privilege_drop_works"]:
        assert iso["probe"]["uid"] != 0 and iso["probe"]["euid"] != 0 and not iso["probe"]["regained_root"]
        assert iso["privilege_drop"] == "setuid"
    if iso["pidns"]:  # the program is pid 2 under a small init, which is not what it can signal
        assert (iso["probe"]["pid"], iso["probe"]["ppid"]) == (2, 1)
    if iso["netns"] or iso["network"] == "guard":
        assert iso["network_blocked"]


# ----------------------------------------------------------------------------------------------
# Never as root


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root harness has privileges to drop")
def test_refuses_to_run_as_root_when_the_drop_fails(monkeypatch, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    # Pretend the sandbox user were root: the launcher's own check after setuid must refuse.
    monkeypatch.setattr(sandbox, "_sandbox_ids", lambda: (0, 0, True))
    res = run_program(f"open({str(marker)!r}, 'w').write('ran as root')\n")
    assert res.status == "error"
    assert "refusing to run model code as root" in res.reason
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root harness has privileges to drop")
def test_refuses_a_sandbox_user_with_uid_zero(monkeypatch, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    monkeypatch.setattr(sandbox, "SANDBOX_USER", "root")
    res = run_program(f"open({str(marker)!r}, 'w').write('ran as root')\n")
    assert res.status == "error"
    assert "refusing to run model code as root" in res.reason
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------
# Hostile programs


def test_infinite_loop_is_killed_with_its_children(mode: str) -> None:
    source = prog(
        """
        import os
        print(os.getcwd(), flush=True)
        os.fork()
        while True:
            pass
        """
    )
    res = run_program(source, timeout_s=1.0)
    assert res.status == "timeout"
    assert "timeout" in res.reason
    assert res.duration_s < 4
    _assert_contained(res, _first_line(res))


def test_cpu_limit() -> None:
    res = run_program("while True:\n    pass\n", timeout_s=20, cpu_s=1)
    assert res.status == "timeout"
    assert "CPU time limit" in res.reason
    assert res.duration_s < 10


def test_daemon_left_behind_is_killed(hostile_ok: dict, mode: str) -> None:
    source = prog(
        """
        import os, time
        print(os.getcwd(), flush=True)
        if os.fork() == 0:
            os.setsid()  # leave the process group
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        print("parent done")
        """
    )
    res = run_program(source, timeout_s=5)
    assert res.status == "passed", res.reason
    _assert_contained(res, _first_line(res))


def test_memory_bomb_fails_under_rlimit_as() -> None:
    source = prog(
        """
        try:
            blob = bytearray(10 * 1024**3)
        except MemoryError:
            print("10 GB refused", flush=True)
        chunks = []
        while True:
            chunks.append(bytearray(64 * 1024**2))
        """
    )
    res = run_program(source, memory_mb=256, timeout_s=10)
    assert res.status == "failed"
    assert "MemoryError" in res.reason
    assert res.stdout == "10 GB refused\n"


def test_fork_bomb_is_bounded_by_rlimit_nproc(hostile_ok: dict, mode: str) -> None:
    counting = prog(
        """
        import os, time
        print(os.getcwd(), flush=True)
        kids = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                kids += 1
        finally:
            print(kids, flush=True)
        """
    )
    res = run_program(counting, max_procs=32, timeout_s=5)
    assert res.status == "failed", res
    assert "BlockingIOError" in res.reason or "Resource temporarily unavailable" in res.reason
    workdir, kids = res.stdout.splitlines()[:2]
    assert int(kids) < 32
    _assert_contained(res, workdir)

    classic = "import os\nprint(os.getcwd(), flush=True)\nwhile True:\n    os.fork()\n"
    res = run_program(classic, max_procs=32, timeout_s=3)
    assert res.status in ("failed", "timeout"), res
    assert res.reason
    _assert_contained(res, _first_line(res))


def test_huge_file_fails_under_rlimit_fsize() -> None:
    source = prog(
        """
        import os
        print(os.getcwd(), flush=True)
        with open("big.bin", "wb") as f:
            for _ in range(100):
                f.write(b"x" * 1024 * 1024)
        """
    )
    res = run_program(source, max_file_mb=2)
    assert res.status == "failed"
    assert "File too large" in res.reason
    assert not os.path.exists(_first_line(res))


@pytest.mark.parametrize(
    "attack",
    [
        "open(VICTIM / 'keep.txt', 'w').write('pwned')",
        "os.remove(VICTIM / 'keep.txt')",
        "os.rename(VICTIM / 'keep.txt', VICTIM / 'moved.txt')",
        "os.chmod(VICTIM / 'keep.txt', 0o666)",
        "open(VICTIM / 'new.txt', 'w').write('pwned')",
    ],
    ids=["overwrite", "delete", "rename", "chmod", "create"],
)
def test_cannot_touch_files_outside_its_dir(other_user: dict, victim_dir: Path, attack: str) -> None:
    before = sorted(p.name for p in victim_dir.iterdir())
    res = run_program(f"import os\nfrom pathlib import Path\nVICTIM = Path({str(victim_dir)!r})\n{attack}\n")
    assert res.status == "failed"
    assert "PermissionError" in res.reason
    assert sorted(p.name for p in victim_dir.iterdir()) == before
    assert (victim_dir / "keep.txt").read_text() == "keep me"
    assert stat.S_IMODE((victim_dir / "keep.txt").stat().st_mode) == 0o644


def test_cannot_read_a_root_only_file(other_user: dict, victim_dir: Path) -> None:
    res = run_program(f"print(open({str(victim_dir / 'secret.txt')!r}).read())\n")
    assert res.status == "failed"
    assert "PermissionError" in res.reason
    assert "top-secret-token" not in res.stdout + res.stderr
    assert (victim_dir / "secret.txt").read_text() == "top-secret-token"


def test_cannot_kill_the_parent_or_the_harness(hostile_ok: dict, mode: str) -> None:
    if not (hostile_ok["separate_uid"] or (hostile_ok["pidns"] and mode == "namespaces")):
        pytest.skip("the program runs as the test's uid without a pid namespace: it could signal the test")
    me = os.getpid()
    source = prog(
        f"""
        import os, signal
        os.kill(os.getppid(), signal.SIGKILL)
        os.kill({me}, signal.SIGKILL)
        os.killpg(os.getpgid({me}), signal.SIGKILL)
        print("killed them")
        """
    )
    res = run_program(source, timeout_s=5)
    assert res.status == "failed", res
    assert "PermissionError" in res.reason or "ProcessLookupError" in res.reason
    assert "killed them" not in res.stdout
    os.kill(me, 0)  # still here
    assert run_program("print('after')").stdout == "after\n"


def test_network_is_blocked(mode: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        source = prog(
            f"""
            import socket
            with socket.create_connection(("127.0.0.1", {port}), timeout=3) as s:
                s.sendall(b"pwned")
            print("connected")
            """
        )
        res = run_program(source, timeout_s=10)
        assert res.status == "failed", res
        assert "connected" not in res.stdout
        assert res.isolation["network"] in ("netns", "guard")
        assert "Error" in res.reason
        if res.isolation["network"] == "guard":
            assert "network access is disabled" in res.reason
        srv.settimeout(0.3)
        with pytest.raises(TimeoutError):
            srv.accept()


def test_network_guard_blocks_sockets(tmp_path: Path) -> None:
    """The fallback used where no network namespace can be made (here run outside the sandbox)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        (tmp_path / "main.py").write_text(
            prog(
                f"""
                import ssl, sys, socket, _socket  # ssl subclasses socket.socket: must still import
                assert sys.argv == ["main.py"], sys.argv
                for attempt in (lambda: socket.create_connection(("127.0.0.1", {port}), timeout=3),
                                lambda: socket.socket(), lambda: _socket.socket(), socket.socketpair):
                    try:
                        attempt()
                    except PermissionError:
                        continue
                    raise SystemExit("a socket was made")
                raise PermissionError("all blocked")
                """
            )
        )
        proc = subprocess.run(
            [sys.executable, "-I", "-c", sandbox._NETWORK_GUARD, "main.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 1, proc.stderr
        assert "PermissionError: all blocked" in proc.stderr
        srv.settimeout(0.3)
        with pytest.raises(TimeoutError):
            srv.accept()


# ----------------------------------------------------------------------------------------------
# Many at once


def test_run_many_runs_in_parallel_and_keeps_order() -> None:
    sources = [f"import time\ntime.sleep(1)\nprint({i})\n" for i in range(6)]
    start = time.monotonic()
    results = run_many(sources, jobs=6, timeout_s=20)
    wall = time.monotonic() - start
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]
    assert all(r.status == "passed" for r in results)
    assert wall < 4.5, f"6 one-second programs took {wall:.1f}s with jobs=6"


def test_run_many_default_jobs_mixed_outcomes() -> None:
    sources = ["print('a')", "assert False, 'nope'", "while True: pass", "print('d')", "raise ValueError(7)"]
    results = run_many(sources, timeout_s=2)
    assert [r.status for r in results] == ["passed", "failed", "timeout", "passed", "failed"]
    assert results[0].stdout == "a\n" and results[3].stdout == "d\n"
    assert "AssertionError: nope" in results[1].reason
    assert "ValueError: 7" in results[4].reason
    assert run_many([]) == []
