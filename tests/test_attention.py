import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bigmodel_lab.attention import causal_mask, padding_mask, scaled_dot_product_attention


@st.composite
def attention_inputs(draw):
    """Random (B, H, T_q, T_k, d_k, d_v) tensors and a random bool mask of a broadcastable shape."""
    B, H = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    T_q, T_k = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    d_k, d_v = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    q = torch.randn(B, H, T_q, d_k, generator=g)
    k = torch.randn(B, H, T_k, d_k, generator=g)
    v = torch.randn(B, H, T_k, d_v, generator=g)
    kind = draw(st.sampled_from(["none", "full", "padding", "causal", "per_head"]))
    if kind == "none":
        mask = None
    elif kind == "full":
        mask = torch.rand(B, H, T_q, T_k, generator=g) > 0.3
    elif kind == "padding":
        mask = torch.rand(B, 1, 1, T_k, generator=g) > 0.3
    elif kind == "causal":
        mask = torch.ones(T_q, T_k, dtype=torch.bool).tril()
    else:
        mask = torch.rand(1, H, T_q, T_k, generator=g) > 0.5
    return q, k, v, mask


@settings(max_examples=60, deadline=None)
@given(attention_inputs())
def test_matches_torch_sdpa_on_rows_with_a_visible_key(inputs):
    q, k, v, mask = inputs
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if mask is None:
        ok_rows = torch.ones(out.shape[:-1], dtype=torch.bool)
    else:
        ok_rows = torch.broadcast_to(mask, weights.shape).any(-1)  # (B, H, T_q)
    torch.testing.assert_close(out[ok_rows], ref[ok_rows], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()


@settings(max_examples=60, deadline=None)
@given(attention_inputs())
def test_weight_rows_sum_to_one_and_masked_keys_get_zero(inputs):
    q, k, v, mask = inputs
    _, weights = scaled_dot_product_attention(q, k, v, mask)
    sums = weights.sum(-1)
    if mask is None:
        torch.testing.assert_close(sums, torch.ones_like(sums))
        return
    full = torch.broadcast_to(mask, weights.shape)
    assert (weights[~full] == 0).all()
    visible = full.any(-1)
    torch.testing.assert_close(sums[visible], torch.ones_like(sums[visible]))
    assert (sums[~visible] == 0).all()


def test_fully_masked_row_gives_zeros_not_nan():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[1, 2] = False  # query 2 of sequence 1 may see nothing
    q.requires_grad_(True)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert torch.equal(out[1, 2], torch.zeros(6))
    assert torch.equal(weights[1, 2], torch.zeros(5))
    out.sum().backward()
    assert torch.isfinite(q.grad).all()
    assert torch.equal(q.grad[1, 2], torch.zeros(4))


def test_fully_padded_sequence_gives_zeros_not_nan():
    x = torch.randn(2, 2, 4, 8)  # (B, H, T, d)
    attention_mask = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0]])
    out, weights = scaled_dot_product_attention(x, x, x, padding_mask(attention_mask))
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert torch.equal(weights[0, :, :, 3], torch.zeros(2, 4))


def test_causal_mask_is_lower_triangular_and_matches_is_causal():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert m[2, 2] and m[2, 0] and not m[0, 1]
    q, k, v = torch.randn(3, 2, 4, 8), torch.randn(3, 2, 4, 8), torch.randn(3, 2, 4, 8)
    out, weights = scaled_dot_product_attention(q, k, v, m)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert (weights.triu(1) == 0).all()


def test_padding_mask_shape_and_meaning():
    m = padding_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert m.shape == (2, 1, 1, 3) and m.dtype == torch.bool
    assert m[0, 0, 0].tolist() == [True, True, False]


def test_weights_are_softmax_of_scaled_scores():
    q, k, v = torch.randn(3, 8), torch.randn(5, 8), torch.randn(5, 2)
    out, weights = scaled_dot_product_attention(q, k, v)
    expected = torch.softmax(q @ k.T / math.sqrt(8), dim=-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(out, expected @ v)


def test_dropout_returns_the_weights_applied_to_v():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 4), torch.randn(2, 6, 4), torch.randn(2, 6, 3)
    out, weights = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert (weights == 0).any()
    torch.testing.assert_close(out, weights @ v)


def test_float16_with_large_scores_stays_finite():
    q = torch.full((1, 4, 8), 30.0, dtype=torch.float16)
    out, weights = scaled_dot_product_attention(q, q, q)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()


def test_mismatched_d_k_says_which_dims_differ():
    with pytest.raises(ValueError, match="last dimension d_k"):
        scaled_dot_product_attention(torch.randn(2, 4), torch.randn(3, 5), torch.randn(3, 5))


def test_mismatched_k_and_v_lengths_are_reported():
    with pytest.raises(ValueError, match="same number of positions"):
        scaled_dot_product_attention(torch.randn(2, 4), torch.randn(3, 4), torch.randn(2, 4))


def test_non_bool_mask_explains_the_fix():
    with pytest.raises(TypeError, match="bool"):
        x = torch.randn(3, 4)
        scaled_dot_product_attention(x, x, x, mask=torch.ones(3, 3))


def test_mask_that_does_not_broadcast_is_reported():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(x, x, x, mask=torch.ones(5, 5, dtype=torch.bool))


def test_bad_dropout_is_reported():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="dropout_p"):
        scaled_dot_product_attention(x, x, x, dropout_p=1.0)


def test_scaling_experiment_shows_variance_d_k_and_saturation():
    from bigmodel_lab.attention import scaling_experiment

    df = scaling_experiment((4, 256), n_samples=400)
    assert df.loc[256, "var_unscaled"] == pytest.approx(256, rel=0.15)
    assert df.loc[256, "var_scaled"] == pytest.approx(1, rel=0.15)
    assert df.loc[256, "max_weight_unscaled"] > 0.8 > df.loc[256, "max_weight_scaled"]
    assert df.loc[256, "grad_norm_unscaled"] < df.loc[256, "grad_norm_scaled"]


def test_attention_cost_reports_quadratic_weight_memory():
    from bigmodel_lab.attention import attention_cost

    df = attention_cost((16, 32), d_model=16, num_heads=2, repeats=1)
    assert df.loc[32, "weights_mb"] == pytest.approx(4 * df.loc[16, "weights_mb"])
    assert (df[["ms_lab", "ms_fused"]] > 0).all().all()
