"""Prompting: chat-template prompts, KV-cached label scores, calibration, the SFT masking."""

import numpy as np
import pytest
import torch

from bigmodel_lab import prompting as P

SHOTS = [("a gorgeous , moving film .", 1), ("dull and far too long .", 0)]
TEXTS = ["one of the year's best .", "a mess from start to finish .", "it is a film ."]


@pytest.fixture(scope="module")
def llm():
    """The packaged SmolLM2-135M-Instruct, loaded once for this module."""
    from bigmodel_lab.models import load_causal_lm

    model, tokenizer, _ = load_causal_lm()
    return model, tokenizer


def full_prompt_logprobs(model, tokenizer, template, text, shots):
    ids = tokenizer(P.prompt_text(tokenizer, template, text, shots), return_tensors="pt",
                    add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1]
    return torch.log_softmax(logits, -1)[P.label_token_ids(tokenizer)].numpy()


def test_prefix_plus_part_is_the_whole_chat_prompt(llm):
    _, tokenizer = llm
    for template in P.TEMPLATES:
        prefix, part = P.split_prompt(tokenizer, template, TEXTS[0], SHOTS)
        assert prefix + part == P.prompt_text(tokenizer, template, TEXTS[0], SHOTS)
        assert TEXTS[0] in part and TEXTS[0] not in prefix
        assert part.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("shots", [(), SHOTS])
def test_kv_cached_batched_scores_equal_one_full_prompt_at_a_time(llm, shots):
    model, tokenizer = llm
    template = P.TEMPLATES[1]
    batched = P.label_logprobs(model, tokenizer, template, TEXTS, shots, batch_size=2)
    one_by_one = np.stack([full_prompt_logprobs(model, tokenizer, template, t, shots)
                           for t in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)


def test_scoring_hands_the_freed_cache_copies_back(llm, monkeypatch):
    """Each batch copies the prefix cache; the scorer trims the heap once it is done."""
    model, tokenizer = llm
    calls = []
    monkeypatch.setattr(P, "trim_freed_memory", lambda: calls.append(1) or True)
    P.label_logprobs(model, tokenizer, P.TEMPLATES[1], TEXTS, SHOTS, batch_size=2)
    assert calls == [1]


def test_sft_example_masks_the_prompt_and_keeps_the_answer(llm):
    _, tokenizer = llm
    ids, labels = P.sft_example(tokenizer, P.TEMPLATES[0], TEXTS[0], 1)
    answer = tokenizer.encode("positive" + tokenizer.eos_token, add_special_tokens=False)
    assert len(ids) == len(labels)
    assert labels[-len(answer):] == answer == ids[-len(answer):]
    assert set(labels[:-len(answer)]) == {-100}
    assert tokenizer.decode(ids[:-len(answer)]) == P.prompt_text(tokenizer, P.TEMPLATES[0],
                                                                 TEXTS[0])
    with pytest.raises(ValueError, match="0 \\(negative\\) or 1"):
        P.sft_example(tokenizer, P.TEMPLATES[0], TEXTS[0], 2)


def test_label_words_must_start_with_different_tokens(llm):
    _, tokenizer = llm
    assert len(set(P.label_token_ids(tokenizer))) == 2
    with pytest.raises(ValueError, match="first tokens differ"):
        P.label_token_ids(tokenizer, ("positive", "positive"))


def test_calibration_divides_out_the_content_free_bias():
    probs = np.array([[0.2, 0.8], [0.5, 0.5]])
    bias = np.array([0.25, 0.75])
    q = P.calibrate(probs, bias)
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    raw = np.array([0.2 / 0.25, 0.8 / 0.75])
    np.testing.assert_allclose(q[0], raw / raw.sum(), rtol=1e-12)
    # The content-free input itself becomes exactly uncertain.
    np.testing.assert_allclose(P.calibrate(bias[None], bias), [[0.5, 0.5]])
    with pytest.raises(ValueError, match="content_free_bias"):
        P.calibrate(probs, np.array([0.0, 1.0]))


def test_probabilities_renormalise_over_the_label_words():
    lp = np.log(np.array([[0.01, 0.03], [0.2, 0.2]]))
    np.testing.assert_allclose(P.probabilities(lp), [[0.25, 0.75], [0.5, 0.5]])


def test_shots_are_balanced_seeded_and_reordered():
    import datasets

    train = datasets.Dataset.from_dict({"text": [f"s{i}" for i in range(20)],
                                        "label": [i % 2 for i in range(20)]})
    shots = P.draw_shots(train, 8, seed=0)
    assert sorted(y for _, y in shots) == [0] * 4 + [1] * 4
    assert shots == P.draw_shots(train, 8, seed=0)
    moved = P.reorder(shots, 1)
    assert sorted(moved) == sorted(shots) and moved != shots and P.reorder(shots, 0) == shots
    with pytest.raises(ValueError, match="even number"):
        P.draw_shots(train, 3)


def test_every_order_of_the_grid_is_a_distinct_order():
    two = [("a", 0), ("b", 1)]
    assert P.reorder(two, 1) == [("b", 1), ("a", 0)]
    with pytest.raises(ValueError, match="order 0 to 1"):
        P.reorder(two, 2)
    eight = [(str(i), i % 2) for i in range(8)]
    assert len({tuple(P.reorder(eight, o)) for o in range(5)}) == 5
    settings = P.grid_settings((0, 2, 8), n_orders=3)
    assert [s.order for s in settings if s.k == 2] == [0, 1] * 3
    assert sum(s.k == 8 for s in settings) == 9 and sum(s.k == 0 for s in settings) == 3


def test_template_without_a_text_slot_says_where_the_sentence_goes():
    with pytest.raises(ValueError, match="\\{text\\}"):
        P.Template("bad", "system", "no slot here")
