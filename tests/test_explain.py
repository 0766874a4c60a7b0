"""Attributions, attention, probes and the explorer, on a tiny random BERT with the real tokenizer."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from bigmodel_lab import compress, explain
from bigmodel_lab.models import packaged_model_path


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(packaged_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, num_labels=2)
    return BertForSequenceClassification(config).eval(), tokenizer


@pytest.fixture(scope="module")
def predict(tiny):
    return compress.torch_predict_fn(*tiny, max_length=32)


def test_integrated_gradients_are_complete(tiny):
    model, tokenizer = tiny
    text = "an unexpectedly moving film"
    attribution = explain.integrated_gradients(model, tokenizer, text, target=1, n_steps=64)
    ids = tokenizer([text], return_tensors="pt")["input_ids"]
    special = torch.tensor(tokenizer.get_special_tokens_mask(
        ids[0].tolist(), already_has_special_tokens=True)).bool()
    baseline = torch.where(special, ids, torch.zeros_like(ids))
    with torch.no_grad():
        p = [torch.softmax(model(input_ids=x).logits, -1)[0, 1].item() for x in (ids, baseline)]
    assert len(attribution.tokens) == ids.shape[1] == len(attribution.scores)
    assert attribution.scores.sum() == pytest.approx(p[0] - p[1], abs=1e-3)
    assert attribution.delta < 1e-3


def test_attention_weights_are_row_stochastic_and_model_keeps_its_kernel(tiny):
    model, tokenizer = tiny
    before = model.config._attn_implementation
    tokens, weights = explain.attention_weights(model, tokenizer, "not bad at all")
    assert weights.shape == (2, 2, len(tokens), len(tokens))
    assert np.allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert model.config._attn_implementation == before


def test_wordpieces_merge_and_special_tokens_drop():
    words, scores = explain.merge_wordpieces(["[CLS]", "un", "##believ", "##able", "!", "[SEP]"],
                                             np.array([9.0, 1.0, 2.0, 3.0, 0.5, 9.0]))
    assert words == ["unbelievable", "!"]
    assert scores.tolist() == [6.0, 0.5]


def test_render_html_escapes_text_and_colours_by_sign():
    out = explain.render_html(["<b>", "good"], np.array([-1.0, 1.0]))
    assert "&lt;b&gt;" in out and "<b>" not in out
    assert "rgba(220,40,40,0.80)" in out and "rgba(0,160,60,0.80)" in out


def test_explain_text_returns_everything_the_explorer_shows(tiny):
    result = explain.explain_text(*tiny, "The acting was not good.", n_steps=8)
    assert result["label"] in explain.LABELS and 0.5 <= result["probability"] <= 1
    assert len(result["words"]) == len(result["attributions"]) == len(result["attention"])
    assert -1 <= result["rank_correlation"] <= 1 and "<span" in result["html"]


def test_explorer_widget_updates_headless_when_clicked(tiny):
    box = explain.explorer(*tiny, text="fine", n_steps=4)
    text, button, output = box.children
    text.value = "A dreadful, boring mess."
    button.click()
    assert "dreadful" in output.value
    text.value = "  "
    button.click()
    assert "Type a sentence" in output.value


@pytest.mark.parametrize("text, expected", [
    ("It isn't good", True), ("not bad", True), ("I never laughed", True),
    ("without any charm", True), ("Nothing works", True), ("a knot in the story", False),
    ("great fun", False),
])
def test_negation_detector(text, expected):
    assert explain.has_negation(text) is expected


def test_error_analysis_groups_accuracy_by_length_and_negation():
    texts = ["good", "not good at all", "a fine long film indeed", "bad", "never dull", "ok"]
    labels = [1, 0, 1, 0, 1, 1]
    probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1], [0.4, 0.6]])
    frame = explain.error_analysis(texts, labels, probs, n_length_bins=2)
    by_negation = explain.accuracy_by(frame, "negation").set_index("negation")
    assert by_negation.loc[True, "accuracy"] == 0.0 and by_negation.loc[True, "n"] == 2
    assert by_negation.loc[False, "accuracy"] == 1.0
    assert explain.accuracy_by(frame, "length")["n"].sum() == 6


def test_swap_words_swaps_both_ways_and_keeps_case():
    swaps = {"he": "she", "john": "maria"}
    assert explain.swap_words("He met Maria; she met John.", swaps) == "She met John; he met Maria."


def test_counterfactual_probe_reports_each_swap_family(predict):
    texts = ["He loved the movie.", "John was great.", "Nothing to swap here."]
    table = explain.counterfactual_probe(predict, texts).set_index("swap")
    assert table.loc["pronouns", "texts"] == 1 and table.loc["names", "texts"] == 1
    assert table.loc["neutral", "texts"] == 1
    assert (table["max_abs_change"] >= 0).all() and (table["flip_rate"].between(0, 1)).all()


def test_typos_are_deterministic_and_rate_zero_changes_nothing():
    text = "an absolutely wonderful performance overall"
    assert explain.add_typos(text, 0.0) == text
    assert explain.add_typos(text, 1.0, seed=3) == explain.add_typos(text, 1.0, seed=3)
    assert explain.add_typos(text, 1.0) != text
    with pytest.raises(ValueError, match="probability"):
        explain.add_typos(text, 1.5)


def test_typo_probe_starts_with_no_flips(predict):
    table = explain.typo_probe(predict, ["a wonderful film", "terrible acting"], [1, 0],
                               rates=(0.0, 0.5))
    assert table.loc[0, "flip_rate"] == 0.0 and list(table["typo_rate"]) == [0.0, 0.5]


def test_counterfactual_probe_shows_the_text_that_moved_most(predict):
    texts = ["He loved the movie.", "He hated it, he said."]
    row = explain.counterfactual_probe(predict, texts).set_index("swap").loc["pronouns"]
    assert row["worst_before"] in texts
    assert row["worst_after"] == explain.swap_words(row["worst_before"], explain.SWAPS["pronouns"])
    moves = [abs(predict([explain.swap_words(t, explain.SWAPS["pronouns"])])[0, 1] - predict([t])[0, 1])
             for t in texts]
    assert np.isclose(row["max_abs_change"], max(moves))


def test_neutral_swaps_are_near_synonyms_that_keep_the_sentence_grammatical():
    neutral = explain.SWAPS["neutral"]
    assert "the" not in neutral and "this" not in neutral.values()
    assert explain.swap_words("By the end the viewer watched the movie.", neutral) == \
        "By the end the viewer saw the film."


def test_attributions_show_words_and_scores_without_a_browser():
    view = explain.Attributions(["not", "bad"], np.array([0.25, -0.5]), "predicted positive")
    assert repr(view) == "predicted positive\nnot(+0.250) bad(-0.500)"
    assert "<span" in view._repr_html_()
    ax = explain.plot_attributions(view.words, view.scores, "t")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["not", "bad"]


def test_explorer_shows_a_sentence_not_a_widget_placeholder_when_static(tiny):
    box = explain.explorer(*tiny, text="fine", n_steps=4)
    plain = box._repr_mimebundle_()["text/plain"]
    assert "VBox(children" not in plain and "fine" in plain


def test_max_length_above_the_models_positions_names_the_limit(tiny):
    model, tokenizer = tiny
    limit = model.config.max_position_embeddings
    with pytest.raises(ValueError, match=f"max_length={limit} or less"):
        explain.predict_one(model, tokenizer, "fine", max_length=limit + 1)
