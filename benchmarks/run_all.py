"""Run every benchmark in benchmarks/ (bench_*.py), one process each: `make bench`.

Each script prints its ratios, measured in one run, and merges its own key into
results/bench.json; this runner adds "_run_all" there: which scripts ran, their exit status
and time, and the machine. Run it alone on the machine (on a shared box, under a lock such as
`flock /tmp/heavy.lock python benchmarks/run_all.py`), or the timings measure the neighbours.

    python benchmarks/run_all.py                 # all of them
    python benchmarks/run_all.py attention serving   # those whose name contains a word
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchjson import BENCH_JSON, machine, merge

HERE = Path(__file__).resolve().parent


def scripts(words: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    return [p for p in found if not words or any(w in p.stem for w in words)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="run only scripts whose name contains these")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per script")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
           "TOKENIZERS_PARALLELISM": "false"}
    status = {}
    for script in scripts(args.only):
        print(f"== {script.name}", flush=True)
        start = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, env=env,
                                  timeout=args.timeout)
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        status[script.stem] = {"returncode": code,
                               "seconds": round(time.perf_counter() - start, 1)}
        print(f"   {script.name}: exit {code}, {status[script.stem]['seconds']} s", flush=True)
    # A run of some scripts keeps the status of the others' last run (their rows stay too).
    previous = json.loads(BENCH_JSON.read_text()).get("_run_all", {}) if BENCH_JSON.exists() else {}
    merge("_run_all", {"scripts": {**previous.get("scripts", {}), **status}, "machine": machine()})
    failed = [name for name, s in status.items() if s["returncode"] != 0]
    print(f"results in {BENCH_JSON.relative_to(HERE.parent)}; "
          + (f"FAILED: {', '.join(failed)}" if failed else f"all {len(status)} ran"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
