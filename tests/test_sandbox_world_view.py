"""What a world shows and lets a program do: the interpreter's own standard library only (no other
Python's packages from /usr or /opt), and a seccomp filter that denies keyrings, ptrace and prlimit on
another process. Real worlds, real bubblewrap."""

from __future__ import annotations

import ast
import json
import os
import subprocess

import pytest

from harness.evaluation import sandbox_bwrap, sandbox_seccomp
from harness.evaluation.sandbox import run_many, run_program

pytestmark = pytest.mark.skipif(bool(sandbox_bwrap.unusable_reason()), reason=sandbox_bwrap.unusable_reason() or "")


def _package_dirs() -> list[str]:
    out = subprocess.run(["find", "/usr", "/opt", "-xdev", "-type", "d", "(", "-name", "site-packages", "-o",
                          "-name", "dist-packages", ")", "-prune"], capture_output=True, text=True, timeout=300,
                         check=False).stdout
    return sorted(line for line in out.splitlines() if line)


def _top_level(folder: str) -> list[str]:
    names = set()
    for entry in os.listdir(folder):
        path = os.path.join(folder, entry)
        if entry.endswith(".py"):
            names.add(entry[:-3])
        elif entry.endswith(".so"):
            names.add(entry.split(".")[0])
        elif os.path.isdir(path) and entry.isidentifier():
            names.add(entry)
    return sorted(n for n in names if n.isidentifier())


PROBE = """
import importlib, json, sys
dirs = DIRS
imported, visible = [], []
base = list(sys.path)
for folder, names in dirs.items():
    try:
        import os
        if os.listdir(folder):
            visible.append(folder)
    except OSError:
        pass
    for name in names:
        if name in sys.stdlib_module_names or name in sys.modules:
            continue
        sys.path[:] = [folder] + base
        try:
            mod = importlib.import_module(name)
        except BaseException:
            continue
        where = [getattr(mod, "__file__", None) or "", *list(getattr(mod, "__path__", []))]
        if any(w.startswith(folder) for w in where):  # not a stdlib namespace such as __pycache__
            imported.append([folder, name, where])
print(json.dumps({"imported": imported, "visible": visible, "path": base}))
"""


def test_no_package_under_usr_or_opt_is_importable() -> None:
    dirs = {d: _top_level(d) for d in _package_dirs()}
    if not any(dirs.values()):
        pytest.skip("no site-packages/dist-packages with modules under /usr or /opt on this machine")
    res = run_program(PROBE.replace("DIRS", repr(dirs)), timeout_s=60.0)
    assert res.status == "passed", res.reason
    report = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"{sum(map(len, dirs.values()))} top-level modules in {len(dirs)} folders; none importable")
    assert report["imported"] == [] and report["visible"] == []
    assert all(p.startswith(("/usr/lib/python3", "/work")) or "python3" in p for p in report["path"] if p)


def test_the_standard_library_works() -> None:
    res = run_program("import ssl, hashlib, sqlite3, zoneinfo, decimal, ctypes, json, re, math, fractions, "
                      "statistics, datetime, unicodedata, zlib, bz2, lzma, array, heapq, bisect\n"
                      "print(zoneinfo.ZoneInfo('UTC'), hashlib.sha256(b'x').hexdigest()[:8])\n", timeout_s=20.0)
    assert res.status == "passed", res.reason
    assert res.stdout.strip() == "UTC 2d711642"


SECCOMP_PROBE = r"""
import ctypes, resource
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for name, args in (("add_key", (248, b"user", b"k", b"v", 1, -3)), ("keyctl", (250, 0, -3, 0, 0, 0)),
                   ("request_key", (249, b"user", b"k", None, 0)), ("ptrace", (101, 16, 1, 0, 0))):
    out[name] = [libc.syscall(*args), ctypes.get_errno()]
try:
    resource.prlimit(1, resource.RLIMIT_NOFILE, (3, 3))
    out["prlimit-supervisor"] = "allowed"
except OSError as exc:
    out["prlimit-supervisor"] = exc.errno
resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))
out["own-limit"] = resource.getrlimit(resource.RLIMIT_NOFILE)
print(out)
"""


@pytest.mark.skipif(sandbox_seccomp.program()[0] is None, reason=sandbox_seccomp.program()[1] or "no filter")
def test_seccomp_denies_keyrings_ptrace_and_prlimit_of_the_supervisor() -> None:
    results = run_many([SECCOMP_PROBE] * 3, timeout_s=10.0, jobs=1)  # back to back, the same slot
    for res in results:
        assert res.status == "passed", res.reason
        assert res.isolation["seccomp"] is True
        out = ast.literal_eval(res.stdout.strip())
        assert out["add_key"] == [-1, 1] and out["keyctl"] == [-1, 1] and out["request_key"] == [-1, 1]
        assert out["ptrace"] == [-1, 1] and out["prlimit-supervisor"] == 1
        assert out["own-limit"] == (100, 100)  # its own limits still work


def test_the_supervisor_ignores_signals_from_its_program() -> None:
    src = ("import os, signal, time\n"
           "for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP, signal.SIGKILL, signal.SIGSTOP):\n"
           "    os.kill(1, sig)\n"
           "time.sleep(0.2)\nprint('still judged')\n")
    res = run_program(src, timeout_s=10.0)
    assert res.status == "passed", res.reason  # the supervisor lived to report the exit status
    assert res.stdout == "still judged\n"
