"""Quantizing the decoder: the GGUF Q4_1 block format written from scratch, and the fp32 /
bf16 / int8 variants of the LLM measured side by side.

Q4_1 (llama.cpp) cuts each weight row into blocks of 32 values and stores, per block, a
scale d and a minimum m (fp16 each) and 32 four-bit codes q in 0..15:

    d = (max - min) / 15,   q = round((w - min) / d),   w_hat = d * q + m

20 bytes per 32 weights = 5 bits per weight (6.4x smaller than fp32). Rounding to the
nearest of 16 levels errs by at most d / 2, and by d / sqrt(12) RMS when weights are spread
evenly inside a step. Byte j of the 16 code bytes holds q[j] in its low nibble and q[j + 16]
in its high nibble.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

BLOCK = 32
BLOCK_BYTES = 2 + 2 + BLOCK // 2  # fp16 d, fp16 m, 16 bytes of packed 4-bit codes


def quantize_q4_1(weights: np.ndarray) -> np.ndarray:
    """Float weights (..., K), K a multiple of 32 -> Q4_1 blocks, uint8 (..., K // 32 * 20)."""
    w = np.asarray(weights, dtype=np.float32)
    if w.shape[-1] % BLOCK:
        raise ValueError(f"The last dimension ({w.shape[-1]}) must be a multiple of {BLOCK}: "
                         "Q4_1 quantizes rows in blocks of 32 weights.")
    blocks = w.reshape(-1, BLOCK)  # (N, 32)
    low, high = blocks.min(axis=1, keepdims=True), blocks.max(axis=1, keepdims=True)
    d = (high - low) / 15
    with np.errstate(divide="ignore", over="ignore"):
        inv = np.where(d == 0, 0, 1 / d).astype(np.float32)
    inv[~np.isfinite(inv)] = 0  # d below float32 range: stored as fp16 0 anyway
    # round half up, in float32, exactly as llama.cpp / gguf-py do (so the bytes match)
    q = np.trunc((blocks - low) * inv + np.float32(0.5)).astype(np.uint8).clip(0, 15)
    packed = q[:, :16] | (q[:, 16:] << np.uint8(4))  # (N, 16)
    header = np.concatenate([d.astype(np.float16).view(np.uint8),
                             low.astype(np.float16).view(np.uint8)], axis=1)  # (N, 4)
    out = np.concatenate([header, packed], axis=1)  # (N, 20)
    return out.reshape(*w.shape[:-1], -1)


def dequantize_q4_1(raw: np.ndarray) -> np.ndarray:
    """Q4_1 blocks, uint8 (..., n * 20) -> float32 weights (..., n * 32)."""
    raw = np.asarray(raw, dtype=np.uint8)
    if raw.shape[-1] % BLOCK_BYTES:
        raise ValueError(f"The last dimension ({raw.shape[-1]}) must be a multiple of "
                         f"{BLOCK_BYTES} bytes (one Q4_1 block = 20 bytes).")
    blocks = raw.reshape(-1, BLOCK_BYTES)  # (N, 20)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)  # (N, 1)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)  # (N, 1)
    codes = blocks[:, 4:]
    q = np.concatenate([codes & 0x0F, codes >> 4], axis=1).astype(np.float32)  # (N, 32)
    return (d * q + m).reshape(*raw.shape[:-1], -1)


def round_trip_q4_1(weights: np.ndarray, rows_per_chunk: int = 2048) -> np.ndarray:
    """dequantize(quantize(weights)), a few thousand rows at a time, so that the temporary
    arrays stay small next to a large matrix (the 49,152 x 576 embedding)."""
    w = np.asarray(weights, dtype=np.float32)
    out = np.empty_like(w)
    for start in range(0, len(w), rows_per_chunk):
        chunk = w[start: start + rows_per_chunk]
        out[start: start + rows_per_chunk] = dequantize_q4_1(quantize_q4_1(chunk))
    return out


def block_scales(raw: np.ndarray) -> np.ndarray:
    """The scale d of every Q4_1 block (float32, one per 32 weights)."""
    return raw.reshape(-1, BLOCK_BYTES)[:, 0:2].copy().view(np.float16).astype(np.float32)[:, 0]


def _error_sums(weights: np.ndarray, approx: np.ndarray) -> tuple[float, float, float]:
    """Sum of squared errors, sum of squared weights and the largest |error|, in float64, a
    few thousand rows at a time (no big copies)."""
    w = np.atleast_2d(np.asarray(weights))
    w = w.reshape(w.shape[0], -1)
    a = np.asarray(approx).reshape(w.shape)
    sq_err = sq_w = worst = 0.0
    for start in range(0, len(w), 4096):
        wc = w[start: start + 4096].astype(np.float64)
        err = a[start: start + 4096].astype(np.float64) - wc
        sq_err += float((err ** 2).sum())
        sq_w += float((wc ** 2).sum())
        worst = max(worst, float(np.abs(err).max()))
    return sq_err, sq_w, worst


def _error_figures(sq_err: float, sq_w: float, worst: float, n: int) -> dict:
    rms, rms_w = (sq_err / n) ** 0.5, (sq_w / n) ** 0.5
    return {"rms_error": rms, "max_abs_error": worst,
            "relative_rms_error": rms / rms_w if rms_w else float("nan")}


def reconstruction_error(weights: np.ndarray, approx: np.ndarray) -> dict:
    """RMS and max error of `approx` against `weights`, and the RMS error relative to the
    weights' own RMS (the signal-to-noise view)."""
    return _error_figures(*_error_sums(weights, approx), np.asarray(weights).size)


def round_trip_q4_1_(weight: torch.Tensor, rows_per_chunk: int = 2048) -> dict:
    """Replace the matrix `weight` in place by dequantize(quantize(weight)), a few thousand
    rows at a time, and return `reconstruction_error`'s figures: no second copy of a large
    matrix (the 113 MB embedding) is ever made."""
    sums = np.zeros(2)
    worst = 0.0
    with torch.no_grad():
        for start in range(0, weight.shape[0], rows_per_chunk):
            chunk = weight[start: start + rows_per_chunk]
            w = chunk.detach().float().cpu().numpy()
            approx = dequantize_q4_1(quantize_q4_1(w))
            sq_err, sq_w, chunk_worst = _error_sums(w, approx)
            sums += (sq_err, sq_w)
            worst = max(worst, chunk_worst)
            chunk.copy_(torch.from_numpy(approx))
    return _error_figures(float(sums[0]), float(sums[1]), worst, weight.numel())


def read_gguf(path: str | Path):
    """`gguf.GGUFReader` of a GGUF file (memory-mapped: nothing is read until used)."""
    import gguf

    return gguf.GGUFReader(str(path))


def tensor_table(reader) -> pd.DataFrame:
    """One row per tensor kind in the file: its format, count, weights and bits per weight."""

    rows = {}
    for t in reader.tensors:
        kind = t.name.split(".", 2)[-1] if t.name.startswith("blk.") else t.name
        row = rows.setdefault(kind, {"tensor": kind, "format": t.tensor_type.name, "count": 0,
                                     "weights": 0, "bytes": 0})
        row["count"] += 1
        row["weights"] += int(t.n_elements)
        row["bytes"] += int(t.n_bytes)
    table = pd.DataFrame(rows.values())
    table["bits_per_weight"] = 8 * table["bytes"] / table["weights"]
    return table.sort_values("bytes", ascending=False, ignore_index=True)


def q4_1_report(reader, names: list[str] | None = None) -> pd.DataFrame:
    """For Q4_1 tensors of the file: our dequantization against gguf's (max difference), the
    re-quantization round trip (share of blocks whose bytes come back identical) and the
    rounding error the scales imply (RMS d / sqrt(12), relative to the weights' RMS): what
    Q4_1 cost the published weights, which the file no longer holds."""
    import gguf

    rows = []
    for t in reader.tensors:
        if t.tensor_type != gguf.GGMLQuantizationType.Q4_1 or (names and t.name not in names):
            continue
        raw = np.asarray(t.data)
        ours = dequantize_q4_1(raw)
        theirs = gguf.quants.dequantize(raw, t.tensor_type)
        again = quantize_q4_1(ours)
        d = block_scales(raw)
        rms_w = float(np.sqrt((ours.astype(np.float64) ** 2).mean()))
        rows.append({"tensor": t.name, "weights": int(t.n_elements),
                     "max |ours - gguf|": float(np.abs(ours - theirs).max()),
                     "blocks identical after re-quantizing": float(
                         (again.reshape(-1, BLOCK_BYTES) == raw.reshape(-1, BLOCK_BYTES))
                         .all(axis=1).mean()),
                     "implied relative RMS error": float(np.sqrt((d.astype(np.float64) ** 2
                                                                  / 12).mean())) / rms_w})
    return pd.DataFrame(rows)


def q8_0_weights(reader, name: str = "token_embd.weight", rows: int | None = None
                 ) -> np.ndarray:
    """A Q8_0 tensor of the file (its first `rows` rows) as float32: 8.5 bits per weight, 255
    levels per block of 32 instead of 16, a fair stand-in for the original when measuring
    what 4 bits cost."""
    import gguf

    t = next(t for t in reader.tensors if t.name == name)
    return gguf.quants.dequantize(np.asarray(t.data[:rows]), t.tensor_type)


# ----------------------------------------------------------------------------- variants
VARIANTS = ("fp32", "bf16", "int8")


def make_variant(model: nn.Module, kind: str) -> nn.Module:
    """Turn an fp32 model into `kind` in place (no second copy: three copies of a 135 M
    model would not fit a 2 GB budget): bf16 casts every weight; int8 swaps every nn.Linear
    (the tied output layer too) for PyTorch's dynamically quantized int8 Linear."""
    import warnings

    if kind not in VARIANTS:
        raise ValueError(f"Unknown variant {kind!r}; choose one of {', '.join(VARIANTS)}.")
    if kind == "bf16":
        return model.to(torch.bfloat16)
    if kind == "int8":
        with warnings.catch_warnings():  # torch.ao.quantization is deprecated (see compress)
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear},
                                                           dtype=torch.qint8, inplace=True)
        # The fp32 weights a model loads may live in a memory map of its safetensors file;
        # copying the tensors that stay float (embedding, norms) lets the map, which the
        # quantization paged in whole, be released.
        with torch.no_grad():
            for p in model.parameters():
                p.data = p.data.clone()
        gc.collect()
    return model


