"""Tokenizer comparison: round trips, unknown tokens and the cost of Chinese text."""

import pytest
from transformers import AutoTokenizer

from bigmodel_lab import bpe, tokens
from bigmodel_lab.models import converted_llm_dir, packaged_model_path

ZH = [zh for _, zh in tokens.PARALLEL]
EN = [en for en, _ in tokens.PARALLEL]


@pytest.fixture(scope="module")
def codecs():
    byte_bpe = bpe.train_bpe(EN * 10, vocab_size=300)
    return [tokens.codec(byte_bpe, "BPE"),
            tokens.codec(AutoTokenizer.from_pretrained(packaged_model_path()), "WordPiece"),
            tokens.codec(AutoTokenizer.from_pretrained(converted_llm_dir()), "SmolLM2")]


def test_byte_level_tokenizers_round_trip_chinese_exactly(codecs):
    table = tokens.compare(codecs, {"en": EN, "zh": ZH}).set_index(["tokenizer", "language"])
    for name in ("BPE", "SmolLM2"):
        assert table.loc[(name, "zh"), "exact_round_trip"] == 1.0
        assert table.loc[(name, "zh"), "unk_rate"] == 0.0
    assert table.loc[("WordPiece", "zh"), "unk_rate"] > 0
    assert table.loc[("WordPiece", "en"), "exact_round_trip"] < 1  # lower-cased, spaced


def test_an_english_trained_bpe_spells_chinese_byte_by_byte(codecs):
    stats = tokens.tokenizer_stats(codecs[0], ZH)
    assert stats["bytes_per_token"] == pytest.approx(1.0)
    assert tokens.cost_ratio(codecs[0]) > 1


def test_side_by_side_shows_each_tokenizers_pieces(codecs):
    table = tokens.side_by_side(codecs, "大模型 costs", width=4)
    assert table.shape == (3, 4) and table.index[1].startswith("WordPiece")


def test_codec_refuses_something_that_is_not_a_tokenizer():
    with pytest.raises(TypeError, match="tokenizers.Tokenizer or a transformers tokenizer"):
        tokens.codec("gpt2", "name")
    with pytest.raises(ValueError, match="at least one text"):
        tokens.tokenizer_stats(tokens.Codec("x", list, str, list, None, 1), [])
