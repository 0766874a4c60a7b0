import pytest

from bigmodel_lab.bpe import EOS, compression, encode_corpus, train_bpe

TEXTS = ["the movie was great, the actors were great", "the plot was thin"] * 20


def test_bpe_round_trips_any_text_including_unseen_characters():
    tok = train_bpe(TEXTS, vocab_size=300)
    for text in ["the movie", "naïve café ☕ 123"]:
        assert tok.decode(tok.encode(text).ids) == text


def test_corpus_ends_every_document_with_eos():
    tok = train_bpe(TEXTS, vocab_size=300)
    ids = encode_corpus(tok, ["a b", "c"])
    assert (ids == tok.token_to_id(EOS)).sum() == 2 and ids[-1] == tok.token_to_id(EOS)


def test_bigger_vocabulary_gives_shorter_sequences():
    small, big = (compression(train_bpe(TEXTS, v), TEXTS) for v in (270, 330))
    assert big["tokens_per_doc"] < small["tokens_per_doc"]


def test_tiny_vocabulary_is_refused_with_the_minimum():
    with pytest.raises(ValueError, match="at least 258"):
        train_bpe(TEXTS, vocab_size=100)
