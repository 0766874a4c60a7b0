"""Bits per byte: the conversion, the sliding window, the error bars, and the n-grams."""

import math

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bigmodel_lab import bits_per_byte as bpb
from bigmodel_lab import bpe
from bigmodel_lab import language_model as lm
from bigmodel_lab import transformer as tf

TEXTS = ["a great film, truly great", "dull and far too long", "I loved the music."] * 3


@pytest.fixture(scope="module")
def tokenizer():
    return bpe.train_bpe(TEXTS * 5, vocab_size=300)


def test_bits_per_byte_is_total_bits_over_bytes():
    assert bpb.bits_per_byte(8 * math.log(2), 8) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="non-empty text"):
        bpb.bits_per_byte(1.0, 0)


def test_window_scoring_equals_one_pass_when_the_context_fits(tokenizer):
    torch.manual_seed(0)
    gpt = tf.GPT(tf.TransformerConfig(vocab_size=300, context_length=64, num_layers=1,
                                      num_heads=2, hidden_size=16)).eval()
    ids = [tokenizer.token_to_id(bpe.EOS)] + tokenizer.encode(TEXTS[0]).ids
    x = torch.tensor([ids])
    with torch.no_grad():
        want = gpt(x, labels=x).loss.item() * (len(ids) - 1)
    got = bpb.window_nats(lambda t: gpt(t).logits, ids, context=64)
    assert got == pytest.approx(want, rel=1e-5)


def test_window_scoring_scores_every_token_once_whatever_the_context():
    logits = torch.randn(50)  # a context-free "model": the same distribution everywhere
    ids = list(np.random.default_rng(0).integers(0, 50, 40))
    totals = [bpb.window_nats(lambda t: logits.expand(*t.shape, 50), ids, c) for c in (4, 9, 64)]
    assert totals == pytest.approx([totals[0]] * 3)


def test_standard_error_is_the_spread_of_equal_length_texts():
    nats = np.array([10.0, 12.0, 9.0, 14.0])
    score = bpb.Score("m", nats, np.full(4, 20), np.full(4, 5))
    per_text = nats / (20 * math.log(2))
    assert score.bpb == pytest.approx(per_text.mean())
    assert score.se == pytest.approx(per_text.std(ddof=1) / 2)


def test_paired_difference_of_a_model_with_itself_is_zero():
    score = bpb.Score("m", np.array([10.0, 12.0, 9.0]), np.array([20, 25, 18]), np.ones(3))
    assert bpb.paired_difference(score, score) == (0.0, 0.0)
    other = bpb.Score("o", np.ones(3), np.array([1, 2, 3]), np.ones(3))
    with pytest.raises(ValueError, match="same texts"):
        bpb.paired_difference(score, other)


def test_bigram_score_matches_language_model_bigram_perplexity(tokenizer):
    train = bpe.encode_corpus(tokenizer, TEXTS)
    text = "a great film and far too long"
    _, bigram = bpb.score_ngrams(train, tokenizer, [text], 300)
    ids = torch.tensor([tokenizer.token_to_id(bpe.EOS)] + tokenizer.encode(text).ids)
    want = lm.bigram_perplexity(train, ids, 300)
    assert bigram.token_perplexity == pytest.approx(want["perplexity"])
    assert f"lambda={want['lambda']}" in bigram.name


def test_causal_lm_score_is_the_models_own_loss():
    from transformers import AutoTokenizer

    from bigmodel_lab.models import converted_llm_dir

    tok = AutoTokenizer.from_pretrained(converted_llm_dir())
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16,
                                         num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1, intermediate_size=32)).eval()
    score = bpb.score_causal_lm(model, tok, ["服务中文文本", "a film"], "tiny")
    ids = torch.tensor([[tok.convert_tokens_to_ids("<|endoftext|>")] + tok("a film")["input_ids"]])
    with torch.no_grad():
        want = model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
    assert score.nats[1] == pytest.approx(want, rel=1e-5)
    assert list(score.n_bytes) == [18, 6]


def test_a_compressor_needs_fewer_than_8_bits_per_byte_on_text():
    assert bpb.compressor_bits_per_byte(TEXTS * 20) < 8


def test_check_bits_per_byte_passes_the_formula_and_names_the_nats_mistake():
    assert bpb.check_bits_per_byte(lambda L, n, b: L * n / (b * math.log(2)), quiet=True)
    result = bpb.check_bits_per_byte(lambda L, n, b: L * n / b, quiet=True)
    assert not result and "divide by ln 2" in result.message
