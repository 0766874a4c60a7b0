"""Scaled dot-product attention, written out, plus the two masks every model needs.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

Masks are boolean with **True = may attend**, the same meaning as the bool `attn_mask` of
`torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) bool mask, True on and below the diagonal: position i may see positions <= i."""
    if T < 1:
        raise ValueError(f"causal_mask needs a sequence length T >= 1, got {T}.")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Turn a Hugging Face style (B, T) 0/1 `attention_mask` into a (B, 1, 1, T) bool mask.

    The result broadcasts over heads and query positions: every query may attend to the
    real tokens (1) of its own sequence and never to padding (0).
    """
    if attention_mask.dim() != 2:
        raise ValueError(
            "padding_mask expects the tokenizer's attention_mask of shape (batch, seq_len), "
            f"got shape {tuple(attention_mask.shape)}."
        )
    return attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)


def attention_scores(q: torch.Tensor, k: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Q K^T scaled by 1/sqrt(d_k) (or `scale`): (..., T_q, d_k) x (..., T_k, d_k) -> (..., T_q, T_k)."""
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    return (q @ k.transpose(-2, -1)) * scale


def _check_inputs(q, k, v, mask, dropout_p) -> None:
    if q.dim() < 2 or k.dim() < 2 or v.dim() < 2:
        raise ValueError(
            "q, k and v need at least 2 dimensions (..., seq_len, dim); got shapes "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}."
        )
    if q.size(-1) != k.size(-1):
        raise ValueError(
            f"q and k must share their last dimension d_k: q has {q.size(-1)}, k has {k.size(-1)} "
            f"(shapes {tuple(q.shape)} and {tuple(k.shape)})."
        )
    if k.size(-2) != v.size(-2):
        raise ValueError(
            f"k and v must have the same number of positions T_k: k has {k.size(-2)}, "
            f"v has {v.size(-2)} (shapes {tuple(k.shape)} and {tuple(v.shape)})."
        )
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}.")
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be a bool tensor (True = may attend), got dtype {mask.dtype}. "
            "Fix: pass `mask.bool()` for a 0/1 mask, or padding_mask(attention_mask) for a "
            "tokenizer's attention_mask."
        )


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    *,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(d_k)) V, returning `(output, weights)`.

    Shapes: q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v) -> output (..., T_q, d_v),
    weights (..., T_q, T_k). Leading dimensions (batch, heads) broadcast.

    `mask` is a bool tensor broadcastable to (..., T_q, T_k), True = may attend (as in
    `torch.nn.functional.scaled_dot_product_attention`). Masked keys get exactly zero weight.

    A query row whose keys are *all* masked (e.g. a padding query, or a sequence that is
    entirely padding) gets all-zero weights and therefore an all-zero output, never NaN;
    gradients through it are zero too. (Recent PyTorch SDPA also gives zeros; older releases
    returned NaN for such rows.)

    `dropout_p` > 0 drops attention weights (inverted dropout, as in training); the returned
    weights are the ones actually applied to V, so `output == weights @ v` always holds.
    Pass `dropout_p=0.0` at evaluation time.
    """
    _check_inputs(q, k, v, mask, dropout_p)
    scores = attention_scores(q, k, scale)  # (..., T_q, T_k)
    if mask is not None:
        try:
            shape = torch.broadcast_shapes(mask.shape, scores.shape)
        except RuntimeError:
            shape = None
        if shape is None or shape[-2:] != scores.shape[-2:]:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
                f"{tuple(scores.shape)} (..., T_q, T_k). A padding mask should be (B, 1, 1, T_k), "
                "a causal mask (T_q, T_k)."
            )
        # A large finite negative (not -inf) keeps fully masked rows finite: their softmax is
        # uniform, and the multiplication by the mask below then sets them to exactly zero.
        scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)  # softmax over keys
    if mask is not None:
        weights = weights * mask
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    return weights @ v, weights  # (..., T_q, d_v), (..., T_q, T_k)


# --- experiments used by notebooks 02 and 03 ---------------------------------------------


def scaling_experiment(d_k_values, n_samples: int = 2000, n_keys: int = 16, seed: int = 0):
    """Why divide by sqrt(d_k): for random unit-variance q and k, measure per d_k the variance
    of q.k, and how saturated the softmax over `n_keys` keys is, with and without scaling.

    Saturation = mean of the largest weight per row (1/n_keys is uniform, 1.0 is one-hot);
    `grad_norm` = mean Frobenius norm of the softmax Jacobian, which shrinks to 0 as the
    softmax saturates (the vanishing gradient). Returns a pandas DataFrame, one row per d_k.
    """
    import pandas as pd

    g = torch.Generator().manual_seed(seed)
    rows = []
    for d_k in d_k_values:
        q = torch.randn(n_samples, 1, d_k, generator=g)
        k = torch.randn(n_samples, n_keys, d_k, generator=g)
        dots = (q @ k.transpose(-2, -1)).squeeze(1)  # (n, n_keys)
        row = {"d_k": d_k, "var_unscaled": dots.var().item(), "var_scaled": (dots / math.sqrt(d_k)).var().item()}
        for name, s in (("unscaled", dots), ("scaled", dots / math.sqrt(d_k))):
            p = torch.softmax(s, -1)
            jac = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # d softmax / d scores
            row[f"max_weight_{name}"] = p.amax(-1).mean().item()
            row[f"grad_norm_{name}"] = jac.flatten(1).norm(dim=-1).mean().item()
        rows.append(row)
    return pd.DataFrame(rows).set_index("d_k")


def attention_cost(seq_lens, d_model: int = 256, num_heads: int = 4, repeats: int = 3,
                   device: str = "cpu", seed: int = 0):
    """Time one self-attention call (this module's, which materialises the T x T weights) and
    torch's fused SDPA, for each sequence length. Returns a pandas DataFrame with the median
    milliseconds of each (torch.utils.benchmark, at least 0.05 s x `repeats` of calls per
    measurement) and the size in MB of the attention-weight tensor actually produced.
    """
    import pandas as pd
    from torch.utils import benchmark

    g = torch.Generator().manual_seed(seed)
    hs = d_model // num_heads
    rows = []

    def timed(fn, q, k, v) -> float:
        # blocked_autorange repeats the call until each block lasts long enough for the clock
        # (and CPU scheduling slices) not to dominate; it synchronises CUDA itself.
        timer = benchmark.Timer("fn(q, k, v)", globals={"fn": fn, "q": q, "k": k, "v": v},
                                num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=0.05 * repeats).median * 1e3

    for T in seq_lens:
        q, k, v = (torch.randn(1, num_heads, T, hs, generator=g).to(device) for _ in range(3))
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v)  # warm-up (first calls pick kernels)
            _, weights = scaled_dot_product_attention(q, k, v)  # warm-up, and the real tensor
            weights_mb = weights.numel() * weights.element_size() / 2**20
            del weights
            ms_lab = timed(scaled_dot_product_attention, q, k, v)
            ms_fused = timed(F.scaled_dot_product_attention, q, k, v)
        rows.append({"seq_len": T, "ms_lab": ms_lab, "ms_fused": ms_fused, "weights_mb": weights_mb})
    return pd.DataFrame(rows).set_index("seq_len")
