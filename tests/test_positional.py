import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bigmodel_lab.positional import (
    LearnedPositionalEmbedding,
    apply_rope,
    rope_cos_sin,
    sinusoidal_encoding,
    sinusoidal_shift_matrix,
)


def test_sinusoidal_encoding_matches_the_paper_formula():
    pe = sinusoidal_encoding(10, 8)
    assert pe.shape == (10, 8)
    torch.testing.assert_close(pe[3, 2], torch.sin(torch.tensor(3 / 10000 ** (2 / 8))))
    torch.testing.assert_close(pe[3, 3], torch.cos(torch.tensor(3 / 10000 ** (2 / 8))))
    assert torch.equal(pe[0, 0::2], torch.zeros(4)) and torch.equal(pe[0, 1::2], torch.ones(4))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 200), st.integers(0, 50))
def test_shift_by_k_is_a_fixed_linear_map(p, k):
    pe = sinusoidal_encoding(260, 16)
    m = sinusoidal_shift_matrix(k, 16)
    torch.testing.assert_close(m @ pe[p], pe[p + k], atol=1e-5, rtol=1e-5)


def test_odd_dimension_is_refused_with_reason():
    with pytest.raises(ValueError, match="even"):
        sinusoidal_encoding(4, 7)


def test_learned_positions_add_one_vector_per_position_and_refuse_long_inputs():
    emb = LearnedPositionalEmbedding(8, 4)
    x = torch.zeros(2, 5, 4)
    torch.testing.assert_close(emb(x)[1], emb.table.weight[:5])
    with pytest.raises(ValueError, match="max_positions=8"):
        emb(torch.zeros(1, 9, 4))


def test_rope_matches_transformers_llama():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    q, k = torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)
    cos, sin = rope_cos_sin(6, 8)
    ref_q, ref_k = apply_rotary_pos_emb(q, k, cos[None], sin[None])
    torch.testing.assert_close(apply_rope(q), ref_q)
    torch.testing.assert_close(apply_rope(k), ref_k)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 500), st.integers(0, 500), st.integers(-20, 20))
def test_rope_scores_depend_only_on_relative_position(m, n, shift):
    g = torch.Generator().manual_seed(m * 1000 + n)
    q, k = torch.randn(1, 16, generator=g), torch.randn(1, 16, generator=g)
    def score(a, b):
        qa = apply_rope(q, torch.tensor([a]))
        kb = apply_rope(k, torch.tensor([b]))
        return (qa * kb).sum()
    s0, s1 = score(m, n), score(m + shift + 20, n + shift + 20)
    torch.testing.assert_close(s0, s1, atol=1e-4, rtol=1e-4)


def test_rope_keeps_vector_norms():
    x = torch.randn(4, 10, 8)
    torch.testing.assert_close(apply_rope(x).norm(dim=-1), x.norm(dim=-1))
