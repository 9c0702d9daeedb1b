"""Slots: a user id and a cgroup reserved for one sandboxed program at a time.

A program runs in a *slot*. Slot ``k`` has its own uid (``UID_BASE + k`` when the harness runs as
root; the harness's own uid otherwise, where bubblewrap's user namespace maps it to itself) and its
own cgroup, which bounds the memory and the number of processes of the whole program (every process
it starts) and lets the harness kill all of them at once. Slots are taken with ``flock`` on a lock
file per slot, so programs running at the same time -- in this process or another harness on the
same machine -- never share a uid or a cgroup; the lock dies with the process that holds it.
Slots (and their cgroups) are reused: creating a memory cgroup per program would cost more than the
program.

cgroup v2 is used where its memory and pids controllers can be enabled below the harness's own
cgroup; otherwise cgroup v1 (the ``memory`` and ``pids`` hierarchies); otherwise no cgroup, and
:attr:`Slot.memory_bound` says so (the program is then bounded per process by ``RLIMIT_AS`` only).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field

from harness.evaluation import sandbox_pidfd as pidfds

UID_BASE = int(os.environ.get("HARNESS_SANDBOX_UID_BASE", "2000000000"))
"""First uid of the per-program uids (as root). No user on the machine may own ids in the range."""
MAX_SLOTS = 512
_CG_NAME = "harness-sandbox"
_CGROOT = "/sys/fs/cgroup"


def _is_root() -> bool:
    return os.geteuid() == 0


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read()


def _own_cgroup(controller: str | None) -> str | None:
    """This process's cgroup path in ``controller``'s v1 hierarchy (``None``: the v2 one)."""
    try:
        lines = _read("/proc/self/cgroup").splitlines()
    except OSError:
        return None
    for line in lines:
        hid, ctrls, path = line.split(":", 2)
        if controller is None and hid == "0" and ctrls == "":
            return path
        if controller is not None and controller in ctrls.split(","):
            return path
    return None


def _counter(path: str, key: str) -> int:
    """``key``'s value in a flat-keyed cgroup file (``memory.events``, ``memory.oom_control``)."""
    with contextlib.suppress(OSError, ValueError):
        for line in _read(path).splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


@dataclass
class CgroupLayout:
    """Where the per-slot cgroups live: ``version`` 2 or 1 (0: none), and why not a better one."""

    version: int
    memory_parent: str = ""
    pids_parent: str = ""
    note: str = ""

    @property
    def memory_bound(self) -> str:
        return {2: "cgroup-v2", 1: "cgroup-v1"}.get(self.version, "rlimit-as-per-process")


def _setup_v2() -> CgroupLayout:
    own = _own_cgroup(None)
    if own is None or not os.path.exists(f"{_CGROOT}/cgroup.controllers"):
        raise OSError("no cgroup v2 hierarchy at /sys/fs/cgroup")
    base = os.path.normpath(f"{_CGROOT}/{own}")
    available = _read(f"{base}/cgroup.controllers").split()
    if not {"memory", "pids"} <= set(available):
        raise OSError(f"cgroup v2 controllers memory+pids not available in {base}")
    parent = f"{base}/{_CG_NAME}"
    os.makedirs(parent, exist_ok=True)
    # Enabling controllers for children fails with EBUSY if the harness's own cgroup holds processes
    # (v2's no-internal-processes rule); then we fall back.
    _write(f"{base}/cgroup.subtree_control", "+memory +pids")
    _write(f"{parent}/cgroup.subtree_control", "+memory +pids")
    return CgroupLayout(2, parent, parent)


def _setup_v1() -> CgroupLayout:
    parents = []
    for ctrl in ("memory", "pids"):
        own = _own_cgroup(ctrl)
        root = f"{_CGROOT}/{ctrl}"
        if own is None or not os.path.isdir(root):
            raise OSError(f"no cgroup v1 {ctrl} hierarchy")
        parent = os.path.normpath(f"{root}/{own}/{_CG_NAME}")
        os.makedirs(parent, exist_ok=True)
        parents.append(parent)
    return CgroupLayout(1, parents[0], parents[1])


_layout: CgroupLayout | None = None
_layout_lock = threading.Lock()


def cgroup_layout() -> CgroupLayout:
    """Find (once) where per-slot cgroups can be made; ``version=0`` with a ``note`` if nowhere."""
    global _layout
    with _layout_lock:
        if _layout is None:
            notes = []
            if not _is_root() or os.environ.get("HARNESS_SANDBOX_NO_CGROUP"):
                notes.append("cgroups not used (not root)" if not _is_root() else "HARNESS_SANDBOX_NO_CGROUP set")
            else:
                for setup in (_setup_v2, _setup_v1):
                    try:
                        _layout = setup()
                        break
                    except OSError as exc:
                        notes.append(f"{setup.__name__[7:]}: {exc}")
            if _layout is None:
                _layout = CgroupLayout(0, note="; ".join(notes))
        return _layout


