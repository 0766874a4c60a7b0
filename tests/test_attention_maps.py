import pytest
import torch

from bigmodel_lab.attention_maps import build_explorer, row_entropy, toy_attention


def test_toy_attention_rows_are_distributions_and_deterministic():
    words, w = toy_attention("the cat sat on the mat", d_k=16)
    assert words == ["the", "cat", "sat", "on", "the", "mat"] and w.shape == (6, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(6))
    torch.testing.assert_close(w, toy_attention("the cat sat on the mat", d_k=16)[1])
    torch.testing.assert_close(w[0], w[4])  # same word, same vectors


def test_unscaled_attention_saturates_as_d_k_grows_and_scaling_prevents_it():
    s = "one two three four five six seven eight"
    small, big = toy_attention(s, 4, scaled=False)[1], toy_attention(s, 1024, scaled=False)[1]
    assert row_entropy(big).mean() < 0.2 < row_entropy(small).mean()
    assert row_entropy(toy_attention(s, 1024, scaled=True)[1]).mean() > 0.5


def test_high_temperature_flattens_towards_uniform():
    w = toy_attention("a b c d", 64, temperature=100.0)[1]
    torch.testing.assert_close(w, torch.full((4, 4), 0.25), atol=0.02, rtol=0)


def test_toy_attention_bad_input_says_what_to_fix():
    with pytest.raises(ValueError, match="at least one word"):
        toy_attention("   ")
    with pytest.raises(ValueError, match="temperature"):
        toy_attention("a b", temperature=0)


def test_explorer_builds_headless():
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")
    assert build_explorer("a b c") is not None


def test_explorer_reads_as_its_sentence_and_has_a_static_figure():
    from bigmodel_lab.attention_maps import plot_toy_attention

    box = build_explorer("a b c")
    plain = box._repr_mimebundle_()["text/plain"]
    assert "VBox(children" not in plain and "a b c" in plain
    ax = plot_toy_attention("a b c", d_k=4, scaled=False)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert "unscaled" in ax.get_title()
