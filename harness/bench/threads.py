"""Wall time of one ``harness run`` with the default threads, before and after a code change, alternating.

    python -m harness.bench.threads --before-src /tmp/old-checkout -- \\
        --model smollm2-135m --method sft --benchmark gsm8k-chat \\
        --set limit=4 --set train_limit=4 --set train.steps=2 --set max_new_tokens=64

Runs the same ``harness run`` command (no ``--threads``: each side's default) as a fresh process,
alternating ``before`` (``PYTHONPATH=--before-src``: an older ``harness`` and ``plugins`` tree, e.g.
``git archive <commit> harness plugins | tar -x -C DIR``) and ``after`` (this checkout), ``--reps`` times
each, with ``--no-resume`` and a fresh ``--out`` per run. Prints each run's wall time and the medians.
Not a test: on a real model it takes minutes. The machine is shared, so only the alternating ratio means
anything. Paths in the arguments must be absolute (each run starts in a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(args: list[str], out: Path, src: str | None) -> tuple[float, int, str]:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("OMP_WAIT_POLICY", None)
    if src:
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-c", "import harness.cli as c, sys; print('code:', c.__file__, file=sys.stderr); c.main()", "run", *args, "--no-resume", "--quiet",
           "--out", str(out)]
    t0 = time.perf_counter()
    # cwd outside any checkout: with ``-c`` the current folder comes first on sys.path
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=out.parent)
    wall = time.perf_counter() - t0
    return wall, res.returncode, res.stderr[:300] + (res.stdout + res.stderr)[-2000:]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before-src", required=True, help="folder holding the older harness/ and plugins/")
    ap.add_argument("--after-src", default=None, help="folder holding the newer harness/ and plugins/ (default: "
                    "this checkout; a snapshot keeps edits made while it runs out of the measurement)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the times here")
    ap.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then the `harness run` arguments")
    a = ap.parse_args(argv)
    run_args = a.run_args[1:] if a.run_args[:1] == ["--"] else a.run_args
    times: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        for rep in range(a.reps):
            for side, src in (("before", a.before_src), ("after", a.after_src)):
                wall, rc, tail = one_run(run_args, Path(tmp) / f"{side}{rep}", src)
                code = next((ln for ln in tail.splitlines() if ln.startswith("code:")), "")
                print(f"{side} rep {rep}: {wall:.1f} s (exit {rc}) {code}", flush=True)
                if rc != 0:
                    print(tail, file=sys.stderr)
                    sys.exit(1)
                times[side].append(wall)
    b, f = statistics.median(times["before"]), statistics.median(times["after"])
    print(f"median before {b:.1f} s, after {f:.1f} s, ratio {b / f:.2f}x ({os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f})")
    if a.json:
        a.json.write_text(json.dumps({"args": run_args, "times": times, "cores": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
