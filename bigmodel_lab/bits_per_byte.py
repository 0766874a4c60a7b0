"""Bits per byte: one yardstick for language models with different tokenizers.

Per-token perplexity exp(L) depends on what a token is: a tokenizer with longer tokens makes
fewer, harder predictions, so its perplexity is higher on the very same text, and a
byte-level model's perplexity is the smallest of all. Summing the negative log-likelihood
over a text and dividing by the text's UTF-8 bytes removes the tokenizer:

    bits per byte = sum_t -log2 p(x_t | x_<t) / N_bytes = L_nats * N_tokens / (N_bytes ln 2)

(8.0 is "no model at all": a uniform guess over 256 byte values). Every model scores every
token of each text, the first one too (conditioned on a document-start token), so all models
are charged for the same bytes. The standard error comes from the spread over texts (a
ratio estimator: texts differ in length).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

LN2 = math.log(2)


def bits_per_byte(nats: float, n_bytes: int) -> float:
    """Total negative log-likelihood in nats -> bits per UTF-8 byte."""
    if n_bytes <= 0:
        raise ValueError(f"n_bytes must be positive, got {n_bytes}: score a non-empty text.")
    return nats / (n_bytes * LN2)


@dataclass(frozen=True)
class Score:
    """A model's bits per byte over a set of texts, with the per-text parts kept for errors."""

    name: str
    nats: np.ndarray  # per text
    n_bytes: np.ndarray  # per text
    n_tokens: np.ndarray  # per text (the model's own tokens)

    @property
    def bpb(self) -> float:
        """Pooled: all bits / all bytes."""
        return bits_per_byte(float(self.nats.sum()), int(self.n_bytes.sum()))

    @property
    def se(self) -> float:
        """Standard error of `bpb` over texts (ratio estimator, linearized)."""
        bits = self.nats / LN2
        k = len(bits)
        if k < 2:
            return float("nan")
        resid = bits - self.bpb * self.n_bytes
        return float(np.sqrt((resid ** 2).sum() / (k * (k - 1))) / self.n_bytes.mean())

    @property
    def token_perplexity(self) -> float:
        """exp(mean nats per token of this model's tokenizer): not comparable across tokenizers."""
        return math.exp(float(self.nats.sum()) / int(self.n_tokens.sum()))

    def first(self, n: int) -> Score:
        """The same score restricted to the first `n` texts."""
        return Score(self.name, self.nats[:n], self.n_bytes[:n], self.n_tokens[:n])

    def row(self) -> dict:
        return {"model": self.name, "bits_per_byte": self.bpb, "se": self.se,
                "tokens_per_byte": int(self.n_tokens.sum()) / int(self.n_bytes.sum()),
                "token_perplexity": self.token_perplexity}


def paired_difference(a: Score, b: Score) -> tuple[float, float]:
    """bpb(a) - bpb(b) on the same texts and its standard error (paired: the hard texts are
    hard for both, so the difference is much less noisy than either figure)."""
    if not np.array_equal(a.n_bytes, b.n_bytes):
        raise ValueError("paired_difference needs both scores on the same texts, in order.")
    d = (a.nats / LN2 - a.bpb * a.n_bytes) - (b.nats / LN2 - b.bpb * b.n_bytes)
    k = len(d)
    se = float(np.sqrt((d ** 2).sum() / (k * (k - 1))) / a.n_bytes.mean()) if k > 1 else math.nan
    return a.bpb - b.bpb, se


