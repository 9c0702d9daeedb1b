"""The weak launcher's own process (see :mod:`harness.evaluation.sandbox_launcher`): run as a script,
``python -I sandbox_launcher_child.py CONFIG``, standard library only, single-threaded.

It enters what namespaces it can (net, pid, ipc, uts; a user namespace when not root), becomes a child
subreaper, forks the program (in a new pid namespace: a small init that forks the program as pid 2),
sets the program's rlimits and drops it to the sandbox user before exec, enforces the wall-clock
timeout by killing the program's namespace or group, reaps every descendant, and writes what happened
(exit status, timeout, set-up error, the isolation it got) to the state file the host reads.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import sys
import time
from typing import Any

_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
SETUP_FAILED = 125  # the child's exit code when it never reached exec
_REAP_GRACE_S = 2.0

# ----------------------------------------------------------------------------------------------
# Launcher side: run as ``python -I sandbox_launcher_child.py CONFIG_JSON`` (stdlib only, single thread)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> None:
    if hasattr(os, "unshare"):  # Python >= 3.12
        os.unshare(flags)
        return
    if _libc().unshare(ctypes.c_int(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _prctl(option: int, arg: int) -> None:
    libc = _libc()
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _enter_namespaces(drop: bool, allowed: bool = True) -> dict[str, Any]:
    """Unshare what the kernel allows; record what was made and why the rest was not."""
    iso: dict[str, Any] = {"netns": False, "pidns": False, "ipcns": False, "utsns": False, "userns": False}
    notes: list[str] = []
    if not allowed:
        notes.append("namespaces disabled")
        iso["privilege_drop"] = "setuid" if drop else "none"
    elif drop:  # root: each namespace on its own, so one refusal does not cost the others
        for name, flag in (
            ("netns", _CLONE_NEWNET),
            ("pidns", _CLONE_NEWPID),
            ("ipcns", _CLONE_NEWIPC),
            ("utsns", _CLONE_NEWUTS),
        ):
            try:
                _unshare(flag)
                iso[name] = True
            except OSError as exc:
                notes.append(f"{name}: {exc.strerror}")
        iso["privilege_drop"] = "setuid"
    else:  # unprivileged: namespaces only inside a new user namespace, mapping the user to itself
        uid, gid = os.getuid(), os.getgid()
        attempts = (
            ("userns+net+pid+ipc+uts", _CLONE_NEWNET | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWUTS),
            ("userns+net", _CLONE_NEWNET),
        )
        for label, extra in attempts:
            try:
                _unshare(_CLONE_NEWUSER | extra)
            except OSError as exc:
                notes.append(f"{label}: {exc.strerror}")
                continue
            iso.update(userns=True, netns=True)
            if extra & _CLONE_NEWPID:
                iso.update(pidns=True, ipcns=True, utsns=True)
            try:
                for name, text in (
                    ("uid_map", f"{uid} {uid} 1"),
                    ("setgroups", "deny"),
                    ("gid_map", f"{gid} {gid} 1"),
                ):
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
            except OSError as exc:
                notes.append(f"userns id map: {exc.strerror} (the program runs as the overflow uid)")
            break
        iso["privilege_drop"] = "userns" if iso["userns"] else "none"
    iso["network"] = "netns" if iso["netns"] else "guard"
    iso["notes"] = notes
    return iso


def _exec_program(cfg: dict[str, Any], iso: dict[str, Any], parent_pid: int) -> None:
    """In the program's process: rlimits, drop root, verify, then exec the program."""
    if not iso["pidns"]:  # in a pid namespace it stays in the group of its init
        os.setpgid(0, 0)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    for name, (soft, hard) in cfg["rlimits"].items():
        res = getattr(resource, name)
        if not cfg["drop"]:  # an unprivileged launcher cannot raise a hard limit
            _, cur_hard = resource.getrlimit(res)
            if cur_hard != resource.RLIM_INFINITY:
                hard = min(hard, cur_hard)
                soft = min(soft, hard)
        resource.setrlimit(res, (soft, hard))
    if cfg["drop"]:
        uid, gid = cfg["uid"], cfg["gid"]
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        except OSError as exc:
            raise PermissionError(
                f"refusing to run model code as root: cannot drop to uid {uid}: {exc}"
            ) from None
        if 0 in os.getresgid() or 0 in os.getgroups():
            raise PermissionError("refusing to run model code as root: still in group 0 after the drop")
    if 0 in os.getresuid():
        raise PermissionError("refusing to run model code as root: still uid 0 after the privilege drop")
    if cfg["drop"]:
        try:
            os.setuid(0)
        except OSError:
            pass
        else:
            raise PermissionError("refusing to run model code as root: could regain uid 0")
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
    if os.getppid() != parent_pid:
        raise RuntimeError("the sandbox launcher died before the program started")
    os.chdir(cfg["workdir"])
    py = cfg["python"]
    if iso["network"] == "netns":
        argv = [py, "-I", "main.py"]
    else:
        argv = [py, "-I", "-c", cfg["guard"], "main.py"]
    os.execve(py, argv, cfg["env"])


