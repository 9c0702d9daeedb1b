"""Who runs a cell: ``host:pid:start`` tokens for sweeps and workers, and whether they still live.

The start time (field 22 of ``/proc/PID/stat``) guards against pid reuse; a zombie counts as dead (no
init reaps orphans in some containers); a worker counts as alive while anything in its process group
does. On another host none of this can be told: the store falls back to heartbeats there.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command (state, ppid, pgrp, ...), or [] where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _proc_start(pid: int) -> str:
    """The start time of a process (Linux: field 22 of /proc/PID/stat), or '' where unknown."""
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else ""


def _zombie(pid: int) -> bool:
    """A process that has exited but was not reaped (no init reaps orphans in some containers)."""
    fields = _proc_stat(pid)
    return bool(fields) and fields[0] in ("Z", "X")


def owner_token(pid: int | None = None) -> str:
    """``host:pid:start`` naming a live process; the start time guards against pid reuse."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_proc_start(pid)}"


def owner_alive(owner: str | None) -> bool | None:
    """True/False when ``owner`` ran on this host; None when it ran elsewhere (can't tell)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_s, _, start = rest.partition(":")
    if host != socket.gethostname():
        return None
    try:
        pid = int(pid_s)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass
    return _proc_start(pid) == start and not _zombie(pid)


def processes_alive(worker: str | None) -> bool | None:
    """Whether a worker (``host:pid:start``) or anything left in its process group still runs on this host;
    None when it ran on another host."""
    if not worker:
        return False
    alive = owner_alive(worker)
    if alive is not False:
        return alive
    try:
        pgid = int(worker.split(":")[1])
    except (ValueError, IndexError):
        return False
    proc = Path("/proc")
    if proc.is_dir():  # Linux: a live (not zombie) process the worker started, still in its group
        for d in proc.iterdir():
            if d.name.isdigit():
                fields = _proc_stat(int(d.name))
                if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                    return True
        return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, AttributeError, OSError):
        return False
    return True
