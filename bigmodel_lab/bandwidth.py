"""The memory-bandwidth bound on decoding speed.

At batch 1 a decoder step multiplies one token's vector by every weight matrix once: about
2 flops per weight read, far too few to keep the arithmetic units busy. The step is limited by
how fast the weights stream from memory, so

    tokens/s  <=  (memory bandwidth) / (bytes of weights read per token).

`copy_bandwidth_gbs` measures the bandwidth in the run (a large tensor copy, bytes read plus
bytes written, as STREAM's "copy" counts them); `weight_bytes_per_token` counts the bytes a
step reads; `decode_bound` puts them together with a measured tokens/s.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn


def clock(device: str | torch.device = "cpu"):
    """The timer to use: on one pinned CPU core (how the book's shared machine runs), the
    process's own CPU time, since wall time there also counts the other programs the kernel ran
    on that core meanwhile; otherwise (several cores, or a GPU) wall time."""
    try:
        pinned = len(os.sched_getaffinity(0)) == 1
    except AttributeError:  # macOS
        pinned = False
    return time.process_time if pinned and torch.device(device).type == "cpu" else time.perf_counter


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth_gbs(size_mb: int = 256, repeats: int = 5, device: str | torch.device = "cpu"
                       ) -> float:
    """Best copy bandwidth (GB/s) over `repeats` copies of a `size_mb` fp32 tensor: 2 x size
    bytes moved (read the source, write the destination). Make it several times the CPU's
    last-level cache, or the cache is measured instead of memory."""
    device = torch.device(device)
    src = torch.ones(size_mb * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up: page faults and first touch
    now = clock(device)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = now()
        dst.copy_(src)
        _sync(device)
        best = min(best, now() - t0)
    return 2 * src.nbytes / best / 1e9


def weight_bytes_per_token(model: nn.Module) -> int:
    """Bytes of weights one decoding step reads: every Linear (fp32 or dynamic int8) and norm,
    one row of each embedding table (unless the output layer reads the whole tied matrix)."""
    from torch.ao.nn.quantized import dynamic as qdynamic

    seen: set[int] = set()
    total = 0

    def add(t: torch.Tensor | None, nbytes: int | None = None) -> None:
        nonlocal total
        if t is not None and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size() if nbytes is None else nbytes

    for m in model.modules():  # Linear layers first: a tied embedding is then read in full
        if isinstance(m, qdynamic.Linear):  # unpacking makes new tensors: count, don't dedupe
            w, b = m._packed_params._weight_bias()
            total += w.numel() + (b.numel() * b.element_size() if b is not None else 0)  # int8
        elif isinstance(m, nn.Linear):
            add(m.weight)
            add(m.bias)
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            add(m.weight, m.weight.shape[1] * m.weight.element_size())
        elif not isinstance(m, (nn.Linear, qdynamic.Linear)):
            for p in m.parameters(recurse=False):
                add(p)
    return total


def decode_bound(tokens_per_s: float, weight_bytes: int, bandwidth_gbs: float) -> dict:
    """The bound and the fraction of it a measured decoding speed reaches."""
    bound = bandwidth_gbs * 1e9 / weight_bytes
    return {"tokens_per_s": tokens_per_s, "bound_tokens_per_s": bound,
            "fraction_of_bound": tokens_per_s / bound, "ms_per_token": 1e3 / tokens_per_s,
            "bound_ms_per_token": 1e3 / bound, "weight_mb": weight_bytes / 1e6}


def best_seconds(fn, repeats: int = 5, warmup: int = 1, device: str | torch.device = "cpu") -> float:
    """Best time of `fn()` over `repeats` calls, after `warmup` calls (on `clock(device)`)."""
    for _ in range(warmup):
        fn()
    now = clock(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = now()
        fn()
        best = min(best, now() - t0)
    return best