def window_nats(logits_fn: Callable[[torch.Tensor], torch.Tensor], ids: Sequence[int],
                context: int) -> float:
    """Sum of -ln p(ids[t] | ids[:t]) for t >= 1 (ids[0] is the document-start token), with a
    model that sees at most `context` tokens: sliding windows, each new prediction with at
    least half a window of history. `logits_fn` maps (1, T) ids to (1, T, V) logits."""
    ids = torch.as_tensor(list(ids), dtype=torch.long)
    n, scored, total = len(ids), 1, 0.0
    if n < 2:
        raise ValueError("Give a start token and at least one token to score.")
    while scored < n:
        end = min(n, scored + (context - 1 if scored == 1 else max(1, context // 2)))
        window = ids[max(0, end - context): end]
        with torch.inference_mode():
            logits = logits_fn(window[None, :-1])[0].float()  # (len - 1, V)
        k = end - scored
        logp = F.log_softmax(logits[-k:], dim=-1)
        total -= float(logp.gather(1, window[-k:, None]).sum())
        scored = end
    return total


def score_causal_lm(model, tokenizer, texts: Sequence[str], name: str,
                    start_token: str = "<|endoftext|>", context: int | None = None,
                    progress: bool = False) -> Score:
    """Bits per byte of a `transformers` causal LM: each text after the start token."""
    vocab = tokenizer.get_vocab()
    start = vocab[start_token] if start_token in vocab else tokenizer.bos_token_id
    context = context or getattr(model.config, "max_position_embeddings", 2048)

    def logits_fn(x: torch.Tensor) -> torch.Tensor:
        return model(input_ids=x.to(model.device)).logits.cpu()

    encoded = [[start] + tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return _score(name, texts, encoded, lambda ids: window_nats(logits_fn, ids, context),
                  progress)


def score_gpt(model, tokenizer, texts: Sequence[str], name: str, progress: bool = False
              ) -> Score:
    """Bits per byte of the book's `GPT` with its `tokenizers` BPE (start token: EOS)."""
    from .bpe import EOS

    start = tokenizer.token_to_id(EOS)
    encoded = [[start] + tokenizer.encode(t).ids for t in texts]
    context = model.config.context_length

    def logits_fn(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(next(model.parameters()).device)).logits.cpu()

    return _score(name, texts, encoded, lambda ids: window_nats(logits_fn, ids, context),
                  progress)


def _score(name, texts, encoded, nats_fn, progress) -> Score:
    from tqdm.auto import tqdm

    nats = [nats_fn(ids) for ids in tqdm(encoded, desc=name, leave=False, disable=not progress)]
    return Score(name, np.array(nats), np.array([len(t.encode("utf-8")) for t in texts]),
                 np.array([len(ids) - 1 for ids in encoded]))


def score_ngrams(train_ids: torch.Tensor, tokenizer, texts: Sequence[str], vocab_size: int,
                 lambdas: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)) -> list[Score]:
    """Unigram (add-one) and interpolated bigram scores on the BPE tokens of `texts`, counted on
    `train_ids` (as in notebook 05). The bigram's lambda is the best of `lambdas` on these
    texts themselves, which flatters it."""
    from .bpe import EOS

    start = tokenizer.token_to_id(EOS)
    encoded = [np.array([start] + tokenizer.encode(t).ids) for t in texts]
    tr, V = train_ids.numpy(), vocab_size
    uni = np.bincount(tr, minlength=V).astype(np.float64) + 1.0
    uni /= uni.sum()
    pair = tr[:-1].astype(np.int64) * V + tr[1:]
    keys, counts = np.unique(pair, return_counts=True)
    ctx = np.bincount(tr[:-1], minlength=V).astype(np.float64)

    def p_ml(ids: np.ndarray) -> np.ndarray:
        q = ids[:-1].astype(np.int64) * V + ids[1:]
        pos = np.searchsorted(keys, q).clip(max=len(keys) - 1)
        c_ab = np.where(keys[pos] == q, counts[pos], 0).astype(np.float64)
        c_a = ctx[ids[:-1]]
        return np.divide(c_ab, c_a, out=np.zeros_like(c_ab), where=c_a > 0)

    n_bytes = np.array([len(t.encode("utf-8")) for t in texts])
    n_tokens = np.array([len(ids) - 1 for ids in encoded])
    unigram = np.array([-np.log(uni[ids[1:]]).sum() for ids in encoded])
    ml = [p_ml(ids) for ids in encoded]
    best = None
    for lam in lambdas:
        nats = np.array([-np.log(lam * m + (1 - lam) * uni[ids[1:]]).sum()
                         for m, ids in zip(ml, encoded)])
        if best is None or nats.sum() < best[1].sum():
            best = (lam, nats)
    return [Score("unigram (BPE counts)", unigram, n_bytes, n_tokens),
            Score(f"bigram (BPE counts, lambda={best[0]})", best[1], n_bytes, n_tokens)]


def compressor_bits_per_byte(texts: Sequence[str]) -> float:
    """LZMA (xz, preset 9) on all texts joined: a general-purpose compressor's bits per byte,
    the floor any language model should beat (one figure, no error bar)."""
    import lzma

    data = "\n".join(texts).encode("utf-8")
    return 8 * len(lzma.compress(data, preset=9)) / len(data)


# ----------------------------------------------------------------------------- exercise
def check_bits_per_byte(fn: Callable, quiet: bool = False):
    """fn(mean_loss_nats_per_token, n_tokens, n_bytes) -> bits per byte."""
    from .exercises import _call, _Failed, _run_check

    def body() -> str:
        cases = [(2.0, 100, 400), (3.5, 250, 1000), (0.7, 10, 13)]
        for loss, n_tok, n_bytes in cases:
            want = bits_per_byte(loss * n_tok, n_bytes)
            got = _call(fn, loss, n_tok, n_bytes)
            if not isinstance(got, (int, float)) or not math.isfinite(got):
                raise _Failed(f"return a finite float, got {got!r}.")
            if math.isclose(got, want, rel_tol=1e-6):
                continue
            if math.isclose(got, want * LN2, rel_tol=1e-6):
                raise _Failed("that is nats per byte: divide by ln 2 to get bits.")
            if math.isclose(got, loss / LN2, rel_tol=1e-6):
                raise _Failed("that is bits per token: multiply by tokens and divide by bytes.")
            raise _Failed(f"fn({loss}, {n_tok}, {n_bytes}) = {got:.4f}, expected {want:.4f}.")
        return "total bits over total bytes: the same yardstick whatever the tokenizer."

    return _run_check(body, quiet)
