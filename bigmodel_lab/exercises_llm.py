"""Self-checks for the exercises of notebook 14 (a real LLM from scratch).

Same contract as `exercises.py`: a check runs the reader's function against the package's
version, prints one line (PASS / NOT YET with what is wrong) and never raises.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .decoder import RMSNorm, kv_cache_bytes_per_token
from .exercises import CheckResult, _as_tensor, _call, _Failed, _run_check
from .generate import apply_repetition_penalty, apply_top_p
from .transformer import TransformerConfig


def check_rms_norm(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(x (..., C), weight (C,), eps) -> x / sqrt(mean(x^2) + eps) * weight."""

    def body() -> str:
        g = torch.Generator().manual_seed(3)
        x, w = torch.randn(2, 5, 8, generator=g) * 3 + 1, torch.rand(8, generator=g) + 0.5
        norm = RMSNorm(8, eps=1e-5)
        with torch.no_grad():
            norm.weight.copy_(w)
            ref = norm(x)
        got = _as_tensor(_call(fn, x, w, 1e-5), "The output")
        if got.shape != ref.shape:
            raise _Failed(f"shape {tuple(got.shape)}, expected {tuple(ref.shape)} (same as x).")
        if torch.allclose(got, torch.nn.functional.layer_norm(x, (8,), w, eps=1e-5), atol=1e-4):
            raise _Failed("that is LayerNorm: RMSNorm does not subtract the mean.")
        if torch.allclose(got, x / x.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt(), atol=1e-4):
            raise _Failed("multiply by the learned weight at the end.")
        if not torch.allclose(got, ref, atol=1e-5):
            raise _Failed("values differ: mean of x**2 over the last dimension, keepdim=True, "
                          "then x / sqrt(mean + eps) * weight.")
        return "your RMSNorm matches decoder.RMSNorm."

    return _run_check(body, quiet)


def check_top_p(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(logits (B, V), p) -> logits with -inf outside the nucleus."""

    def body() -> str:
        g = torch.Generator().manual_seed(4)
        logits = torch.randn(3, 30, generator=g) * 2
        for p in (0.2, 0.6, 0.9):
            got = _as_tensor(_call(fn, logits.clone(), p), "The filtered logits")
            ref = apply_top_p(logits, p)
            if got.shape != ref.shape:
                raise _Failed(f"shape {tuple(got.shape)}, expected {tuple(ref.shape)}.")
            kept, want = torch.isfinite(got), torch.isfinite(ref)
            if not kept.any(-1).all():
                raise _Failed("a row lost every token: always keep the most likely one.")
            if torch.equal(kept, want):
                continue
            more = int((kept & ~want).sum()) > 0
            raise _Failed(f"at p={p} you keep {'too many' if more else 'too few'} tokens "
                          f"({int(kept.sum())} vs {int(want.sum())}): keep the most likely tokens "
                          "until their probabilities sum to at least p (that last one included).")
        return "your nucleus keeps exactly the tokens apply_top_p keeps (p = 0.2, 0.6, 0.9)."

    return _run_check(body, quiet)


def check_kv_cache_bytes(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(config: TransformerConfig, bytes_per_number) -> bytes one token adds to the KV cache."""

    def body() -> str:
        configs = [TransformerConfig(num_layers=30, hidden_size=576, num_heads=9, num_kv_heads=3),
                   TransformerConfig(num_layers=24, hidden_size=2048, num_heads=32, num_kv_heads=32),
                   TransformerConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=1)]
        for c in configs:
            for nbytes in (4, 2):
                got, want = _call(fn, c, nbytes), kv_cache_bytes_per_token(c, nbytes)
                if got == want:
                    continue
                if got == want // 2:
                    raise _Failed("half the answer: the cache holds keys AND values.")
                if got == want // c.kv_heads * c.num_heads and c.kv_heads != c.num_heads:
                    raise _Failed("you counted query heads: only the num_kv_heads K/V heads are cached.")
                raise _Failed(f"{got} for {c.num_layers} layers, {c.kv_heads} K/V heads of "
                              f"{c.head_size}, {nbytes} bytes per number; expected {want}.")
        return "bytes per token right for grouped-query, multi-head and multi-query configs."

    return _run_check(body, quiet)


def check_repetition_penalty(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(logits (B, V), input_ids (B, T), penalty) -> penalised logits (CTRL's rule)."""

    def body() -> str:
        g = torch.Generator().manual_seed(5)
        logits, ids = torch.randn(2, 20, generator=g) * 2, torch.randint(0, 20, (2, 6), generator=g)
        got = _as_tensor(_call(fn, logits.clone(), ids, 1.5), "The penalised logits")
        ref = apply_repetition_penalty(logits, ids, 1.5)
        if torch.allclose(got, torch.where(torch.zeros_like(logits, dtype=torch.bool)
                                           .scatter(1, ids, True), logits / 1.5, logits)):
            raise _Failed("dividing a negative logit makes it larger (more likely): multiply "
                          "negative logits by the penalty instead.")
        if not torch.allclose(got, ref, atol=1e-6):
            raise _Failed("only tokens present in input_ids change: positive / penalty, "
                          "negative * penalty.")
        return "your penalty matches transformers' RepetitionPenaltyLogitsProcessor rule."

    return _run_check(body, quiet)
