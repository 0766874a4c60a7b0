import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bigmodel_lab import basics


@pytest.mark.parametrize("name", list(basics.ACTIVATIONS))
def test_hand_written_derivatives_match_autograd(name):
    x = torch.linspace(-4, 4, 41, dtype=torch.float64).requires_grad_(True)
    y, dy = basics.activation(name, x)
    (auto,) = torch.autograd.grad(y.sum(), x)
    mask = x.detach() != 0  # ReLU has no derivative at 0
    torch.testing.assert_close(dy[mask], auto[mask])


def test_activations_match_torch():
    x = torch.randn(50, dtype=torch.float64)
    torch.testing.assert_close(basics.activation("gelu", x)[0], F.gelu(x))
    torch.testing.assert_close(basics.activation("sigmoid", x)[0], torch.sigmoid(x))


def test_unknown_activation_lists_the_choices():
    with pytest.raises(ValueError, match="sigmoid"):
        basics.activation("swish", torch.zeros(1))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(2, 9), st.floats(0.1, 50.0))
def test_stable_softmax_matches_torch_and_sums_to_one(n, c, spread):
    x = torch.randn(n, c, dtype=torch.float64) * spread
    p = basics.softmax(x)
    torch.testing.assert_close(p, torch.softmax(x, -1))
    torch.testing.assert_close(p.sum(-1), torch.ones(n, dtype=torch.float64))


def test_naive_softmax_overflows_in_float16_and_stable_one_does_not():
    x = torch.tensor([10.0, 12.0, 14.0], dtype=torch.float16)
    assert torch.isnan(basics.naive_softmax(x)).any()
    assert torch.isfinite(basics.softmax(x)).all()


def test_softmax_jacobian_matches_autograd():
    x = torch.randn(5, dtype=torch.float64)
    auto = torch.autograd.functional.jacobian(lambda t: torch.softmax(t, -1), x)
    torch.testing.assert_close(basics.softmax_jacobian(torch.softmax(x, -1)), auto)


def test_losses_by_hand_equal_torch():
    logits, targets = torch.randn(6, 4), torch.tensor([0, 3, 1, 2, 2, 0])
    torch.testing.assert_close(basics.cross_entropy(logits, targets), F.cross_entropy(logits, targets))
    pred, target = torch.randn(5, 3), torch.randn(5, 3)
    torch.testing.assert_close(basics.mse(pred, target), F.mse_loss(pred, target))
    p, y = torch.rand(7) * 0.98 + 0.01, torch.randint(0, 2, (7,)).float()
    torch.testing.assert_close(basics.binary_cross_entropy(p, y), F.binary_cross_entropy(p, y))


def test_loss_shape_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="differ in shape"):
        basics.mse(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"logits \(N, C\)"):
        basics.cross_entropy(torch.zeros(3), torch.zeros(3, dtype=torch.long))


def test_gradient_descent_converges_below_and_diverges_above_two_over_curvature():
    good = basics.gradient_descent(basics.elongated_bowl, (2.0, 1.0), lr=0.15, steps=100)
    bad = basics.gradient_descent(basics.elongated_bowl, (2.0, 1.0), lr=0.21, steps=100)
    assert good.shape == (101, 2)
    assert basics.elongated_bowl(good[-1]) < 1e-6
    assert basics.elongated_bowl(bad[-1]) > basics.elongated_bowl(bad[0])


def test_hand_written_backward_matches_autograd():
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    p = basics.TwoLayerParams.init(3, 4, 2, seed=1)
    loss, grads = basics.two_layer_backward(x, y, p)
    params = [t.clone().requires_grad_(True) for t in p.as_tuple()]
    auto_loss = basics.two_layer_loss(x, y, *params)
    auto = torch.autograd.grad(auto_loss, params)
    torch.testing.assert_close(loss, auto_loss.detach())
    for name, a in zip(["W1", "b1", "W2", "b2"], auto):
        torch.testing.assert_close(grads[name], a)


def test_two_layer_loss_passes_gradcheck():
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    params = [t.requires_grad_(True) for t in basics.TwoLayerParams.init(3, 4, 2).as_tuple()]
    assert torch.autograd.gradcheck(lambda *ps: basics.two_layer_loss(x, y, *ps), params)


def test_xor_is_learned_with_hand_written_backprop():
    p, losses = basics.train_two_layer(basics.XOR_X, basics.XOR_Y, epochs=2000)
    assert losses[-1] < 0.01 < losses[0]
    pred = basics.two_layer_predict(basics.XOR_X, p)
    assert ((pred > 0.5).double() == basics.XOR_Y).all()
