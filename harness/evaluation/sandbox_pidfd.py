"""Signal only what is ours: every signal the sandbox sends goes through a pidfd.

A bare pid names whatever process holds that number *now*; once the process it meant has exited and
been reaped (by bubblewrap, by the world's pid 1, by the kernel), the number can go to any new
process on the machine, and a sandboxed program can make pids wrap round quickly. A pidfd
(``pidfd_open(2)``) names one process for ever: a signal sent through it after that process is gone
fails with ``ESRCH`` instead of reaching a stranger.

A pidfd opened on a bare pid is only as good as the moment it was opened, so each is *checked after
opening*: the property that makes the process ours (its parent is bubblewrap; it is in the slot's
cgroup; it runs as the slot's uid) is read from ``/proc/PID`` and then the pidfd is polled alive. If the
process the pidfd names was alive after the read, the read was of that process; if it was not, any
signal through the pidfd goes nowhere.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Callable

__all__ = ["alive", "open_checked", "open_child_of", "send", "signal_checked"]


def send(pidfd: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` through ``pidfd``; False if the process is gone (or the fd is closed)."""
    try:
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except OSError:
        return False


def alive(pidfd: int) -> bool:
    """Whether the process ``pidfd`` names has not exited (a pidfd polls readable once it has)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return not poller.poll(0)


def open_checked(pid: int, is_ours: Callable[[int], bool]) -> int | None:
    """A pidfd of ``pid`` if the process holding it is ours by ``is_ours(pid)``, checked after opening."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        if is_ours(pid) and alive(fd):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2 :].split()[1])  # after "pid (comm) state"


def open_child_of(pid: int, parent: int, parent_fd: int) -> int:
    """A pidfd of ``pid``, which must be a live child of ``parent`` (itself named by ``parent_fd``)."""
    fd = open_checked(pid, lambda p: _ppid(p) == parent and alive(parent_fd))
    if fd is None:
        raise OSError(f"pid {pid} is not (or no longer) a child of bwrap {parent}")
    return fd


def signal_checked(pids: list[int], is_ours: Callable[[int], bool], sig: int = signal.SIGKILL) -> int:
    """Signal each of ``pids`` that is ours (checked after taking its pidfd); how many were signalled."""
    sent = 0
    for pid in pids:
        fd = open_checked(pid, is_ours)
        if fd is None:
            continue
        try:
            sent += send(fd, sig)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
    return sent