def weights_mb(model: nn.Module) -> float:
    """MB (10^6 bytes) the model's weights take in memory, shared (tied) tensors counted once
    and int8 weights at one byte each; computed without serializing a copy."""
    from torch.ao.nn.quantized import dynamic as qdynamic

    seen, total = set(), 0

    def add(t) -> None:
        nonlocal total
        if isinstance(t, (tuple, list)):
            for x in t:
                add(x)
        elif isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()

    for module in model.modules():
        if isinstance(module, qdynamic.Linear):  # int8 weight and fp32 bias, packed
            add(module.weight())
            add(module.bias())
        else:
            for t in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
                add(t)
    return total / 1e6


def decode_speed(model: nn.Module, tokenizer, prompt: str, new_tokens: int = 32,
                 repeats: int = 2) -> float:
    """Greedy decoding tokens/s at batch 1 (best of `repeats`, exactly `new_tokens` tokens).

    Pinned to one core (Binder, the book's heavy lane) the clock is this process's CPU time,
    which leaves out the time other programs ran on that core; otherwise the wall clock."""
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(model.device)
    clock = time.process_time if _one_core() and model.device.type == "cpu" else time.perf_counter
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats):
            start = clock()
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id)
            best = min(best, clock() - start)
    return new_tokens / best


