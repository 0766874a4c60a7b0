import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bigmodel_lab.longtext import chunks, head, head_tail


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 300), st.integers(2, 64), st.floats(0.0, 1.0))
def test_head_tail_keeps_budget_and_both_ends(n, budget, share):
    ids = list(range(n))
    out = head_tail(ids, budget, share)
    assert len(out) == min(n, budget)
    if n > budget:
        n_head = round(budget * share)
        assert out[:n_head] == ids[:n_head]
        if budget - n_head:
            assert out[-1] == ids[-1]


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 300), st.integers(2, 64), st.data())
def test_chunks_cover_every_token_within_budget(n, budget, data):
    stride = data.draw(st.integers(0, budget - 1))
    ids = list(range(n))
    parts = chunks(ids, budget, stride)
    assert all(len(p) <= budget for p in parts)
    assert sorted({t for p in parts for t in p}) == ids
    assert parts[0][:budget] == ids[:budget]


def test_head_is_a_prefix():
    assert head(list(range(10)), 4) == [0, 1, 2, 3]


def test_stride_must_be_smaller_than_budget():
    with pytest.raises(ValueError, match="stride"):
        chunks(list(range(10)), 4, stride=4)
