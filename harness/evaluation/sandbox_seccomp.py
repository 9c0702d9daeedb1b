"""A seccomp filter for every world: system calls a test program never needs fail with ``EPERM``.

Built once per process with libseccomp (through ``pyseccomp``, its ctypes binding) and handed to
bubblewrap (``--seccomp FD``), which loads it just before it starts the world's pid 1, so the
supervisor and the program both run under it. Denied:

- the kernel keyrings (``add_key``, ``keyctl``, ``request_key``): a program could otherwise leave a
  key in a keyring the next program of the same uid reads;
- reaching into other processes: ``ptrace``, ``process_vm_readv``/``writev``, ``pidfd_getfd``,
  ``kcmp``, and ``prlimit64`` on any process but the caller itself (``pid != 0``): the program cannot
  trace, read, or change the limits of its supervisor;
- namespaces and mounts (``unshare``, ``setns``, ``mount``, ``umount2``, ``pivot_root``, ...), and
  kernel interfaces a test never needs (``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring_*``,
  module loading, ``kexec``, ``reboot``, swap, ``acct``, ``quotactl``, handles by name).

Calls of other architectures (the 32-bit ABI) kill the process (libseccomp's default for a foreign
architecture). Without ``pyseccomp`` or libseccomp the worlds run without the filter and their
``isolation`` record says so (``seccomp: false`` and why).
"""

from __future__ import annotations

import os
import threading

DENIED = (
    "add_key", "keyctl", "request_key",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "unshare", "setns", "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount",
    "fsconfig", "fspick", "mount_setattr",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    "ioperm", "iopl", "syslog", "personality",
)
_EPERM = 1
_lock = threading.Lock()
_cache: dict[str, bytes | str] = {}


def _build() -> bytes:
    import pyseccomp as sc

    f = sc.SyscallFilter(defaction=sc.ALLOW)
    for name in DENIED:
        try:
            f.add_rule(sc.ERRNO(_EPERM), name)
        except (ValueError, RuntimeError, OSError):
            continue  # a call this kernel/libseccomp does not know: nothing to deny
    f.add_rule(sc.ERRNO(_EPERM), "prlimit64", sc.Arg(0, sc.NE, 0))
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as out:
            f.export_bpf(out)
        return os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)


def program() -> tuple[bytes | None, str]:
    """The compiled filter (classic BPF, as ``bwrap --seccomp`` reads it) or None, and why not."""
    with _lock:
        if "bpf" not in _cache:
            try:
                _cache["bpf"] = _build()
                _cache["why"] = ""
            except Exception as exc:  # noqa: BLE001 - no filter; the isolation record says why
                _cache["bpf"] = b""
                _cache["why"] = f"no seccomp filter: {type(exc).__name__}: {exc}"
    bpf, why = _cache["bpf"], _cache["why"]
    assert isinstance(bpf, bytes) and isinstance(why, str)
    return (bpf or None), why


def filter_fd() -> tuple[int | None, str]:
    """A fresh fd holding the filter (bwrap reads it once; the caller closes it), or None and why not."""
    bpf, why = program()
    if bpf is None:
        return None, why
    fd = os.memfd_create("seccomp", os.MFD_CLOEXEC)
    os.write(fd, bpf)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd, ""
