"""Neural-network basics: activations with their derivatives, losses by hand, gradient
descent, and backpropagation through a two-layer network written out step by step.

Everything here is small on purpose; the notebook compares each piece with PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# --- activations -------------------------------------------------------------------------


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """1 / (1 + e^-x)."""
    return 1.0 / (1.0 + torch.exp(-x))


def _gelu(x: torch.Tensor) -> torch.Tensor:
    # exact GELU: x * Phi(x), Phi the standard normal CDF
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _gelu_grad(x: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)
    return cdf + x * pdf


# name -> (f, f') with f' written by hand; tests check f' against autograd.
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "sigmoid": (sigmoid, lambda x: sigmoid(x) * (1 - sigmoid(x))),
    "tanh": (torch.tanh, lambda x: 1 - torch.tanh(x) ** 2),
    "relu": (lambda x: torch.clamp(x, min=0), lambda x: (x > 0).to(x.dtype)),
    "gelu": (_gelu, _gelu_grad),
}


def activation(name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x), f'(x)) for one of ACTIVATIONS, derivative written by hand."""
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}.")
    f, df = ACTIVATIONS[name]
    return f(x), df(x)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax: subtracting the max changes nothing mathematically
    (it cancels between numerator and denominator) but keeps exp() from overflowing."""
    z = x - x.amax(dim=dim, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=dim, keepdim=True)


def naive_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """softmax without the max trick: exp(x) / sum(exp(x)). Overflows for large inputs."""
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_jacobian(p: torch.Tensor) -> torch.Tensor:
    """d softmax_i / d x_j = p_i (delta_ij - p_j), for a 1-D probability vector p."""
    return torch.diag(p) - torch.outer(p, p)


# --- losses ------------------------------------------------------------------------------


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error, (1/n) sum (pred - target)^2 (same as torch's reduction='mean')."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape.")
    return ((pred - target) ** 2).mean()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of -log softmax(logits)[target] over the batch; logits (N, C), integer targets (N,)."""
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"cross_entropy wants logits (N, C) and class indices (N,), got {tuple(logits.shape)} "
            f"and {tuple(targets.shape)}."
        )
    log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)  # stable log-softmax
    return -log_probs[torch.arange(len(targets)), targets].mean()


def binary_cross_entropy(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-(1/n) sum [y log p + (1 - y) log(1 - p)]: both classes count, not only the positives."""
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


# --- gradient descent --------------------------------------------------------------------


def elongated_bowl(xy: torch.Tensor) -> torch.Tensor:
    """A 2-D loss surface f(x, y) = 0.5 (x^2 + 10 y^2): ten times steeper along y.

    Gradient descent on it is stable only for learning rates below 2 / 10 = 0.2."""
    return 0.5 * (xy[..., 0] ** 2 + 10.0 * xy[..., 1] ** 2)


def gradient_descent(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    start: tuple[float, float],
    lr: float,
    steps: int,
) -> torch.Tensor:
    """Plain gradient descent, w <- w - lr * grad f(w), gradients from autograd.

    Returns the path, shape (steps + 1, 2), starting point included."""
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    path = [w.detach().clone()]
    for _ in range(steps):
        loss = loss_fn(w)
        (grad,) = torch.autograd.grad(loss, w)
        with torch.no_grad():
            w -= lr * grad
        path.append(w.detach().clone())
    return torch.stack(path)


# --- backpropagation through a two-layer network -----------------------------------------


@dataclass
class TwoLayerParams:
    """x (N, d_in) -> h = tanh(x W1 + b1) (N, d_h) -> out = h W2 + b2 (N, d_out)."""

    W1: torch.Tensor
    b1: torch.Tensor
    W2: torch.Tensor
    b2: torch.Tensor

    @classmethod
    def init(cls, d_in: int, d_hidden: int, d_out: int, seed: int = 0, dtype=torch.float64):
        g = torch.Generator().manual_seed(seed)
        return cls(
            W1=torch.randn(d_in, d_hidden, generator=g, dtype=dtype) / math.sqrt(d_in),
            b1=torch.zeros(d_hidden, dtype=dtype),
            W2=torch.randn(d_hidden, d_out, generator=g, dtype=dtype) / math.sqrt(d_hidden),
            b2=torch.zeros(d_out, dtype=dtype),
        )

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        return (self.W1, self.b1, self.W2, self.b2)


def two_layer_loss(x, y, W1, b1, W2, b2) -> torch.Tensor:
    """The forward pass and MSE loss in one expression (what autograd differentiates)."""
    return mse(torch.tanh(x @ W1 + b1) @ W2 + b2, y)


def two_layer_backward(x: torch.Tensor, y: torch.Tensor, p: TwoLayerParams) -> tuple[torch.Tensor, dict]:
    """Forward pass, then every gradient by the chain rule, one line per step.

    Returns (loss, grads) with grads keyed 'W1', 'b1', 'W2', 'b2'."""
    # forward
    z1 = x @ p.W1 + p.b1  # (N, d_h) pre-activation
    h = torch.tanh(z1)  # (N, d_h)
    out = h @ p.W2 + p.b2  # (N, d_out)
    loss = ((out - y) ** 2).mean()
    # backward: start from dL/dout and walk back through each operation
    d_out = 2.0 * (out - y) / out.numel()  # (N, d_out)  d mean(e^2) / d out
    d_W2 = h.T @ d_out  # (d_h, d_out)
    d_b2 = d_out.sum(0)  # (d_out,)
    d_h = d_out @ p.W2.T  # (N, d_h)
    d_z1 = d_h * (1.0 - h**2)  # (N, d_h)  tanh' = 1 - tanh^2
    d_W1 = x.T @ d_z1  # (d_in, d_h)
    d_b1 = d_z1.sum(0)  # (d_h,)
    return loss, {"W1": d_W1, "b1": d_b1, "W2": d_W2, "b2": d_b2}


XOR_X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
XOR_Y = torch.tensor([[0.0], [1.0], [1.0], [0.0]], dtype=torch.float64)


def train_two_layer(
    x: torch.Tensor, y: torch.Tensor, d_hidden: int = 4, lr: float = 0.5, epochs: int = 2000, seed: int = 0
) -> tuple[TwoLayerParams, list[float]]:
    """Full-batch gradient descent with the hand-written backward pass. Returns params and losses."""
    p = TwoLayerParams.init(x.shape[1], d_hidden, y.shape[1], seed=seed, dtype=x.dtype)
    losses = []
    for _ in range(epochs):
        loss, grads = two_layer_backward(x, y, p)
        losses.append(loss.item())
        for name, g in grads.items():
            setattr(p, name, getattr(p, name) - lr * g)
    return p, losses


def two_layer_predict(x: torch.Tensor, p: TwoLayerParams) -> torch.Tensor:
    return torch.tanh(x @ p.W1 + p.b1) @ p.W2 + p.b2
