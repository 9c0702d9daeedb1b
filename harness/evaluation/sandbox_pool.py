"""A warm pool of bubblewrap worlds: each started ahead of its program, used once, reaped behind.

Making namespaces and tearing them down costs little CPU but wall time (the kernel waits for RCU
grace periods when a mount or network namespace goes away), and so does starting an interpreter.
The pool hides both: while ``jobs`` programs run, the next worlds are already built and their
interpreters wait (see :data:`harness.evaluation.sandbox_bwrap.STUB`); a finished world is killed and reaped
by a background thread while the next program runs. Each world holds its own slot (uid + cgroup)
from start to reaping, so worlds alive at the same time never share a uid. A world runs exactly one
program; nothing of one program is ever seen by another.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import signal
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from harness.evaluation import sandbox_bwrap as bw
from harness.evaluation import sandbox_pidfd as pidfds
from harness.evaluation import sandbox_seccomp as seccomp
from harness.evaluation import sandbox_slots as slots
from harness.evaluation.sandbox_types import CheckedProgram, SandboxLimits, SandboxResult

_MIB = 1024 * 1024
_KILL_GRACE_S = 5.0
_START_GRACE_S = 30.0  # how long a world may take to exit once killed (bwrap's teardown)


def _memfd(name: str) -> int:
    return os.memfd_create(name, os.MFD_CLOEXEC)


def _read_memfd(fd: int, limit: int) -> str:
    size = os.fstat(fd).st_size
    head = os.pread(fd, limit, 0) if limit else b""
    text = head.decode("utf-8", errors="replace")
    if size > limit:
        text += f"\n... [output truncated: {size} bytes, first {limit} kept]\n"
    return text


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text[-4096:].splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _read_all(fd: int) -> bytes:
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks)


def input_problem(source: str | CheckedProgram, max_bytes: int) -> str:
    """Why ``source`` cannot be handed to a world (``""``: it can): not UTF-8, or over the file limit."""
    parts = [source.candidate, source.tests] if isinstance(source, CheckedProgram) else [source]
    for part in parts:
        try:
            size = len(part.encode("utf-8"))
        except UnicodeEncodeError as exc:
            return f"input error: the program is not valid UTF-8 text ({exc.reason} at character {exc.start})"
        if size > max_bytes:
            return (f"input error: the program is {size} bytes, over the sandbox's file limit of {max_bytes} "
                    "bytes (max_file_mb)")
    return ""


class World:
    """One started world waiting for its program (or one that could not be started: ``problem``)."""

    def __init__(self, limits: SandboxLimits, python: str | None) -> None:
        self.limits = limits
        self.problem = ""
        self.fds: list[int] = []
        self._child: int | None = None
        self._stub_fd: int | None = None  # a pidfd of the world's pid 1, taken while it is known alive
        self._bwrap_fd: int | None = None  # a pidfd of bwrap (our own child: its pid is ours until reaped)
        self._bw_text = b""
        self.started = False
        self.slot: slots.Slot | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.isolation: dict[str, Any] = {"mechanism": "bubblewrap", "limits": asdict(limits)}
        try:
            self._start(python)
        except Exception as exc:  # noqa: BLE001 - becomes this program's error
            self.problem = f"{type(exc).__name__}: {exc}"

    def _fd(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def _start(self, python: str | None) -> None:
        limits = self.limits
        root = os.geteuid() == 0
        bwrap = bw.bwrap_path()
        if bwrap is None:
            raise FileNotFoundError("bwrap not found")
        view = bw.python_view(python, other_uid=root)
        self.slot = slot = slots.acquire()
        slot.prepare(limits.memory_mb * _MIB, limits.max_procs + 2)  # + bwrap and the supervisor
        self.isolation.update(
            uid=slot.uid, gid=slot.gid, user=f"uid {slot.uid}", slot=slot.index,
            privilege_drop="setuid+userns" if root else "userns",
            userns=True, pidns=True, mountns=True, netns=True, ipcns=True, utsns=True, network="netns",
            memory_bound=slot.memory_bound, python=view.executable, prestarted=True,
            notes=[slot.layout.note] if slot.layout.note else [],
        )
        self.src = self._fd(_memfd("main.py"))
        self.out, self.err = self._fd(_memfd("stdout")), self._fd(_memfd("stderr"))
        go_r, self.go = os.pipe2(os.O_CLOEXEC)
        self.status, status_w = os.pipe2(os.O_CLOEXEC)
        self.bw_status, bw_status_w = os.pipe2(os.O_CLOEXEC)
        seccomp_fd, no_seccomp = seccomp.filter_fd()
        self.isolation.update(seccomp=seccomp_fd is not None)
        if no_seccomp:
            self.isolation["notes"].append(no_seccomp)
        child_ends = (go_r, status_w, bw_status_w, *([seccomp_fd] if seccomp_fd is not None else []))
        self.fds += [self.go, self.status, self.bw_status]
        try:
            rlimits = limits.rlimits()
            rlimits["RLIMIT_NPROC"] = (limits.max_procs + 1, limits.max_procs + 1)  # + the supervisor
            args = bw.world_args(view, go_fd=go_r, src_fd=self.src, status_fd=status_w,
                                 bwrap_status_fd=bw_status_w, tmpfs_bytes=limits.max_file_mb * _MIB,
                                 rlimits=rlimits, seccomp_fd=seccomp_fd)
            ids: dict[str, Any] = {"user": slot.uid, "group": slot.gid, "extra_groups": []} if root else {}
            self.proc = subprocess.Popen(
                [bwrap, *args], stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err,
                pass_fds=(self.src, *child_ends), cwd="/", env={"PATH": bw.SAFE_PATH},
                start_new_session=True, close_fds=True, **ids,
            )
        finally:
            for fd in child_ends:
                os.close(fd)
        self._bwrap_fd = self._fd(os.pidfd_open(self.proc.pid))  # unreaped: the pid cannot have been reused
        # The supervisor says "R" once the world is up; then, before any program process exists,
        # bwrap and the supervisor join the slot's cgroups (the program and its children inherit them).
        ready, _, _ = select.select([self.status], [], [], _START_GRACE_S)
        self.started = bool(ready) and os.read(self.status, 1) == b"R"
        if self.started:
            child = self._child_pid()
            if child is None:
                raise OSError("bwrap did not report the world's pid 1")
            self._stub_fd = self._fd(pidfds.open_child_of(child, self.proc.pid, self._bwrap_fd))
            if slot.memory_cg:
                for path in slot.procs_files():
                    for pid in (self.proc.pid, child):
                        slots._write(path, str(pid))

    def run(self, source: str | CheckedProgram) -> SandboxResult:
        """Hand the world its program, wait for the verdict (not for the world's teardown)."""
        limits, iso = self.limits, self.isolation
        start = time.monotonic()
        timed_out = started = False
        code: int | None = None
        checked: dict[str, Any] | None = None
        if self.problem or self.proc is None or self.slot is None:
            return SandboxResult("error", None, "", "", f"sandbox setup failed: {self.problem}", 0.0, iso)
        bad_input = input_problem(source, limits.max_file_mb * _MIB)
        if bad_input:
            return SandboxResult("error", None, "", "", bad_input, 0.0, iso)
        started = self.started
        try:
            if started:
                view = memoryview(bw.job_bytes(source))
                while view:
                    view = view[os.write(self.src, view):]
                os.write(self.go, b"1")
                ready, _, _ = select.select([self.status], [], [], limits.timeout_s)
                if ready:  # the program has ended: the stub writes its status and exits
                    text = _read_all(self.status)
                    if text.startswith(b"C"):
                        checked = json.loads(text[1:])
                        code = 0 if checked["passed"] else 1
                    else:
                        code = int(text) if text else None
                else:
                    timed_out = True
        except (OSError, ValueError, KeyError, TypeError):
            code = None
        duration = time.monotonic() - start
        self.kill()
        oom = self.slot.oom_killed()
        stdout = _read_memfd(self.out, limits.max_output)
        stderr = _read_memfd(self.err, limits.max_output)
        pgid = self.proc.pid

        def result(state: str, rc: int | None, reason: str) -> SandboxResult:
            return SandboxResult(state, rc, stdout, stderr, reason, duration, iso, pgid)  # type: ignore[arg-type]

        if timed_out:
            return result("timeout", None, f"wall-clock timeout after {limits.timeout_s:g}s; killed")
        if code is None:  # the stub never reported: the world did not start, or the stub was killed
            self._reap(_START_GRACE_S)
            rc = self.proc.returncode
            status = self._bw_report()
            if not started or "child-pid" not in status:
                why = _last_line(stderr) or f"bwrap exited with {rc}"
                return result("error", None, f"sandbox setup failed: {why}")
            if oom:
                return result("failed", None, self._oom_reason())
            return result("failed", None, "the program's supervisor was killed (signal to its parent?)")
        if oom:
            return result("failed", code, self._oom_reason())
        if checked is not None:
            return result("passed", 0, "") if checked["passed"] else result("failed", 1, str(checked["reason"]))
        if code == 0:
            return result("passed", 0, "")
        if code < 0:
            if -code == signal.SIGXCPU:
                return result("timeout", code, "CPU time limit exceeded (SIGXCPU)")
            return result("failed", code, f"killed by signal {_signame(-code)}")
        line = _last_line(stderr)
        return result("failed", code, f"exit code {code}: {line}" if line else f"exit code {code}")

    def _oom_reason(self) -> str:
        return f"memory limit exceeded: the program used over {self.limits.memory_mb} MiB (killed by the kernel)"

    def _child_pid(self) -> int | None:
        """The host pid of the world's pid 1 (the stub), from bwrap's status report (non-blocking)."""
        if self._child is None:
            with contextlib.suppress(OSError):
                os.set_blocking(self.bw_status, False)
                self._bw_text += os.read(self.bw_status, 65536)
            for line in self._bw_text.decode("utf-8", "replace").splitlines():
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    self._child = int(json.loads(line).get("child-pid"))
        return self._child

    def _bw_report(self) -> dict[str, Any]:
        """All of bwrap's status report (``child-pid``, ``exit-code``), once it has exited."""
        with contextlib.suppress(OSError):
            os.set_blocking(self.bw_status, True)
        text = self._bw_text + _read_all(self.bw_status)
        merged: dict[str, Any] = {}
        for line in text.decode("utf-8", "replace").splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    merged.update(obj)
        return merged

    def kill(self, everything: bool = False) -> None:
        """SIGKILL the world's pid 1 (the kernel then kills everything else in its pid namespace) and
        let bwrap reap it and exit. Killing bwrap's own processes first would orphan pid 1 to an init
        that may never reap it. ``everything``: every process of the slot but bwrap's monitor (when
        the world has no pid 1 yet, or it would not go).

        Every signal goes through a pidfd (of pid 1, taken while it was alive, or of a slot member
        checked to be one after its pidfd was opened): never to a bare pid that may have been reaped
        and handed to another process."""
        if self.proc is None:
            return
        if self._stub_fd is not None:
            pidfds.send(self._stub_fd, signal.SIGKILL)
        if (everything or self._stub_fd is None) and self.slot is not None:
            self.slot.kill_members(exclude=self.proc.pid)

    def _kill_monitor(self) -> None:
        if self._bwrap_fd is not None:
            pidfds.send(self._bwrap_fd, signal.SIGKILL)

    def _reap(self, timeout: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def finish(self) -> str:
        """Kill, reap, check that nothing of the world is left, free the slot; a problem or ``""``."""
        problem = ""
        try:
            self.kill()
            if not self._reap(_START_GRACE_S):
                self.kill(everything=True)
                self._kill_monitor()
                if not self._reap(_START_GRACE_S):
                    problem = "the sandbox did not exit after SIGKILL"
            if self.slot is not None and not self.slot.kill_all(_KILL_GRACE_S):
                problem = "processes of the program survived SIGKILL; its slot is retired"
        except Exception as exc:  # noqa: BLE001
            problem = f"sandbox cleanup failed: {type(exc).__name__}: {exc}"
        finally:
            for fd in self.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if self.slot is not None and not problem:
                self.slot.release()
            # an unclean slot keeps its lock for the life of this process: its uid is never reused
        return problem


class WorldPool:
    """Start up to ``ahead`` worlds in advance for ``count`` programs; run them; reap behind.

    Use as a context manager; :meth:`run` from any number of threads. Leaving the context waits
    until every world is reaped and turns the result of any program whose world could not be
    cleaned up into ``status="error"``.
    """

    def __init__(self, limits: SandboxLimits, python: str | None, count: int, ahead: int) -> None:
        self.limits, self.python = limits, python
        self._to_start = count
        self._lock = threading.Lock()
        self._ready: queue.Queue[Future[World]] = queue.Queue()
        self._starter = ThreadPoolExecutor(max_workers=max(1, min(ahead, 4)), thread_name_prefix="sandbox-start")
        self._reaper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sandbox-reap")
        self._finishing: list[tuple[Future[str], SandboxResult]] = []
        self._started: list[Future[World]] = []
        for _ in range(min(ahead, count)):
            self._start_one()

    def _start_one(self) -> None:
        with self._lock:
            if self._to_start <= 0:
                return
            self._to_start -= 1
        fut = self._starter.submit(World, self.limits, self.python)
        self._started.append(fut)
        fut.add_done_callback(self._ready.put)

    def run(self, source: str | CheckedProgram) -> SandboxResult:
        fut = self._ready.get()
        self._start_one()
        world = fut.result()  # World() never raises: a failed start is its ``problem``
        try:
            res = world.run(source)
        except Exception as exc:  # noqa: BLE001
                res = SandboxResult("error", None, "", "", f"sandbox failure: {type(exc).__name__}: {exc}", 0.0,
                                world.isolation)
        done = self._reaper.submit(world.finish)
        with self._lock:
            self._finishing.append((done, res))
        return res

    def __enter__(self) -> WorldPool:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._to_start = 0
        # Worlds started but never used: finish them too. The starter threads must outlive every
        # world they started (bwrap's --die-with-parent fires when the *thread* that started it
        # exits, which would orphan the world's pid 1), so they are shut down last.
        for fut in list(self._started):
            if not fut.done():
                fut.result()
        while True:
            try:
                fut = self._ready.get_nowait()
            except queue.Empty:
                break
            self._reaper.submit(fut.result().finish)
        self._reaper.shutdown(wait=True)
        self._starter.shutdown(wait=True)
        for done, res in self._finishing:
            problem = done.result()
            if problem:
                res.status, res.reason = "error", f"{problem} (after: {res.status} {res.reason})"[:400]
