"""Self-checks for the exercises of notebooks 01-03.

Each `check_*` runs the reader's function against the reference implementation and says in
plain words what is wrong (shape mismatch, softmax over the wrong axis, missing scaling...).
A check never raises: it prints one line and returns a `CheckResult` (truthy when passed), so
a notebook with unfinished exercises still runs from top to bottom.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .attention import scaled_dot_product_attention
from .basics import elongated_bowl, gradient_descent
from .positional import sinusoidal_encoding


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return ("PASS: " if self.passed else "NOT YET: ") + self.message


def _report(passed: bool, message: str, quiet: bool = False) -> CheckResult:
    result = CheckResult(passed, message)
    if not quiet:
        print(repr(result))
    return result


class _Failed(Exception):
    """Raised inside a check to stop at the first problem found."""


def _call(fn: Callable, *args):
    try:
        return fn(*args)
    except NotImplementedError:
        raise _Failed("not implemented yet: replace the `raise NotImplementedError` with your code.") from None
    except Exception as err:  # the reader's bug, reported in words
        raise _Failed(f"your function raised {type(err).__name__}: {err}") from None


def _as_tensor(x, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise _Failed(f"{what} should be a torch.Tensor, got {type(x).__name__}.")
    return x


def _same(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    return a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=tol, rtol=tol)


def _run_check(body: Callable[[], str], quiet: bool) -> CheckResult:
    try:
        return _report(True, body(), quiet)
    except _Failed as failure:
        return _report(False, str(failure), quiet)


# --- notebook 01 -------------------------------------------------------------------------


def check_cross_entropy(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(logits (N, C), targets (N,) int) -> mean cross-entropy, a scalar tensor."""

    def body() -> str:
        g = torch.Generator().manual_seed(1)
        logits, targets = torch.randn(6, 4, generator=g), torch.tensor([0, 3, 1, 2, 2, 1])
        ref = F.cross_entropy(logits, targets)
        got = _as_tensor(_call(fn, logits, targets), "The loss")
        if got.numel() != 1:
            raise _Failed(f"the loss should be one number (the batch mean), got shape {tuple(got.shape)}.")
        got = got.reshape(())
        log_p = torch.log_softmax(logits, -1)[torch.arange(6), targets]
        hints = [
            (ref * len(targets), "you summed over the batch; take the mean (divide by N)."),
            (-ref, "the sign is flipped: cross-entropy is MINUS the log-probability of the target."),
            (-(log_p / math.log(10)).mean(), "you used log10; cross-entropy uses the natural log."),
            (-logits[torch.arange(6), targets].mean(), "you used the raw logits: apply log-softmax first."),
            (-log_p.exp().mean(), "you averaged probabilities, not log-probabilities: take the log."),
        ]
        if not _same(got, ref):
            for value, hint in hints:
                if _same(got, value):
                    raise _Failed(hint)
            raise _Failed(f"got {got.item():.4f}, expected {ref.item():.4f}.")
        big = logits * 100
        got_big = _as_tensor(_call(fn, big, targets), "The loss").reshape(())
        if not torch.isfinite(got_big) or not _same(got_big, F.cross_entropy(big, targets), 1e-3):
            raise _Failed(
                "correct on small logits but wrong or inf/NaN on large ones: compute log-softmax "
                "stably (subtract the max, or use torch.logsumexp)."
            )
        return "matches torch.nn.functional.cross_entropy, also on large logits."

    return _run_check(body, quiet)


