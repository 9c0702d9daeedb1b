"""The bubblewrap backend: each program in a world of its own, built by ``bwrap`` in one exec.

Per world the harness starts (no shell, no ``preexec_fn``; ``subprocess`` drops to the uid)::

    [as the slot's uid] bwrap ARGS python -I -S -c STUB ...

- As root the process drops to the slot's uid (distinct per concurrent program) before exec; as a
  non-root harness the uid is the harness's own. Once the world's supervisor says it is ready (and
  before the program exists) the harness moves bwrap and the supervisor into the slot's cgroups
  (memory and process bound for all the program's processes); the supervisor sets the rlimits.
- ``bwrap`` runs unprivileged: it makes a user namespace mapping the uid to itself (so inside it
  is not root, and outside it is a uid nothing else runs as), plus new pid, mount, network, ipc,
  uts (and cgroup) namespaces, and a nested user namespace that forbids making more; bwrap loads the
  seccomp filter of :mod:`harness.evaluation.sandbox_seccomp` before pid 1 starts. The world shows,
  read-only, only the interpreter, its standard library, the folders of the shared libraries it
  loads and the time zone and locale data (:func:`python_view`), with every
  ``site-packages``/``dist-packages`` hidden under an empty read-only tmpfs; ``/bin``, ``/lib*``
  as on the host (links into ``/usr`` on a merged-/usr system); its own ``/proc`` and a minimal ``/dev``; fresh size-bounded tmpfs on ``/tmp``,
  ``/var/tmp``, ``/dev/shm``, ``/run`` (with ``/run/lock``) and ``/work`` (its working folder);
  everything else -- ``/root``, ``/home``, ``/etc``, the project, the virtualenv, data files, other
  programs -- simply does not exist; ``/`` is remounted read-only. Network: a private loopback only.
- pid 1 of the world is :data:`STUB` (:mod:`harness.evaluation.sandbox_stub`), a non-dumpable
  supervisor that waits for the program (so the world can be started ahead), writes it to
  ``/work/main.py``, forks it with only fds 0-2 open, and reports its exit status on a pipe the
  program never holds; for a :class:`CheckedProgram` it also runs the tests and reports their verdict.
- stdin is ``/dev/null``, stdout and stderr are memfds: no file of the program's is ever on the
  host's disk, and the host never touches anything by a path the program could have influenced.
  When pid 1 exits the kernel kills everything left in the pid namespace and the tmpfs mounts vanish
  with the mount namespace: that *is* the cleanup.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.evaluation.sandbox_types import CheckedProgram

BWRAP = os.environ.get("HARNESS_BWRAP", "bwrap")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
WORKDIR = "/work"
_SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def bwrap_path() -> str | None:
    return shutil.which(BWRAP, path=SAFE_PATH) if not os.path.isabs(BWRAP) else (BWRAP if os.access(BWRAP, os.X_OK) else None)


_usable: dict[str, str] = {}


def unusable_reason() -> str:
    """Why bubblewrap cannot build a world on this machine (``""``: it can); checked once per process.

    Runs ``bwrap`` with the namespaces the sandbox needs around ``true``, as the uid worlds run as
    would (an unprivileged one when root), so a missing binary, a kernel without unprivileged user
    namespaces or a container profile that forbids them shows up as one clear line.
    """
    if "reason" not in _usable:
        path = bwrap_path()
        if path is None:
            _usable["reason"] = "bubblewrap (bwrap) is not installed"
        else:
            ids: dict[str, Any] = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
            cmd = [path, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                   "--disable-userns", "--ro-bind", "/", "/", "--proc", "/proc", "--", "true"]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, cwd="/",
                                      env={"PATH": SAFE_PATH}, **ids)
                why = proc.stderr.strip().splitlines()[-1:] if proc.returncode else []
                _usable["reason"] = f"bubblewrap cannot make its namespaces here: {why[0] if why else proc.returncode}" \
                    if proc.returncode else ""
            except (OSError, subprocess.SubprocessError) as exc:
                _usable["reason"] = f"bubblewrap cannot run: {exc}"
    return _usable["reason"]


@dataclass(frozen=True)
class PythonView:
    """The interpreter programs run under and the host paths the world shows of it."""

    executable: str
    binds: tuple[str, ...]  # read-only bind mounts: all of the host the world shows
    masks: tuple[str, ...]  # directories hidden under an empty read-only tmpfs


def _traversable_by_others(path: str) -> bool:
    """Every directory above ``path`` is o+x and ``path`` itself o+r or o+x (a uid of no group sees it)."""
    path = os.path.realpath(path)
    try:
        if not os.stat(path).st_mode & (stat.S_IROTH | stat.S_IXOTH):
            return False
    except OSError:
        return False
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return True
        try:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        path = parent


_LAYOUT_PROBE = (
    "import json, os, sys, sysconfig; p = sysconfig.get_paths(); "
    "dyn = [os.path.join(d, 'lib-dynload') for d in (p['stdlib'], p['platstdlib'])]; "
    "print(json.dumps({'exe': sys.executable, 'prefix': sys.base_prefix, 'stdlib': p['stdlib'], "
    "'platstdlib': p['platstdlib'], 'purelib': p['purelib'], 'platlib': p['platlib'], "
    "'dynload': [d for d in dyn if os.path.isdir(d)]}))"
)
_DATA_DIRS = ("/usr/share/zoneinfo", "/usr/lib/locale")  # time zones (zoneinfo), the C.UTF-8 locale


def _shared_library_dirs(files: list[str]) -> list[str]:
    """The resolved folders of every shared library ``files`` load (and of the links to them), by ``ldd``."""
    found: set[str] = set()
    for i in range(0, len(files), 64):
        try:
            out = subprocess.run(["ldd", *files[i : i + 64]], capture_output=True, text=True, timeout=60,
                                 check=False, env={"PATH": SAFE_PATH}).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for line in out.splitlines():
            for word in line.split():
                if word.startswith("/") and (".so" in word) and os.path.exists(word):
                    found.add(os.path.realpath(os.path.dirname(word)))  # /lib64 is a link to /usr/lib64 ...
                    found.add(os.path.dirname(os.path.realpath(word)))  # ... where ld.so is a link further on
    return sorted(found)


_view_cache: dict[tuple[str | None, bool], PythonView] = {}
_view_lock = threading.Lock()


def python_view(python: str | None, other_uid: bool) -> PythonView:
    """Find (once) an interpreter the sandbox user can start and what of it to show.

    ``other_uid``: the program runs as a uid other than the harness's, so the interpreter must be
    reachable by "others" (root's ``/root/.pyenv`` is not; ``/usr/bin/python3`` is).
    """
    key = (python, other_uid)
    with _view_lock:
        if key in _view_cache:
            return _view_cache[key]
        if python is not None:
            candidates = [python]
        else:
            candidates = [os.path.realpath(sys.executable), getattr(sys, "_base_executable", "") or ""]
            candidates += [shutil.which("python3", path=SAFE_PATH) or "", "/usr/bin/python3"]
        tried = []
        for cand in dict.fromkeys(os.path.realpath(c) for c in candidates if c):
            tried.append(cand)
            if not os.access(cand, os.X_OK) or (other_uid and not _traversable_by_others(cand)):
                continue
            try:
                out = subprocess.run(
                    [cand, "-I", "-S", "-c", _LAYOUT_PROBE], capture_output=True, text=True,
                    timeout=30, check=True, env={"PATH": SAFE_PATH},
                ).stdout
                info = json.loads(out)
            except (OSError, ValueError, subprocess.SubprocessError):
                continue
            view = _view_from(cand, info)
            _view_cache[key] = view
            return view
        raise FileNotFoundError(f"no Python interpreter the sandbox user can run (tried {', '.join(tried)})")


def _view_from(exe: str, info: dict[str, Any]) -> PythonView:
    """Only what the interpreter needs: its executable, its standard library (``lib-dynload``
    included), the folders of the shared libraries it and its extension modules load, and a few data
    folders; never the rest of ``/usr`` (other interpreters and their packages live there). Every
    ``site-packages``/``dist-packages`` inside what is shown is hidden under an empty tmpfs."""
    prefix = os.path.realpath(info["prefix"])
    stdlibs = [os.path.realpath(info[k]) for k in ("stdlib", "platstdlib")]
    if prefix == "/usr" or prefix.startswith("/usr/"):
        shown = [os.path.realpath(exe), *stdlibs]
    else:
        shown = [prefix] if os.path.realpath(exe).startswith(prefix + "/") else [prefix, os.path.realpath(exe)]
    so_files = [os.path.realpath(exe)]
    for d in info.get("dynload", []):
        with contextlib.suppress(OSError):
            so_files += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".so")]
    shown += _shared_library_dirs(so_files)
    shown += [d for d in _DATA_DIRS if os.path.isdir(d)]
    binds: list[str] = []
    for path in sorted(dict.fromkeys(shown), key=len):  # drop what an earlier (shorter) bind already shows
        if not any(path == b or path.startswith(b + "/") for b in binds):
            binds.append(path)
    masks = {os.path.realpath(info[k]) for k in ("purelib", "platlib")}
    for root in binds:
        if os.path.isdir(root):
            for pattern in ("site-packages", "dist-packages", "lib*/python3*/site-packages",
                            "lib*/python3*/dist-packages", "lib*/python3/dist-packages"):
                masks.update(os.path.realpath(p) for p in glob.glob(f"{root}/{pattern}"))
    masks = {m for m in masks if os.path.isdir(m) and any(m == v or m.startswith(v + "/") for v in binds)}
    return PythonView(exe, tuple(binds), tuple(sorted(masks)))


STUB = (Path(__file__).parent / "sandbox_stub.py").read_text(encoding="utf-8")
"""pid 1 of every world (see :mod:`harness.evaluation.sandbox_stub`), run with ``python -I -S -c``."""
_HEADER = 16


def job_bytes(program: str | CheckedProgram) -> bytes:
    """What the host writes into a world's source memfd for ``program`` (strict UTF-8: raises
    ``UnicodeEncodeError`` on a lone surrogate)."""
    if isinstance(program, CheckedProgram):
        part_a = json.dumps({"code": program.candidate, "entry": program.entry_point}, ensure_ascii=False)
        part_b = json.dumps({"tests": program.tests, "check": program.check}, ensure_ascii=False)
        a, b = part_a.encode("utf-8"), part_b.encode("utf-8")
        return b"C" + str(len(a)).rjust(_HEADER - 1, "0").encode() + a + b
    data = program.encode("utf-8")
    return b"P" + str(len(data)).rjust(_HEADER - 1, "0").encode() + data


def world_args(view: PythonView, *, go_fd: int, src_fd: int, status_fd: int, bwrap_status_fd: int,
               tmpfs_bytes: int, rlimits: dict[str, tuple[int, int]], seccomp_fd: int | None = None) -> list[str]:
    """bwrap's arguments for a fresh world: namespaces, mounts, environment; then the waiting stub."""
    size = str(tmpfs_bytes)
    args = ["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []
    args += [
        "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session", "--as-pid-1",
        "--hostname", "sandbox", "--json-status-fd", str(bwrap_status_fd),
        "--clearenv", "--setenv", "PATH", SAFE_PATH, "--setenv", "HOME", WORKDIR,
        "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8",
    ]
    for name in _SYSTEM_LINKS:
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in view.binds:
        args += ["--ro-bind", path, path]
    for path in view.masks:
        args += ["--perms", "0555", "--size", "4096", "--tmpfs", path, "--remount-ro", path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    for path in ("/tmp", "/var/tmp", "/dev/shm", "/run", WORKDIR):
        args += ["--perms", "1777" if path != WORKDIR else "0755", "--size", size, "--tmpfs", path]
    args += ["--dir", "/run/lock", "--chdir", WORKDIR, "--remount-ro", "/"]
    limits = ",".join(f"{name.removeprefix('RLIMIT_')}:{soft}:{hard}" for name, (soft, hard) in rlimits.items())
    args += [view.executable, "-I", "-S", "-c", STUB, str(go_fd), str(src_fd), str(status_fd), limits]
    return args