def _one_core() -> bool:
    import os

    try:
        return len(os.sched_getaffinity(0)) == 1
    except AttributeError:  # macOS
        return False


# ----------------------------------------------------------------------------- exercise
def check_q4_1_block(fn, quiet: bool = False):
    """fn(block: float32 (32,)) -> (d, m, q): scale, minimum and 32 integer codes in 0..15,
    such that d * q + m reconstructs the block (round to nearest)."""
    from .exercises import _call, _Failed, _run_check

    def body() -> str:
        rng = np.random.default_rng(0)
        for block in (rng.normal(0, 0.05, 32).astype(np.float32),
                      np.linspace(-1, 2, 32, dtype=np.float32)):
            got = _call(fn, block.copy())
            if not isinstance(got, tuple) or len(got) != 3:
                raise _Failed("return a tuple (d, m, q).")
            d, m, q = float(got[0]), float(got[1]), np.asarray(got[2])
            if q.shape != (32,):
                raise _Failed(f"q has shape {q.shape}; give one code per weight, shape (32,).")
            if q.min() < 0 or q.max() > 15 or not np.allclose(q, np.round(q)):
                raise _Failed("codes must be whole numbers from 0 to 15 (4 bits).")
            if not np.isclose(m, block.min(), atol=1e-6):
                raise _Failed(f"m = {m:.5f} should be the block's minimum ({block.min():.5f}).")
            if not np.isclose(d, (block.max() - block.min()) / 15, rtol=1e-5):
                raise _Failed("d should be (max - min) / 15: 16 levels span min..max.")
            err = np.abs(d * q + m - block).max()
            if err > d / 2 + 1e-6:
                raise _Failed(f"max error {err:.4f} > d/2 = {d / 2:.4f}: round to the nearest "
                              "code, don't truncate.")
        return "16 levels between the minimum and the maximum, nearest one per weight."

    return _run_check(body, quiet)