@dataclass
class Slot:
    """One reserved uid (+ cgroup). Use :func:`acquire` / :meth:`release`."""

    index: int
    uid: int
    gid: int
    layout: CgroupLayout
    lock_fd: int
    memory_cg: str = ""
    pids_cg: str = ""
    _limits: tuple[int, int] | None = field(default=None, repr=False)
    _oom_before: int = 0

    @property
    def memory_bound(self) -> str:
        return self.layout.memory_bound if self.memory_cg else "rlimit-as-per-process"

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process must write its pid to, to enter this slot's cgroups."""
        files = [f"{self.memory_cg}/cgroup.procs"] if self.memory_cg else []
        if self.pids_cg and self.pids_cg != self.memory_cg:
            files.append(f"{self.pids_cg}/cgroup.procs")
        return files

    def prepare(self, memory_bytes: int, max_procs: int) -> None:
        """Make (or reuse) the cgroups and set this program's limits."""
        if not self.layout.version:
            return
        name = f"slot-{self.index}"
        mem = f"{self.layout.memory_parent}/{name}"
        pids = f"{self.layout.pids_parent}/{name}"
        for path in dict.fromkeys((mem, pids)):
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o755)
        if self._limits != (memory_bytes, max_procs):
            if self.layout.version == 2:
                _write(f"{mem}/memory.max", str(memory_bytes))
                with contextlib.suppress(OSError):
                    _write(f"{mem}/memory.swap.max", "0")
            else:
                _set_v1_memory(mem, memory_bytes)
            _write(f"{pids}/pids.max", str(max_procs))
            self._limits = (memory_bytes, max_procs)
        self.memory_cg, self.pids_cg = mem, pids
        self._oom_before = self.oom_kills()

    def oom_kills(self) -> int:
        if not self.memory_cg:
            return 0
        if self.layout.version == 2:
            return _counter(f"{self.memory_cg}/memory.events", "oom_kill")
        return _counter(f"{self.memory_cg}/memory.oom_control", "oom_kill")

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this program for exceeding its memory bound."""
        return self.oom_kills() > self._oom_before

    def members(self) -> list[int]:
        pids: set[int] = set()
        for path in self.procs_files():
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in _read(path).split())
        return sorted(pids)

    def kill_all(self, deadline_s: float = 5.0) -> bool:
        """SIGKILL every process in the slot until none is left; True if it is empty."""
        if self.layout.version == 2 and self.memory_cg:
            with contextlib.suppress(OSError):
                _write(f"{self.memory_cg}/cgroup.kill", "1")
        end = time.monotonic() + deadline_s
        while True:
            pids = self._candidates()
            if not pids:
                return True
            pidfds.signal_checked(pids, self.holds)
            if time.monotonic() > end:
                return False
            time.sleep(0.002)

    def _candidates(self) -> list[int]:
        return self.members() if self.memory_cg else _pids_of_uid(self.uid) if _is_root() else []

    def holds(self, pid: int) -> bool:
        """Whether ``pid`` is (now) a process of this slot: in its cgroup, or (no cgroup) of its uid."""
        if self.memory_cg:
            v1 = self.layout.version == 1
            rel = self.memory_cg.removeprefix(f"{_CGROOT}/memory" if v1 else _CGROOT)
            for line in _read(f"/proc/{pid}/cgroup").splitlines():
                hid, ctrls, path = line.split(":", 2)
                if (v1 and "memory" in ctrls.split(",")) or (not v1 and hid == "0" and ctrls == ""):
                    return path == rel
            return False
        return _is_root() and os.stat(f"/proc/{pid}").st_uid == self.uid

    def kill_members(self, exclude: int | None = None) -> int:
        """SIGKILL (through checked pidfds) every process of the slot but ``exclude``; how many."""
        return pidfds.signal_checked([p for p in self._candidates() if p != exclude], self.holds)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)


def _set_v1_memory(path: str, limit: int) -> None:
    # memory.memsw (memory + swap) must stay >= memory: order the two writes accordingly.
    mem, memsw = f"{path}/memory.limit_in_bytes", f"{path}/memory.memsw.limit_in_bytes"
    has_sw = os.path.exists(memsw)
    try:
        _write(mem, str(limit))
        if has_sw:
            _write(memsw, str(limit))
    except OSError:
        if has_sw:
            _write(memsw, str(limit))
        _write(mem, str(limit))


def _pids_of_uid(uid: int) -> list[int]:
    """Processes whose real uid is ``uid`` (the slot's own, used by nothing else)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _private_dir(path: str) -> str:
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise OSError(f"slot lock directory {path} is not a private directory of uid {os.geteuid()}")
    return path


def _lock_dir() -> str:
    """Where the slot locks live: shared by every harness of this user on the machine."""
    tmp = os.path.join(tempfile.gettempdir(), f"harness-sandbox-{os.geteuid()}")
    if _is_root():
        try:
            return _private_dir("/run/harness-sandbox")
        except OSError:
            pass
    return _private_dir(tmp)


def acquire(timeout_s: float = 60.0) -> Slot:
    """Reserve a free slot (waiting up to ``timeout_s``). Raises ``OSError`` if none is free."""
    root = _is_root()
    layout = cgroup_layout()
    lock_dir = _lock_dir()
    end = time.monotonic() + timeout_s
    while True:
        for k in range(MAX_SLOTS):
            uid = UID_BASE + k if root else os.getuid()
            if root and _uid_taken(uid):
                continue
            fd = os.open(f"{lock_dir}/slot-{k}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            return Slot(k, uid, uid if root else os.getgid(), layout, fd)
        if time.monotonic() > end:
            raise OSError(f"no free sandbox slot among {MAX_SLOTS}")
        time.sleep(0.01)


_uid_cache: dict[int, bool] = {}


def _uid_taken(uid: int) -> bool:
    """A uid that belongs to a real user is never used for a program."""
    if uid not in _uid_cache:
        try:
            pwd.getpwuid(uid)
            _uid_cache[uid] = True
        except KeyError:
            _uid_cache[uid] = False
    return _uid_cache[uid]