def _program_child(cfg: dict[str, Any], iso: dict[str, Any], parent_pid: int, err_w: int) -> None:
    """Exec the program, or report on ``err_w`` why not; never returns."""
    try:
        _exec_program(cfg, iso, parent_pid)
    except BaseException as exc:  # noqa: B036 - report anything; the program never runs
        with contextlib.suppress(BaseException):
            os.write(err_w, (str(exc) or type(exc).__name__).encode("utf-8", "replace")[:2000])
    os._exit(SETUP_FAILED)


def _init_main(cfg: dict[str, Any], iso: dict[str, Any], err_w: int, status_w: int) -> None:
    """Pid 1 of the new pid namespace: start the program as pid 2, reap, report its exit status.

    The program is not pid 1 itself because the kernel protects a namespace's init from signals
    sent inside the namespace (its own SIGABRT, the RLIMIT_CPU SIGXCPU) unless it has a handler.
    When this process exits the kernel kills whatever is left in the namespace.
    """
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # no handler: nothing inside can signal us
        os.setpgid(0, 0)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        program = os.fork()
        if program == 0:
            os.close(status_w)
            _program_child(cfg, iso, 1, err_w)
        os.close(err_w)
        err_w = -1
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == program:
                break
        os.write(status_w, json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())
    except BaseException as exc:  # noqa: B036
        if err_w >= 0:
            with contextlib.suppress(BaseException):
                os.write(err_w, f"sandbox init: {type(exc).__name__}: {exc}".encode()[:2000])
        os._exit(SETUP_FAILED)
    os._exit(0)


def _wait_child(pid: int, timeout: float) -> bool:
    """Wait for child ``pid`` to exit without reaping it; False on timeout."""
    deadline = time.monotonic() + timeout
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            time.sleep(0.005)
        return False
    try:
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        return bool(ready)
    finally:
        os.close(fd)


def _reap_descendants(deadline: float) -> None:
    """Kill and reap every process re-parented to this (subreaper) launcher."""
    while True:
        kids: list[int] = []
        with contextlib.suppress(OSError):
            for tid in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{tid}/children") as f:
                    kids += [int(p) for p in f.read().split()]
        for kid in kids:
            with contextlib.suppress(OSError):
                os.kill(kid, signal.SIGKILL)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        if time.monotonic() > deadline:
            return
        time.sleep(0.005)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _launcher_main(cfg: dict[str, Any]) -> int:
    """Namespaces, then fork: the child is the program (or, in a new pid namespace, its init)."""
    state: dict[str, Any] = {"isolation": {}, "returncode": None, "timed_out": False, "setup_error": None}
    try:
        with contextlib.suppress(OSError):
            _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        iso = _enter_namespaces(cfg["drop"], cfg.get("namespaces", True))
        state["isolation"] = iso
        launcher_pid = os.getpid()
        err_r, err_w = os.pipe()  # close-on-exec: EOF once the program was exec'd (or gave up)
        status_r, status_w = os.pipe()
        deadline = time.monotonic() + cfg["timeout_s"]
        pid = os.fork()
        if pid == 0:
            os.close(err_r)
            os.close(status_r)
            if iso["pidns"]:
                _init_main(cfg, iso, err_w, status_w)
            os.close(status_w)
            _program_child(cfg, iso, launcher_pid, err_w)
        os.close(err_w)
        os.close(status_w)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        state["pgid"] = pid
        setup_error = _read_all(err_r)
        if setup_error:
            state["setup_error"] = setup_error.decode("utf-8", "replace")
        if not _wait_child(pid, deadline - time.monotonic()):
            state["timed_out"] = True
            os.kill(pid, signal.SIGKILL)  # in a pid namespace: its init, so everything in it
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # stragglers; pid is unreaped, so the group id is still its
        _, status = os.waitpid(pid, 0)
        state["returncode"] = os.waitstatus_to_exitcode(status)
        if iso["pidns"]:  # the child was the init: the program's own status comes through the pipe
            report = _read_all(status_r)
            state["returncode"] = json.loads(report)["returncode"] if report else None
        else:
            os.close(status_r)
        _reap_descendants(time.monotonic() + _REAP_GRACE_S)
    except Exception as exc:
        state["setup_error"] = state["setup_error"] or f"launcher: {type(exc).__name__}: {exc}"
    tmp = cfg["state"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f)
    os.replace(tmp, cfg["state"])
    return 0


if __name__ == "__main__":
    sys.exit(_launcher_main(json.loads(sys.argv[1])))
