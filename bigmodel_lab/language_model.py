"""Language-model data and yardsticks: token blocks, perplexity, unigram and bigram baselines.

Perplexity is exp(mean next-token cross-entropy in nats): the number of equally likely
tokens the model is, on average, choosing between. A uniform guess over V tokens scores V;
the n-gram baselines say how much of the text simple counts already explain.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset


class TokenBlocks(Dataset):
    """Non-overlapping blocks of `length` tokens from a 1-d id tensor, as GPT batches.

    Item i is {"input_ids": ids[i*L:(i+1)*L], "labels": same}; the model shifts labels by one,
    so each block trains L - 1 next-token predictions.
    """

    def __init__(self, ids: torch.Tensor, length: int):
        n = (len(ids) // length) * length
        if n == 0:
            raise ValueError(f"Only {len(ids)} tokens: not enough for one block of {length}; "
                             "use more text or a shorter context.")
        self.blocks = ids[:n].view(-1, length)  # (N, L)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def perplexity(loss: float) -> float:
    """exp(cross-entropy in nats)."""
    return math.exp(loss)


def unigram_perplexity(train_ids: torch.Tensor, eval_ids: torch.Tensor, vocab_size: int,
                       alpha: float = 1.0) -> float:
    """Perplexity of P(token) = (count + alpha) / (N + alpha V), fitted on `train_ids`."""
    counts = np.bincount(train_ids.numpy(), minlength=vocab_size).astype(np.float64)
    p = (counts + alpha) / (counts.sum() + alpha * vocab_size)
    return float(np.exp(-np.log(p[eval_ids.numpy()]).mean()))


def bigram_perplexity(train_ids: torch.Tensor, eval_ids: torch.Tensor, vocab_size: int,
                      lambdas: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)) -> dict:
    """Interpolated bigram P(b | a) = lam P_ML(b | a) + (1 - lam) P_unigram(b).

    `lam` is the best of `lambdas` on the evaluation text itself, so this baseline is, if
    anything, flattered. Returns {"perplexity", "lambda"}; scores eval_ids[1:] given
    their predecessors (the same predictions a GPT makes).
    """
    tr, ev = train_ids.numpy(), eval_ids.numpy()
    V = vocab_size
    uni = np.bincount(tr, minlength=V).astype(np.float64) + 1.0
    uni /= uni.sum()
    pair = tr[:-1].astype(np.int64) * V + tr[1:]
    keys, counts = np.unique(pair, return_counts=True)  # sparse bigram counts
    ctx = np.bincount(tr[:-1], minlength=V).astype(np.float64)
    q = ev[:-1].astype(np.int64) * V + ev[1:]
    pos = np.searchsorted(keys, q).clip(max=len(keys) - 1)
    c_ab = np.where(keys[pos] == q, counts[pos], 0).astype(np.float64)
    c_a = ctx[ev[:-1]]
    p_ml = np.divide(c_ab, c_a, out=np.zeros_like(c_ab), where=c_a > 0)
    p_uni = uni[ev[1:]]
    best = None
    for lam in lambdas:
        ppl = float(np.exp(-np.log(lam * p_ml + (1 - lam) * p_uni).mean()))
        if best is None or ppl < best["perplexity"]:
            best = {"perplexity": ppl, "lambda": lam}
    return best
