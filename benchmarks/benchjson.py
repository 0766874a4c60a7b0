"""What every benchmark script shares: the machine card and merging into results/bench.json."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

BENCH_JSON = Path(__file__).resolve().parent.parent / "results" / "bench.json"


def machine() -> dict:
    """Where a figure was measured: CPU, cores, threads, library versions, time."""
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count()
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": cores,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def best_ms(fn, repeats: int, warmup: int = 2) -> float:
    """Best wall time of `fn()` over `repeats` runs after `warmup`, in ms."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def merge(key: str, result: dict, path: Path = BENCH_JSON) -> None:
    """Set one key of results/bench.json, keeping the others (atomic replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = result
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
