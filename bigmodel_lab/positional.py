"""Position information for attention: sinusoidal, learned, and rotary (RoPE) encodings.

Attention is permutation-equivariant: shuffle the tokens and the outputs shuffle the same way.
Word order therefore has to be injected, either added to the embeddings (sinusoidal, learned)
or applied as a rotation of queries and keys (RoPE).
"""

from __future__ import annotations

import torch
from torch import nn


def _check_even(d: int, what: str) -> None:
    if d <= 0 or d % 2:
        raise ValueError(f"{what} must be a positive even number (sin/cos come in pairs), got {d}.")


def sinusoidal_encoding(n_positions: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """(n_positions, d_model) table from "Attention Is All You Need":

        PE[p, 2i]   = sin(p / base^(2i / d_model))
        PE[p, 2i+1] = cos(p / base^(2i / d_model))
    """
    _check_even(d_model, "d_model")
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (T, 1)
    freqs = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d/2,)
    angles = pos * freqs  # (T, d/2)
    pe = torch.empty(n_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe.float()


def sinusoidal_shift_matrix(k: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The (d_model, d_model) matrix M_k with PE(p + k) = M_k PE(p) for every position p.

    Each (sin, cos) pair at frequency w is rotated by the angle k w:
    sin(a + b) = sin a cos b + cos a sin b, cos(a + b) = cos a cos b - sin a sin b.
    M_k depends on the offset k only, never on p: relative position is a linear map.
    """
    _check_even(d_model, "d_model")
    freqs = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    m = torch.zeros(d_model, d_model, dtype=torch.float64)
    c, s = torch.cos(k * freqs), torch.sin(k * freqs)
    idx = torch.arange(0, d_model, 2)
    m[idx, idx], m[idx, idx + 1] = c, s
    m[idx + 1, idx], m[idx + 1, idx + 1] = -s, c
    return m.float()


class LearnedPositionalEmbedding(nn.Module):
    """One trainable vector per position (BERT, GPT-2), added to the token embeddings."""

    def __init__(self, max_positions: int, d_model: int):
        super().__init__()
        self.max_positions = max_positions
        self.table = nn.Embedding(max_positions, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.size(-2)  # x: (B, T, d_model)
        if T > self.max_positions:
            raise ValueError(
                f"Sequence length {T} exceeds max_positions={self.max_positions}: a learned table "
                "has no vector for later positions. Truncate the input or build a larger table."
            )
        return x + self.table(torch.arange(T, device=x.device))


def rope_cos_sin(
    n_positions: int, head_dim: int, base: float = 10000.0, positions: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (T, head_dim) for RoPE in the "rotate half" layout used by Llama.

    Dimension i is paired with i + head_dim/2 and rotated by the angle p * base^(-2i/head_dim).
    """
    _check_even(head_dim, "head_dim")
    if positions is None:
        positions = torch.arange(n_positions)
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (d/2,)
    angles = positions.to(torch.float64)[:, None] * inv_freq  # (T, d/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, d)
    return angles.cos().float(), angles.sin().float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, positions: torch.Tensor | None = None, base: float = 10000.0) -> torch.Tensor:
    """Rotate queries or keys x (..., T, head_dim) by their positions (default 0..T-1).

    After rotation, q_m . k_n depends on the positions only through m - n.
    """
    T, d = x.size(-2), x.size(-1)
    if positions is not None and positions.shape != (T,):
        raise ValueError(f"positions must have shape ({T},) to match x's length, got {tuple(positions.shape)}.")
    cos, sin = rope_cos_sin(T, d, base, positions)
    cos, sin = cos.to(x.device, x.dtype), sin.to(x.device, x.dtype)
    return x * cos + rotate_half(x) * sin
