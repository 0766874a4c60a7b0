import math

import pytest
import torch

from bigmodel_lab import exercises as ex


def stub(*args):
    raise NotImplementedError


def test_unfinished_exercise_is_reported_not_raised(capsys):
    result = ex.check_softmax(stub)
    assert not result and "not implemented" in result.message
    assert "NOT YET" in capsys.readouterr().out


def test_reader_exception_is_reported_in_words():
    result = ex.check_attention(lambda q, k, v: q @ k, quiet=True)
    assert not result and "raised RuntimeError" in result.message


# --- 01 -----------------------------------------------------------------------------------

def good_ce(logits, targets):
    log_p = logits - torch.logsumexp(logits, -1, keepdim=True)
    return -log_p[torch.arange(len(targets)), targets].mean()


@pytest.mark.parametrize(
    "fn, words",
    [
        (lambda z, t: good_ce(z, t) * len(t), "summed over the batch"),
        (lambda z, t: -good_ce(z, t), "sign is flipped"),
        (lambda z, t: -z[torch.arange(len(t)), t].mean(), "raw logits"),
        (lambda z, t: -torch.log(torch.exp(z)[torch.arange(len(t)), t] / torch.exp(z).sum(-1)).mean(), "large ones"),
        (lambda z, t: torch.nn.functional.cross_entropy(z, t, reduction="none"), "one number"),
    ],
)
def test_cross_entropy_check_names_the_mistake(fn, words):
    assert ex.check_cross_entropy(good_ce, quiet=True)
    result = ex.check_cross_entropy(fn, quiet=True)
    assert not result and words in result.message


def test_linear_backward_check():
    good = lambda x, W, b, g: (g @ W.T, x.T @ g, g.sum(0))  # noqa: E731
    assert ex.check_linear_backward(good, quiet=True)
    r = ex.check_linear_backward(lambda x, W, b, g: (g @ W.T, g.T @ x, g.sum(0)), quiet=True)
    assert not r and "dW has shape (2, 3)" in r.message
    r = ex.check_linear_backward(lambda x, W, b, g: (g @ W.T, x.T @ g, g.mean(0)), quiet=True)
    assert not r and "db has the right shape" in r.message


def test_critical_learning_rate_check():
    assert ex.check_critical_learning_rate(0.2, quiet=True)
    assert "does not converge" in ex.check_critical_learning_rate(0.3, quiet=True).message
    assert "edge is higher" in ex.check_critical_learning_rate(0.1, quiet=True).message


# --- 02 -----------------------------------------------------------------------------------

def test_softmax_check_names_the_axis_and_overflow():
    assert ex.check_softmax(lambda x: torch.softmax(x, -1), quiet=True)
    r = ex.check_softmax(lambda x: torch.softmax(x, 1), quiet=True)
    assert not r and "wrong axis (dim=1)" in r.message
    r = ex.check_softmax(lambda x: torch.exp(x) / torch.exp(x).sum(-1, keepdim=True), quiet=True)
    assert not r and "Subtract each row's max" in r.message


def test_attention_check_names_scaling_axis_and_shape_mistakes():
    good = lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), -1) @ v  # noqa: E731
    assert ex.check_attention(good, quiet=True)
    cases = {
        "missing scaling": lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1), -1) @ v,
        "divided by d_k": lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) / q.size(-1), -1) @ v,
        "wrong axis": lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), 1) @ v,
        "returned the weights": lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1), -1),
    }
    for words, fn in cases.items():
        r = ex.check_attention(fn, quiet=True)
        assert not r and words in r.message, (words, r.message)


def test_causal_mask_check():
    assert ex.check_causal_mask(lambda T: torch.ones(T, T).tril().bool(), quiet=True)
    assert "bool" in ex.check_causal_mask(lambda T: torch.ones(T, T).tril(), quiet=True).message
    assert "triu" in ex.check_causal_mask(lambda T: torch.ones(T, T, dtype=torch.bool).triu(), quiet=True).message
    r = ex.check_causal_mask(lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1), quiet=True)
    assert "diagonal" in r.message


# --- 03 -----------------------------------------------------------------------------------

def test_sinusoidal_check():
    from bigmodel_lab.positional import sinusoidal_encoding

    assert ex.check_sinusoidal(sinusoidal_encoding, quiet=True)

    def halves(n, d):
        pe = sinusoidal_encoding(n, d)
        return torch.cat([pe[:, 0::2], pe[:, 1::2]], -1)

    assert "interleave" in ex.check_sinusoidal(halves, quiet=True).message


def test_split_heads_check():
    good = lambda x, h: x.view(x.size(0), x.size(1), h, -1).transpose(1, 2)  # noqa: E731
    assert ex.check_split_heads(good, quiet=True)
    r = ex.check_split_heads(lambda x, h: x.reshape(x.size(0), h, x.size(1), -1), quiet=True)
    assert "wrong layout" in r.message
    r = ex.check_split_heads(lambda x, h: x.view(x.size(0), x.size(1), h, -1), quiet=True)
    assert "transpose(1, 2)" in r.message


def test_param_count_check():
    assert ex.check_mha_param_count(lambda d, h: 4 * d * d + 4 * d, quiet=True)
    assert "biases" in ex.check_mha_param_count(lambda d, h: 4 * d * d, quiet=True).message
    assert "output projection" in ex.check_mha_param_count(lambda d, h: 3 * d * d + 3 * d, quiet=True).message