def check_linear_backward(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(x (N, d_in), W (d_in, d_out), b (d_out,), grad_out (N, d_out)) -> (dx, dW, db)
    for y = x W + b, given grad_out = dL/dy."""

    def body() -> str:
        g = torch.Generator().manual_seed(2)
        x = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
        W = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
        b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
        grad_out = torch.randn(5, 2, generator=g, dtype=torch.float64)
        ref = torch.autograd.grad(x @ W + b, (x, W, b), grad_out)
        out = _call(fn, x.detach(), W.detach(), b.detach(), grad_out)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise _Failed("return three tensors: (dx, dW, db).")
        for name, got, want, hint in zip(
            ("dx", "dW", "db"),
            out,
            ref,
            ("dL/dx = grad_out @ W.T", "dL/dW = x.T @ grad_out", "dL/db = grad_out summed over the batch"),
        ):
            got = _as_tensor(got, name).detach()
            if got.shape != want.shape:
                raise _Failed(
                    f"{name} has shape {tuple(got.shape)} but must match its variable, "
                    f"{tuple(want.shape)}. Hint: {hint}."
                )
            if not _same(got, want):
                raise _Failed(f"{name} has the right shape but wrong values. Hint: {hint}.")
        return "dx, dW and db all match autograd."

    return _run_check(body, quiet)


def check_critical_learning_rate(lr: float, quiet: bool = False) -> CheckResult:
    """The largest learning rate for which gradient descent on `elongated_bowl` converges,
    to within 5 %."""

    def body() -> str:
        if not isinstance(lr, (int, float)) or lr <= 0:
            raise _Failed(f"give a positive number, got {lr!r}.")

        def converges(rate: float) -> bool:
            path = gradient_descent(elongated_bowl, (2.0, 1.0), lr=rate, steps=400)
            return bool(elongated_bowl(path[-1]) < elongated_bowl(path[0]) * 1e-3)

        if not converges(lr * 0.98):
            raise _Failed(f"at lr = {lr} gradient descent does not converge: the critical value is smaller.")
        if converges(lr * 1.05):
            raise _Failed(f"lr = {lr} converges, but so does a 5 % larger one: the edge is higher.")
        return (
            f"{lr} is at the edge. On a quadratic with curvature c, a step multiplies the "
            "error by |1 - lr c|, so the steepest direction (c = 10) diverges once lr > 2 / 10."
        )

    return _run_check(body, quiet)


# --- notebook 02 -------------------------------------------------------------------------


def check_softmax(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(scores (..., T_q, T_k)) -> attention weights, softmax over the last axis (keys)."""

    def body() -> str:
        g = torch.Generator().manual_seed(3)
        x = torch.randn(2, 3, 5, generator=g)
        ref = torch.softmax(x, -1)
        got = _as_tensor(_call(fn, x), "The result")
        if got.shape != ref.shape:
            raise _Failed(f"shape mismatch: got {tuple(got.shape)}, expected {tuple(ref.shape)} (same as the input).")
        if not _same(got, ref):
            for dim in (0, 1):
                if _same(got, torch.softmax(x, dim)):
                    raise _Failed(
                        f"softmax over the wrong axis (dim={dim}): attention normalises over the "
                        "keys, the LAST axis (dim=-1), so each query's weights sum to 1."
                    )
            if _same(got, torch.exp(x)):
                raise _Failed("you exponentiated but did not divide by the row sum.")
            raise _Failed("values differ from torch.softmax(x, dim=-1); check that each row sums to 1.")
        big = x * 1000
        got_big = _as_tensor(_call(fn, big), "The result")
        if not torch.isfinite(got_big).all():
            raise _Failed(
                "inf/NaN on large scores: exp overflows. Subtract each row's max before exp "
                "(it cancels in the ratio, so the result is unchanged)."
            )
        if not _same(got_big, torch.softmax(big, -1), 1e-4):
            raise _Failed("wrong on large scores; subtract the row max before exp.")
        return "softmax over the keys, numerically stable."

    return _run_check(body, quiet)


def check_attention(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(q (B, T_q, d_k), k (B, T_k, d_k), v (B, T_k, d_v)) -> output (B, T_q, d_v)
    (or a tuple whose first item is the output)."""

    def body() -> str:
        g = torch.Generator().manual_seed(4)
        B, T_q, T_k, d_k, d_v = 2, 3, 5, 16, 6
        q, k, v = (torch.randn(B, t, d, generator=g) for t, d in ((T_q, d_k), (T_k, d_k), (T_k, d_v)))
        ref, _ = scaled_dot_product_attention(q, k, v)
        out = _call(fn, q, k, v)
        out = out[0] if isinstance(out, (tuple, list)) else out
        got = _as_tensor(out, "The output")
        if got.shape == (B, T_q, T_k):
            raise _Failed(
                f"you returned the weights, shape (B, T_q, T_k) = {tuple(got.shape)}: multiply "
                "them by v to get the output (B, T_q, d_v)."
            )
        if got.shape != ref.shape:
            raise _Failed(
                f"shape mismatch: got {tuple(got.shape)}, expected (B, T_q, d_v) = {tuple(ref.shape)}. "
                "Scores are q @ k.transpose(-2, -1): (B, T_q, T_k); weights @ v gives (B, T_q, d_v)."
            )
        if _same(got, ref):
            return "matches softmax(q k^T / sqrt(d_k)) v."
        scores = q @ k.transpose(-2, -1)
        hints = [
            (torch.softmax(scores, -1) @ v, "missing scaling: divide the scores by sqrt(d_k) before the softmax."),
            (torch.softmax(scores / d_k, -1) @ v, "you divided by d_k; divide by sqrt(d_k)."),
            (torch.softmax(scores * math.sqrt(d_k), -1) @ v, "you multiplied by sqrt(d_k); divide instead."),
            (torch.softmax(scores / math.sqrt(d_k), 1) @ v,
             "softmax over the wrong axis: normalise over the keys (dim=-1), not the queries."),
        ]
        for value, hint in hints:
            if _same(got, value):
                raise _Failed(hint)
        raise _Failed("right shape, wrong values: compare each step with the notebook's worked example.")

    return _run_check(body, quiet)


def check_causal_mask(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(T) -> (T, T) bool mask, True = may attend: position i sees positions 0..i."""

    def body() -> str:
        T = 5
        ref = torch.ones(T, T, dtype=torch.bool).tril()
        got = _as_tensor(_call(fn, T), "The mask")
        if got.shape != (T, T):
            raise _Failed(f"shape mismatch: got {tuple(got.shape)}, expected (T, T) = ({T}, {T}).")
        if got.dtype != torch.bool:
            raise _Failed(f"the mask must be bool (True = may attend), got {got.dtype}; use .bool() or a comparison.")
        if torch.equal(got, ref):
            return "lower-triangular: each position sees itself and the past."
        if torch.equal(got, ~ref):
            raise _Failed("inverted: True should mark the positions a query MAY attend to (the past), not the future.")
        if torch.equal(got, ref.T):
            raise _Failed("upper-triangular: that lets each token see the future. Use tril, not triu.")
        if torch.equal(got, ref & ~torch.eye(T, dtype=torch.bool)):
            raise _Failed("the diagonal is False: a token must be allowed to attend to itself (else row 0 sees nothing).")
        raise _Failed("not lower-triangular: row i should be True for columns 0..i and False after.")

    return _run_check(body, quiet)


# --- notebook 03 -------------------------------------------------------------------------


def check_sinusoidal(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(n_positions, d_model) -> (n_positions, d_model) sinusoidal table, sin on even
    dimensions and cos on odd ones."""

    def body() -> str:
        n, d = 12, 8
        ref = sinusoidal_encoding(n, d)
        got = _as_tensor(_call(fn, n, d), "The table")
        if got.shape != ref.shape:
            raise _Failed(f"shape mismatch: got {tuple(got.shape)}, expected (n_positions, d_model) = {tuple(ref.shape)}.")
        if _same(got, ref, 1e-4):
            return "matches PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...)."
        pos = torch.arange(n, dtype=torch.float64)[:, None]
        i = torch.arange(d // 2, dtype=torch.float64)
        ang = pos / 10000 ** (2 * i / d)
        swapped = torch.stack([ang.cos(), ang.sin()], -1).reshape(n, d)
        halves = torch.cat([ang.sin(), ang.cos()], -1)
        ang_i = pos / 10000 ** (i / d)
        one_i = torch.stack([ang_i.sin(), ang_i.cos()], -1).reshape(n, d)
        for value, hint in (
            (swapped, "sin and cos are swapped: sin goes on the even dimensions (0, 2, ...)."),
            (halves, "you put all sines first and all cosines second; interleave them (sin at 2i, cos at 2i+1)."),
            (one_i, "the exponent should be 2i / d_model (i counts the sin/cos pairs), not i / d_model."),
        ):
            if _same(got, value.float(), 1e-4):
                raise _Failed(hint)
        raise _Failed("values differ: check PE[p, 2i] = sin(p / 10000^(2i/d_model)).")

    return _run_check(body, quiet)


def check_split_heads(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(x (B, T, C), num_heads) -> (B, num_heads, T, C // num_heads): head h holds
    channels h*hs .. (h+1)*hs of every position."""

    def body() -> str:
        B, T, C, H = 2, 4, 6, 3
        x = torch.arange(B * T * C, dtype=torch.float32).reshape(B, T, C)
        ref = x.view(B, T, H, C // H).transpose(1, 2)
        got = _as_tensor(_call(fn, x, H), "The result")
        if got.shape == (B, T, H, C // H):
            raise _Failed(f"shape {tuple(got.shape)} is (B, T, H, hs): transpose(1, 2) to put heads before time.")
        if got.shape != ref.shape:
            raise _Failed(f"shape mismatch: got {tuple(got.shape)}, expected (B, H, T, hs) = {tuple(ref.shape)}.")
        if torch.equal(got, ref):
            return "each head gets its own slice of channels, for every position."
        if torch.equal(got, x.reshape(B, H, T, C // H)):
            raise _Failed(
                "right shape, wrong layout: reshaping straight to (B, H, T, hs) mixes positions into "
                "heads. Reshape to (B, T, H, hs) first, then transpose(1, 2)."
            )
        raise _Failed("right shape, wrong values: head h should hold channels h*hs..(h+1)*hs of each position.")

    return _run_check(body, quiet)


def check_mha_param_count(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(d_model, num_heads) -> number of parameters of one multi-head attention layer with
    biases (the same as torch.nn.MultiheadAttention)."""

    def body() -> str:
        cases = [(64, 4), (384, 12), (30, 5)]
        for d, h in cases:
            mha = torch.nn.MultiheadAttention(d, h)
            want = sum(p.numel() for p in mha.parameters())
            got = _call(fn, d, h)
            if not isinstance(got, int):
                raise _Failed(f"return an int, got {type(got).__name__}.")
            if got == want:
                continue
            hints = {
                4 * d * d: "you forgot the biases: each of the 4 projections has d_model of them.",
                3 * d * d + 3 * d: "you forgot the output projection W_O (d_model x d_model + bias).",
                h * (4 * d * d + 4 * d): "the head count does not multiply the parameters: the heads split d_model.",
                4 * d * d // h + 4 * d: "the heads share the projections' d_model x d_model weights; do not divide by the head count.",
            }
            raise _Failed(hints.get(got, f"for d_model={d}, num_heads={h} got {got}, expected {want}."))
        return "4 d^2 + 4 d: independent of the number of heads."

    return _run_check(body, quiet)


# --- notebooks 04-05 (transformer from scratch, tiny GPT) -----------------------------------


def check_pre_ln_block(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(block, x) -> the output of a pre-LN block, using block.ln_1, block.attn (returns
    (out, weights)), block.ln_2 and block.mlp; causal attention as in GPT."""
    from .transformer import Block, TransformerConfig

    def body() -> str:
        torch.manual_seed(0)
        cfg = TransformerConfig(hidden_size=16, num_heads=2, dropout=0.0, attention_dropout=0.0)
        block = Block(cfg).eval()
        x = torch.randn(2, 5, 16)
        with torch.no_grad():
            want = block(x, causal=True)[0]
            got = _as_tensor(_call(fn, block, x), "The block output")
            not_causal = block(x, causal=False)[0]
        if got.shape != want.shape:
            raise _Failed(f"shape {tuple(got.shape)}, expected (B, T, C) = {tuple(want.shape)}.")
        if _same(got, want):
            return "x + Attn(LN(x)), then x + FFN(LN(x)): the residual path stays un-normalised."
        if _same(got, not_causal):
            raise _Failed("right layout, but attention is not causal: pass causal=True to block.attn.")
        if torch.allclose(got.mean(-1), torch.zeros(2, 5), atol=1e-4):
            raise _Failed("the output is normalised (mean 0 per position): that is post-LN. In pre-LN "
                          "the LayerNorm goes inside the branch, x = x + attn(ln_1(x)).")
        raise _Failed("values differ: x = x + attn(ln_1(x))[0], then x = x + mlp(ln_2(x)).")

    return _run_check(body, quiet)


def check_encoder_param_formula(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(config) -> parameters of `Encoder(config)` (a BERT-like, post-LN encoder)."""
    from .transformer import Encoder, TransformerConfig, num_parameters

    def body() -> str:
        configs = [TransformerConfig.minilm(), TransformerConfig.bert_base(),
                   TransformerConfig.minilm(num_layers=3, intermediate_size=1000)]
        for c in configs:
            with torch.device("meta"):
                want = num_parameters(Encoder(c))
            got = _call(fn, c)
            if got == want:
                continue
            C, V, P, S, L = c.hidden_size, c.vocab_size, c.context_length, c.type_vocab_size, c.num_layers
            hints = {
                want - (P + S) * C: "the position and token-type embedding tables are missing.",
                want - 2 * C - L * 4 * C: "the LayerNorms are missing: each has a weight and a bias of size C.",
                want - L * (4 * C + c.ffn_size + C): "the biases are missing (4C in attention, F + C in the FFN).",
                want - V * C: "the token embedding table (vocab_size x hidden_size) is missing.",
            }
            raise _Failed(hints.get(got, f"for {c.num_layers} layers, hidden {C}: got {got}, expected {want}."))
        return "embeddings + L x (attention 4C^2+4C, FFN 2CF+F+C, two LayerNorms 4C) + embedding LayerNorm."

    return _run_check(body, quiet)


def check_mean_pooling(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(last_hidden_state (B, T, C), attention_mask (B, T)) -> (B, C) mean over real tokens."""

    def body() -> str:
        torch.manual_seed(0)
        h = torch.randn(2, 4, 3)
        mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
        want = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        got = _as_tensor(_call(fn, h, mask), "The pooled embedding")
        if got.shape != want.shape:
            raise _Failed(f"shape {tuple(got.shape)}, expected (B, C) = {tuple(want.shape)}.")
        if _same(got, want):
            return "padding is left out of the mean, so a sentence's embedding does not depend on its batch."
        if _same(got, h.mean(1)):
            raise _Failed("padding tokens are included: multiply by the mask and divide by mask.sum(1).")
        if _same(got, (h * mask[..., None]).sum(1) / h.shape[1]):
            raise _Failed("you divide by T: divide by the number of real tokens, mask.sum(1).")
        raise _Failed("values differ from the masked mean sum_t m_t h_t / sum_t m_t.")

    return _run_check(body, quiet)


def check_top_k_filter(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(logits (B, V), k) -> logits with all but the k largest per row set to -inf."""

    def body() -> str:
        logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.5, -1.0, 4.0, 2.0]])
        want = torch.tensor([[float("-inf"), 3.0, 2.0, float("-inf")],
                             [float("-inf"), float("-inf"), 4.0, 2.0]])
        got = _as_tensor(_call(fn, logits.clone(), 2), "The filtered logits")
        if got.shape != want.shape:
            raise _Failed(f"shape {tuple(got.shape)}, expected {tuple(want.shape)}: filter, do not gather.")
        if torch.equal(got, want):
            return "only the k best tokens keep a chance; softmax turns -inf into probability 0."
        if torch.equal(got.isinf(), ~want.isinf()):
            raise _Failed("you kept the k worst tokens: compare with the k-th *largest* value.")
        if (got == 0).any() and not got.isinf().any():
            raise _Failed("masked logits should be -inf (probability 0 after softmax), not 0.")
        raise _Failed(f"got {got.tolist()}, expected {want.tolist()}.")

    return _run_check(body, quiet)


def check_cached_greedy(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(model, input_ids, n) -> (B, T + n) greedy tokens, feeding only new tokens with a cache."""
    from .generate import generate
    from .transformer import GPT, TransformerConfig

    def body() -> str:
        torch.manual_seed(0)
        model = GPT(TransformerConfig(vocab_size=30, context_length=24, num_layers=2, num_heads=2,
                                      hidden_size=16, dropout=0.0, attention_dropout=0.0)).eval()
        prompt = torch.randint(0, 30, (2, 4))
        want = generate(model, prompt, 8, use_cache=False)
        calls = []
        original = model.forward

        def spy(input_ids, *args, **kwargs):
            calls.append(input_ids.shape[1])
            return original(input_ids, *args, **kwargs)

        model.forward = spy
        try:
            with torch.no_grad():
                got = _as_tensor(_call(fn, model, prompt, 8), "The generated ids")
        finally:
            del model.forward
        if got.shape != want.shape:
            raise _Failed(f"shape {tuple(got.shape)}, expected (B, T + n) = {tuple(want.shape)}.")
        if not torch.equal(got, want):
            raise _Failed("tokens differ from greedy generation without a cache: pass the same "
                          "cache list every step and feed only the newest token after the prompt.")
        if calls and max(calls[1:] or [1]) > 1:
            raise _Failed("right tokens, but later steps feed more than one token: with a cache, "
                          "model(next_id, cache=cache) is enough.")
        return "same tokens as recomputing, with one new position per step."

    return _run_check(body, quiet)


# --- notebooks 08-10: compression -----------------------------------------------------------


def _tiny_classifier(layers: int = 2, heads: int = 4, seed: int = 0):
    """A tiny randomly initialised BERT classifier: fast ground for checking compression code."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=64,
                        max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(config).eval()


def check_random_heads(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(scores, n, seed) -> {layer: [heads]}: n heads picked at random, one kept per layer."""

    def body() -> str:
        scores = torch.linspace(0.0, 1.0, 72).reshape(6, 12)  # a fixed importance grid
        picks = [_call(fn, scores, 30, seed) for seed in (0, 1)]
        for heads in picks:
            if not isinstance(heads, dict):
                raise _Failed(f"return a dict {{layer: [head indices]}}, got {type(heads).__name__}.")
            flat = [(layer, h) for layer, hs in heads.items() for h in hs]
            if len(flat) != 30 or len(set(flat)) != 30:
                raise _Failed(f"asked for 30 distinct heads, got {len(set(flat))} distinct "
                              f"out of {len(flat)}.")
            if any(not 0 <= layer < 6 or not 0 <= h < 12 for layer, h in flat):
                raise _Failed("a layer or head index is out of range for a (6, 12) score grid.")
            if any(len(hs) >= 12 for hs in heads.values()):
                raise _Failed("a layer lost all its heads: keep at least one per layer "
                              "(compress.least_important_heads on random scores does).")
        as_sets = [{(layer, h) for layer, hs in p.items() for h in hs} for p in picks]
        if as_sets[0] == as_sets[1]:
            raise _Failed("seeds 0 and 1 chose the same heads: is the choice really random?")
        if as_sets[0] == {(layer, h) for layer, hs in
                          _least_important(scores, 30).items() for h in hs}:
            raise _Failed("these are the least important heads, not random ones.")
        return "n distinct heads, at least one left per layer, a different choice per seed."

    return _run_check(body, quiet)


def _least_important(scores: torch.Tensor, n: int) -> dict:
    from .compress import least_important_heads

    return least_important_heads(scores, n)


def check_per_layer_pruning(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(model, amount) -> model with `amount` of every encoder Linear's weights zeroed."""
    from .compress import encoder_linears

    def body() -> str:
        model = _call(fn, _tiny_classifier(), 0.7)
        if model is None or not hasattr(model, "modules"):
            raise _Failed("return the pruned model.")
        for module, name in encoder_linears(model):
            share = float((getattr(module, name) == 0).float().mean())
            expected = round(0.7 * module.weight.numel()) / module.weight.numel()
            if abs(share - expected) > 1e-6:
                raise _Failed(f"a {tuple(module.weight.shape)} layer has {share:.1%} zeros, "
                              f"expected {expected:.1%}: prune each layer separately "
                              "(prune.l1_unstructured per module), not globally.")
        return "every encoder Linear has exactly 70% zeros."

    return _run_check(body, quiet)


def check_heads_removed(model, n_removed: int, quiet: bool = False) -> CheckResult:
    """After recovery the model still lacks `n_removed` heads (its speed-up is kept) and carries
    no pruning masks."""
    from .compress import _layers

    def body() -> str:
        if not isinstance(model, torch.nn.Module):
            raise _Failed("pass the recovered model (a torch.nn.Module), not "
                          f"{type(model).__name__}.")
        layers = _layers(model)
        total = len(layers) * model.config.num_attention_heads
        alive = sum(layer.attention.self.num_attention_heads for layer in layers)
        if total - alive != n_removed:
            raise _Failed(f"the model has {alive} of {total} heads, so {total - alive} removed; "
                          f"expected {n_removed}. Recover the model returned by remove_heads.")
        if any(hasattr(m, "weight_mask") for m in model.modules()):
            raise _Failed("the model carries pruning masks: remove heads, not individual weights.")
        return f"{n_removed} heads still removed after recovery: the smaller matrices stay small."

    return _run_check(body, quiet)


def check_affine_vs_symmetric(errors: dict, x: torch.Tensor, quiet: bool = False) -> CheckResult:
    """errors = {"affine": mean |error|, "symmetric": mean |error|} of int8 round trips of x."""
    from .compress import dequantize_int8, int8_params, quantize_int8

    def body() -> str:
        if not isinstance(errors, dict) or set(errors) != {"affine", "symmetric"}:
            raise _Failed('fill `errors` as {"affine": ..., "symmetric": ...}.')
        for name, symmetric in (("affine", False), ("symmetric", True)):
            s, z = int8_params(x, symmetric=symmetric)
            want = float((dequantize_int8(quantize_int8(x, s, z), s, z) - x).abs().mean())
            got = float(errors[name])
            if not math.isclose(got, want, rel_tol=1e-3, abs_tol=1e-9):
                raise _Failed(f"{name}: you have {got:.3e}, the reference round trip gives "
                              f"{want:.3e} (mean of |dequantize(quantize(x)) - x|, "
                              f"int8_params(x, symmetric={symmetric})).")
        return (f"affine {errors['affine']:.2e} vs symmetric {errors['symmetric']:.2e} "
                "mean |error|.")

    return _run_check(body, quiet)


def check_quantize_per_row(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(W) -> dequantized W with one affine int8 scale and zero-point per output row."""
    from .compress import dequantize_int8, int8_params, quantize_int8

    def body() -> str:
        W = torch.randn(6, 40, generator=torch.Generator().manual_seed(0))
        W[2] *= 50  # one row with a much larger range
        got = _as_tensor(_call(fn, W.clone()), "The dequantized matrix")
        if got.shape != W.shape:
            raise _Failed(f"shape {tuple(got.shape)}, expected the input's {tuple(W.shape)}.")
        want = torch.stack([dequantize_int8(quantize_int8(r, *int8_params(r)), *int8_params(r))
                            for r in W])
        if not _same(got, want, 1e-5):
            s, z = int8_params(W)
            whole = dequantize_int8(quantize_int8(W, s, z), s, z)
            if _same(got, whole, 1e-5):
                raise _Failed("this is one scale for the whole matrix: compute int8_params "
                              "for each row W[i] separately.")
            raise _Failed("differs from the per-row reference: quantize each row with its own "
                          "int8_params(row), then dequantize it with the same scale and zero-point.")
        return "matches the per-row reference; the large row no longer coarsens the others."

    return _run_check(body, quiet)


def check_bench_batch(batch: dict, batch_size: int, seq_len: int, quiet: bool = False
                      ) -> CheckResult:
    """batch: a benchmark batch (input_ids, attention_mask) of exactly batch_size x seq_len."""

    def body() -> str:
        if not isinstance(batch, dict) or "input_ids" not in batch:
            raise _Failed("pass the dict from compress.fixed_batch (input_ids, attention_mask).")
        shape = tuple(batch["input_ids"].shape)
        if shape != (batch_size, seq_len):
            raise _Failed(f"input_ids has shape {shape}, expected ({batch_size}, {seq_len}): "
                          f"compress.fixed_batch(tokenizer, texts, {batch_size}, {seq_len}).")
        return f"benchmark batch of {batch_size} x {seq_len} tokens."

    return _run_check(body, quiet)


def check_head_kept_fp32(model, quiet: bool = False) -> CheckResult:
    """Every encoder Linear int8 (dynamic), the classifier head still a float nn.Linear."""
    from torch import nn
    from torch.ao.nn.quantized import dynamic as qdynamic

    def body() -> str:
        head = getattr(model, "classifier", None)
        if type(head) is not nn.Linear:
            raise _Failed(f"the classifier is {type(head).__name__}, expected a float nn.Linear: "
                          "leave 'classifier' out of the names you pass to quantize_dynamic.")
        encoder = [(n, m) for n, m in model.named_modules() if ".layer." in f".{n}."
                   and isinstance(m, (nn.Linear, qdynamic.Linear))]
        fp32 = [n for n, m in encoder if type(m) is nn.Linear]
        if not encoder or fp32:
            raise _Failed(f"{len(fp32)} encoder Linear layers are still fp32 (e.g. "
                          f"{fp32[:1]}): include every encoder Linear name.")
        return f"{len(encoder)} encoder Linear layers int8, the classifier head fp32."

    return _run_check(body, quiet)


def check_by_temperature(by_temperature: dict, quiet: bool = False) -> CheckResult:
    """by_temperature = {1.0: accuracy, 4.0: accuracy} of students distilled at T = 1 and 4."""

    def body() -> str:
        if not isinstance(by_temperature, dict) or {1, 4} - set(by_temperature):
            raise _Failed("fill `by_temperature` with the keys 1.0 and 4.0 (the temperatures).")
        for T, acc in by_temperature.items():
            if not 0.0 <= float(acc) <= 1.0:
                raise _Failed(f"T={T}: {acc} is not an accuracy in [0, 1].")
        better = max(by_temperature, key=by_temperature.get)
        return (f"T=1: {by_temperature[1]:.3f}, T=4: {by_temperature[4]:.3f}; "
                f"T={better:g} is the higher here.")

    return _run_check(body, quiet)


def check_soft_loss(fn: Callable, quiet: bool = False) -> CheckResult:
    """fn(student_logits, teacher_logits, T) -> T^2 KL(softmax(z_t/T) || softmax(z_s/T)), batch mean."""
    from .distill import distillation_loss

    def body() -> str:
        g = torch.Generator().manual_seed(0)
        z_s, z_t = torch.randn(5, 3, generator=g), 3 * torch.randn(5, 3, generator=g)
        labels = torch.zeros(5, dtype=torch.long)
        for T in (1.0, 4.0):
            want = distillation_loss(z_s, z_t, labels, T, alpha=1.0)
            got = _as_tensor(_call(fn, z_s, z_t, T), "The loss")
            if got.numel() != 1:
                raise _Failed(f"return one number (the batch mean), got shape {tuple(got.shape)}.")
            if _same(got.reshape(()), want / T**2, 1e-5) and T != 1:
                raise _Failed(f"at T={T:g} you are off by T^2 = {T**2:g}: multiply the KL term by T^2.")
            if not _same(got.reshape(()), want, 1e-5):
                raise _Failed(f"at T={T:g}: {got.item():.4f}, expected {want.item():.4f}. "
                              "KL(teacher || student) = sum p_t (log p_t - log p_s) over classes, "
                              "both at temperature T, mean over the batch.")
        return "matches distill.distillation_loss with alpha = 1."

    return _run_check(body, quiet)


def check_student_layers(student, teacher, layers, quiet: bool = False) -> CheckResult:
    """An untrained student keeps exactly the teacher's `layers`, copied weight for weight."""
    from .compress import _layers

    def body() -> str:
        if not isinstance(student, torch.nn.Module):
            raise _Failed(f"pass the student model (a torch.nn.Module), not {type(student).__name__}.")
        got, source = _layers(student), _layers(teacher)
        if len(got) != len(layers):
            raise _Failed(f"the student has {len(got)} layers, expected {len(layers)}.")
        for new, old in enumerate(layers):
            a = got[new].attention.self.query.weight
            b = source[old].attention.self.query.weight
            if a.shape != b.shape or not torch.equal(a.detach().cpu(), b.detach().cpu()):
                raise _Failed(f"student layer {new} is not a copy of teacher layer {old}: "
                              f"build it with distill.make_student(teacher, {tuple(layers)}) "
                              "and check it before training.")
        return f"{len(layers)} layers copied from teacher layers {tuple(layers)}."

    return _run_check(body, quiet)


# --- notebook 06 -------------------------------------------------------------------------


def _nll(probs, labels, t: float) -> float:
    """Mean negative log-likelihood of `labels` after dividing the log-probabilities by t."""
    import numpy as np

    z = np.log(np.asarray(probs, dtype=float)) / t
    z = z - z.max(1, keepdims=True)
    labels = np.asarray(labels)
    return float(-(z[np.arange(len(z)), labels] - np.log(np.exp(z).sum(1))).mean())


def check_temperature(T, probs, labels, quiet: bool = False) -> CheckResult:
    """A fitted temperature gives a validation NLL no worse than T = 1."""

    def body() -> str:
        if T is None:
            raise _Failed("return a temperature.")
        if not isinstance(T, (int, float)) or not 0 < float(T):
            raise _Failed(f"return one positive number, got {T!r}.")
        fitted, one = _nll(probs, labels, float(T)), _nll(probs, labels, 1.0)
        if fitted > one + 1e-9:
            raise _Failed(f"NLL {fitted:.4f} > {one:.4f} at T=1")
        return f"validation NLL {fitted:.4f} at T={float(T):.2f} (T=1: {one:.4f})."

    return _run_check(body, quiet)


def check_length_batches(batches, lengths, batch_size: int, quiet: bool = False) -> CheckResult:
    """Batches cover every example once and hold less padding than random batches of the same size."""
    import numpy as np

    lengths = np.asarray(lengths)

    def padding_of(bs) -> int:
        return int(sum(lengths[b].max() * len(b) - lengths[b].sum() for b in bs if len(b)))

    def body() -> str:
        if batches is None:
            raise _Failed("return a list of index lists.")
        flat = sorted(int(i) for b in batches for i in b)
        if flat != list(range(len(lengths))):
            raise _Failed("every example must appear exactly once.")
        shuffled = np.random.default_rng(0).permutation(len(lengths))
        random_batches = [shuffled[i:i + batch_size] for i in range(0, len(lengths), batch_size)]
        mine, rand = padding_of([np.asarray(b, dtype=int) for b in batches]), padding_of(random_batches)
        if mine >= rand:
            raise _Failed("no less padding than random.")
        return f"{mine} padding tokens vs {rand} for random batches"

    return _run_check(body, quiet)
