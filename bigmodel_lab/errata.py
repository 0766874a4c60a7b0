"""Errata for the worked examples in the seed articles (shared/seeds/*.txt, in Chinese).

Each `Claim` records, in our own words, what an article states (its numbers are quoted as
claims, not trusted) and a function that recomputes the right value with torch. `table()`
puts them side by side; notebook 01 prints it and tests/test_errata.py asserts every value.
Explanations are templates filled with recomputed numbers, so no number is typed twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .attention import scaled_dot_product_attention

SEEDS = {
    "000": "000_e2b8395ce178a031.txt",
    "001": "001_3e157560f1208da3.txt",
    "002": "002_a289b0eaa11b8e7f.txt",
    "003": "003_9fae095ce71e3e33.txt",
    "004": "004_8df9e8dcbfd52baa.txt",
}

# The three-token example of seed 003, section 4.4 (also the shape of seed 001's 4.3 example):
# a sequence of three tokens, each with a 1-dimensional query, key and value.
EXAMPLE_Q = (1.0, 2.0, 3.0)
EXAMPLE_K = (4.0, 5.0, 6.0)
EXAMPLE_V = (7.0, 8.0, 9.0)


@dataclass(frozen=True)
class Claim:
    key: str
    seed: str  # "000".."004", see SEEDS
    where: str  # section of the article
    claim: str  # what the article states, paraphrased; its numbers quoted
    claimed: Any  # the article's number(s), or None for a statement without one
    recompute: Callable[[], dict]  # -> {"correct": ..., other values used in `why`}
    why: str  # explanation template, formatted with the recomputed values
    verdict: str | None = None  # fixed verdict for statements; numbers are compared instead


def _r(x, nd: int = 4):
    """Round a tensor / float / nested list for display."""
    if isinstance(x, torch.Tensor):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return [_r(v, nd) for v in x]
    return round(float(x), nd)


def _tokens() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    to = lambda t: torch.tensor(t, dtype=torch.float64)[:, None]  # noqa: E731  (3, 1)
    return to(EXAMPLE_Q), to(EXAMPLE_K), to(EXAMPLE_V)


# --- recomputations ----------------------------------------------------------------------


def ce_two_class_example() -> dict:
    # seed 004, 4.1.4: y = (1, 0), p = (0.7, 0.3), written as -1/2 [1 log 0.7 + 0 log 0.3]
    y, p = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.7, 0.3], dtype=torch.float64)
    as_written = -(y * p.log()).sum() / 2
    one_sample = F.cross_entropy(p.log()[None], torch.tensor([0]))  # one sample, class 0
    return {"correct": _r(as_written), "one_sample": _r(one_sample)}


def ce_four_samples_example() -> dict:
    # seed 003, 4.1: y = [1, 0, 1, 0], p = [0.3, 0.7, 0.6, 0.4]
    y = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    p = torch.tensor([0.3, 0.7, 0.6, 0.4], dtype=torch.float64)
    printed_formula = -(y * p.log()).mean()
    bce = F.binary_cross_entropy(p, y)
    return {"correct": _r(printed_formula), "bce": _r(bce)}


def log_loss_negative_example() -> dict:
    # seed 004, 4.1.3: "log loss" printed as -1/m sum y log p. Score one negative example
    # (y = 0) predicted confidently positive (p = 0.9) with the printed and the full formula.
    y, p = torch.tensor([0.0], dtype=torch.float64), torch.tensor([0.9], dtype=torch.float64)
    printed = -(y * p.log()).mean()
    return {"printed": _r(printed) + 0.0, "correct": _r(F.binary_cross_entropy(p, y))}


def _bowl(theta: torch.Tensor) -> torch.Tensor:
    return (theta[0] - 1) ** 2 + (theta[1] - 2) ** 2


def gd_gradient() -> dict:
    # seed 003, 4.2: J = (t1 - 1)^2 + (t2 - 2)^2 at theta = [1, 2]
    theta = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(_bowl(theta), theta)
    return {"correct": _r(grad)}


def gd_update() -> dict:
    theta = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(_bowl(theta), theta)
    lr = 0.1
    with_their_gradient = theta.detach() - lr * torch.tensor([-2.0, -2.0], dtype=torch.float64)
    return {"correct": _r(theta.detach() - lr * grad), "own": _r(with_their_gradient)}


def relu_example() -> dict:
    return {"correct": _r(F.relu(torch.tensor([-2.0, 0.0, 2.0])))}


def sigmoid_example() -> dict:
    return {"correct": _r(torch.sigmoid(torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64)))}


def attention_formula_division() -> dict:
    # seed 003, 4.4 writes softmax(Q K^T / sqrt(d_k)) / V. On the three-token example the
    # right product gives one output per token; show it and check it against torch.
    q, k, v = _tokens()
    out, _ = scaled_dot_product_attention(q, k, v)
    ref = F.scaled_dot_product_attention(q, k, v)
    return {"correct": _r(out.squeeze(-1)), "max_diff_vs_torch": float((out - ref).abs().max())}


def scores_example() -> dict:
    # seed 003, 4.4: Q K^T for q = [1, 2, 3], k = [4, 5, 6]
    q, k, _ = _tokens()
    return {
        "correct": _r(q @ k.T, 1),  # three 1-d tokens: a 3 x 3 matrix
        "dot": _r(q.squeeze() @ k.squeeze(), 1),  # one 3-d query and key: a single number
        "elementwise": _r(q.squeeze() * k.squeeze(), 1),
    }


def scaling_example() -> dict:
    # seed 003, 4.4: their own [4, 6, 10] divided by sqrt(3)
    return {"correct": _r(torch.tensor([4.0, 6.0, 10.0]) / math.sqrt(3))}


def softmax_example() -> dict:
    # seed 003, 4.4: softmax of their scaled scores [2.3094, 3.9373, 6.5222]
    claimed_weights = torch.tensor([0.2319, 0.4198, 0.4484], dtype=torch.float64)
    scores = torch.tensor([2.3094, 3.9373, 6.5222], dtype=torch.float64)
    return {"correct": _r(torch.softmax(scores, -1)), "claimed_sum": _r(claimed_weights.sum())}


def output_example() -> dict:
    # seed 003, 4.4: "attention output" [0.2319*7, 0.4198*8, 0.4484*9]
    q, k, v = _tokens()
    out, _ = scaled_dot_product_attention(q, k, v)
    return {
        "correct": _r(out.squeeze(-1)),
        "p1": _r(0.2319 * 7),
        "p2": _r(0.4198 * 8),
        "vmin": _r(v.min(), 1),
        "vmax": _r(v.max(), 1),
    }


def same_index_formula() -> dict:
    # seed 001, 4.3: Output = sum_i e^{q_i k_i} v_i / sum_i e^{q_i k_i}
    q, k, v = _tokens()
    w = torch.softmax((q * k).squeeze(-1), -1)  # pairs query i with key i only
    their_output = w @ v.squeeze(-1)
    out, _ = scaled_dot_product_attention(q, k, v)
    return {"correct": _r(out.squeeze(-1)), "their_output": _r(their_output)}


def sqrt_dk_reason(d_k: int = 64, n: int = 20000, seed: int = 0) -> dict:
    # seed 000, 4.2: "the sqrt(d_k) factor is there to control vanishing gradients"
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(n, d_k, generator=g), torch.randn(n, d_k, generator=g)
    dots = (q * k).sum(-1)
    return {
        "correct": _r((dots / math.sqrt(d_k)).var(), 2),
        "var_unscaled": _r(dots.var(), 1),
        "var_scaled": _r((dots / math.sqrt(d_k)).var(), 2),
        "d_k": d_k,
    }


def ffn_formula() -> dict:
    # seed 000, 4.2: FFN(x) = max(0, x W1 + b1) W2 + b2, compared with torch modules
    torch.manual_seed(0)
    lin1, lin2 = torch.nn.Linear(8, 32), torch.nn.Linear(32, 8)
    x = torch.randn(5, 8)
    with torch.no_grad():
        by_formula = torch.clamp(x @ lin1.weight.T + lin1.bias, min=0) @ lin2.weight.T + lin2.bias
        by_torch = lin2(F.relu(lin1(x)))
    return {"correct": "verified", "max_diff": float((by_formula - by_torch).abs().max())}


def chain_rule_one_layer() -> dict:
    # seed 002, 4.2: dL/dW = dL/dy dy/dW for y = f(x W + b); check against autograd
    torch.manual_seed(0)
    x, W, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    W.requires_grad_(True)
    y = torch.tanh(x @ W + b)
    loss = (y**2).sum()
    (auto,) = torch.autograd.grad(loss, W)
    dL_dy = 2 * y.detach()
    by_hand = x.T @ (dL_dy * (1 - y.detach() ** 2))  # dy/dz = 1 - tanh^2, dz/dW = x
    return {"correct": "verified", "max_diff": float((auto - by_hand).abs().max())}


# --- the claims --------------------------------------------------------------------------

CLAIMS: list[Claim] = [
    Claim(
        "ce_two_class", "004", "4.1.4 cross-entropy example",
        "y = (1, 0), p = (0.7, 0.3): -1/2 [1 log 0.7 + 0 log 0.3] is about 0.356",
        0.356, ce_two_class_example,
        "The expression as printed equals {correct}. The article's number is -ln 0.7 "
        "({one_sample}, truncated), the loss of this one sample: it divides by m = 2 in the "
        "formula (counting classes as samples) and then forgets to in the result.",
    ),
    Claim(
        "ce_four_samples", "003", "4.1 cross-entropy example",
        "y = [1, 0, 1, 0], p = [0.3, 0.7, 0.6, 0.4]: cross-entropy is about 0.613",
        0.613, ce_four_samples_example,
        "The printed formula gives {correct}; it only scores the two positives. Binary "
        "cross-entropy, which also scores the y = 0 cases with log(1 - p), gives {bce}. "
        "0.613 matches neither.",
    ),
    Claim(
        "log_loss_formula", "004", "4.1.3 log loss formula",
        "log loss = -1/m sum y log p (printed identical to cross-entropy); "
        "value shown: a negative example (y = 0) predicted with p = 0.9",
        None, log_loss_negative_example,
        "For 0/1 labels the (1 - y) log(1 - p) term is missing: the printed formula charges "
        "{printed} for this confident mistake, the binary log loss charges {correct}.",
        verdict="wrong",
    ),
    Claim(
        "gd_gradient", "003", "4.2 gradient-descent example",
        "J = (t1 - 1)^2 + (t2 - 2)^2 at theta = [1, 2]: gradient [-2, -2]",
        [-2.0, -2.0], gd_gradient,
        "The gradient 2(theta - [1, 2]) is {correct} at theta = [1, 2]: the starting point is "
        "already the minimum, so gradient descent should not move at all.",
    ),
    Claim(
        "gd_update", "003", "4.2 gradient-descent example",
        "one step with lr = 0.1 moves theta from [1, 2] to [1.2, 1.8]",
        [1.2, 1.8], gd_update,
        "With the true gradient the step gives {correct}. Even with the article's own "
        "gradient the update theta - 0.1 * [-2, -2] is {own}, not [1.2, 1.8]: a sign slip.",
    ),
    Claim(
        "relu", "003", "4.3 activation example",
        "ReLU([-2, 0, 2]) = [0, 0, 2]", [0.0, 0.0, 2.0], relu_example,
        "Correct.",
    ),
    Claim(
        "sigmoid", "003", "4.3 activation example",
        "sigmoid([-2, 0, 2]) is about [0.1192, 0.5190, 0.8808]",
        [0.1192, 0.5190, 0.8808], sigmoid_example,
        "sigmoid(0) = 1 / (1 + e^0) is exactly one half: {correct}. The two outer values "
        "are right.",
    ),
    Claim(
        "attention_division", "003", "4.4 attention formula",
        "Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) / V (a division by V); "
        "value shown: the three-token example done right",
        None, attention_formula_division,
        "V multiplies the weights (a matrix product: each output is a weighted average of "
        "the value vectors); dividing has no meaning. Done right, the three tokens give "
        "{correct} (ours vs torch SDPA: max difference {max_diff_vs_torch:.1e}).",
        verdict="wrong",
    ),
    Claim(
        "scores", "003", "4.4 attention example",
        "q = [1, 2, 3], k = [4, 5, 6]: Q K^T = [4, 6, 10]",
        [4.0, 6.0, 10.0], scores_example,
        "For three tokens with 1-d queries and keys, Q K^T is the 3 x 3 matrix {correct}; "
        "read as one 3-d query and key it is the dot product {dot}. [4, 6, 10] is neither "
        "(even the element-wise products are {elementwise}).",
    ),
    Claim(
        "scaling", "003", "4.4 attention example",
        "[4, 6, 10] / sqrt(3) = [2.3094, 3.9373, 6.5222]",
        [2.3094, 3.9373, 6.5222], scaling_example,
        "Dividing the article's own scores gives {correct}: only the first entry is right. "
        "(With 1-d keys, d_k is 1 and there is nothing to scale.)",
    ),
    Claim(
        "softmax", "003", "4.4 attention example",
        "softmax([2.3094, 3.9373, 6.5222]) = [0.2319, 0.4198, 0.4484]",
        [0.2319, 0.4198, 0.4484], softmax_example,
        "The claimed weights sum to {claimed_sum:.4f}, so they cannot be a softmax. The softmax "
        "of those scores is {correct}: the largest score takes most of the weight.",
    ),
    Claim(
        "output", "003", "4.4 attention example",
        "attention output = [0.2319 x 7, 0.4198 x 8, 0.4484 x 9] = [1.6303, 3.3544, 4.0356]",
        [1.6303, 3.3544, 4.0356], output_example,
        "Each output is a weighted average of the values, so it must lie between {vmin} and "
        "{vmax}; multiplying weight i by value i alone is not attention. Done right: "
        "{correct}. The products are also off: 0.2319 x 7 = {p1}, 0.4198 x 8 = {p2}.",
    ),
    Claim(
        "same_index", "001", "4.3 attention example",
        "Score = Q K^T = q1 k1 + q2 k2 + q3 k3, then Output = sum_i e^(q_i k_i) v_i / "
        "sum_i e^(q_i k_i); value shown: this formula on the three-token example",
        None, same_index_formula,
        "Pairing query i only with key i means no token compares itself with the others, and "
        "the whole sequence collapses to the single number {their_output}; the 1/sqrt(d_k) "
        "the article wrote earlier is dropped too. Real attention gives one output per "
        "token: {correct}.",
        verdict="wrong",
    ),
    Claim(
        "sqrt_dk_reason", "000", "4.2 attention formula",
        "the sqrt(d_k) factor is there to control vanishing gradients",
        None, sqrt_dk_reason,
        "Partly: for random unit-variance q and k with d_k = {d_k}, the dot products have "
        "variance {var_unscaled} (about d_k); dividing by sqrt(d_k) brings it to "
        "{var_scaled}. Large scores saturate the softmax, and a saturated softmax has "
        "near-zero gradient; notebook 02 measures this.",
        verdict="partly right",
    ),
    Claim(
        "attention_formula", "000, 001", "4.2 / 4.1 attention formula",
        "Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V",
        None, attention_formula_division,
        "Correct; our implementation of exactly this formula matches torch SDPA "
        "(max difference {max_diff_vs_torch:.1e}).",
        verdict="right",
    ),
    Claim(
        "ffn_formula", "000", "4.2 feed-forward formula",
        "FFN(x) = max(0, x W1 + b1) W2 + b2", None, ffn_formula,
        "Correct; the formula equals Linear -> ReLU -> Linear (max difference {max_diff:.1e}).",
        verdict="right",
    ),
    Claim(
        "chain_rule", "002", "4.2 backpropagation formula",
        "dL/dW = dL/dy * dy/dW (and likewise for b)", None, chain_rule_one_layer,
        "Correct for one layer y = f(x W + b); written out by hand it matches autograd "
        "(max difference {max_diff:.1e}). Deeper networks chain one such factor per layer.",
        verdict="right",
    ),
]


def _close(claimed, correct, tol: float = 6e-4) -> bool:
    try:
        a = torch.tensor(claimed, dtype=torch.float64)
        b = torch.tensor(correct, dtype=torch.float64)
    except (TypeError, ValueError):
        return False
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=tol, rtol=0))


def check(claim: Claim) -> dict:
    """Recompute one claim: its correct value, verdict and filled-in explanation."""
    values = claim.recompute()
    if claim.verdict is not None:
        verdict = claim.verdict
    else:
        verdict = "right" if _close(claim.claimed, values["correct"]) else "wrong"
    return {
        "source": SEEDS[claim.seed[:3]] if "," not in claim.seed else claim.seed,
        "where": claim.where,
        "claim": claim.claim,
        "claimed": claim.claimed if claim.claimed is not None else "",
        "correct": values["correct"],
        "verdict": verdict,
        "why": claim.why.format(**values),
        "key": claim.key,
    }


def table():
    """All claims, recomputed, as a pandas DataFrame (one row per claim)."""
    import pandas as pd

    return pd.DataFrame([check(c) for c in CLAIMS]).set_index("key")
