"""What every benchmark script shares: the machine card and merging into results/bench.json."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

BENCH_JSON = Path(__file__).resolve().parent.parent / "results" / "bench.json"


def _single_core() -> bool:
    try:
        return len(os.sched_getaffinity(0)) == 1
    except AttributeError:
        return False


# On one pinned core (how `make bench` runs on the shared book machine) a benchmark's own CPU
# time is what it costs: wall time there also counts the other programs the kernel ran on
# that core meanwhile. With several cores (threads working in parallel) wall time it is.
CLOCK = time.process_time if _single_core() else time.perf_counter
CLOCK_NAME = "process CPU time (one pinned core)" if _single_core() else "wall clock"


def _cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Where a figure was measured: CPU, cores, threads, library versions, time."""
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count()
    return {
        "cpu": _cpu_name(),
        "simd": torch.backends.cpu.get_cpu_capability(),  # AVX2 machines lack fast bf16
        "cores": cores,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "clock": CLOCK_NAME,
    }


def best_ms(fn, repeats: int, warmup: int = 2) -> float:
    """Best time of `fn()` over `repeats` runs after `warmup`, in ms (on `CLOCK`)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = CLOCK()
        fn()
        best = min(best, CLOCK() - start)
    return best * 1e3


def best_of_interleaved(fns: dict, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Best time in ms of each of `fns` ({name: fn}), run in turn `repeats` times (the order
    reversed every other round), so that a slow spell of the machine hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for r in range(repeats):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            start = CLOCK()
            fns[name]()
            best[name] = min(best[name], (CLOCK() - start) * 1e3)
    return best


def merge(key: str, result: dict, path: Path = BENCH_JSON) -> None:
    """Set one key of results/bench.json, keeping the others' keys (atomic replace).

    Read, update and write happen under an exclusive lock on a sibling file, so two benchmark
    scripts finishing at once both keep their rows (neither overwrites the other's)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".json.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[key] = result
        tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
