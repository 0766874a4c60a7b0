"""Tokenizers side by side: tokens per character, unknown tokens, exact round trips.

Three families meet in the book: the byte-level BPE of notebook 05 (trained on IMDb, so it
has never seen a Chinese character and spells each one as 3 byte tokens), MiniLM's WordPiece
(lower-cases, strips accents, maps anything outside its 30,522 pieces to [UNK]) and
SmolLM2's byte-level BPE (49,152 tokens, trained mostly on English). An API bills per token
and a model's cost per request grows with tokens, so "tokens per character" on the same
meaning, in two languages, is what serving Chinese text costs relative to English.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

# The same eight statements in English and in Chinese (written for the book).
PARALLEL = [
    ("Large models are expensive to train and to serve.", "大模型的训练和部署成本都很高。"),
    ("This movie was far too long, but the acting was wonderful.",
     "这部电影太长了，但是表演非常精彩。"),
    ("Every token the model reads costs time and money.", "模型读取的每一个词元都要花费时间和金钱。"),
    ("A startup needs data, compute and a clear business model.",
     "创业公司需要数据、算力和清晰的盈利模式。"),
    ("Quantization makes the model smaller and faster.", "量化让模型变得更小、更快。"),
    ("I would not recommend this film to my friends.", "我不会向朋友推荐这部电影。"),
    ("The service refuses requests that are too long.", "服务会拒绝过长的请求。"),
    ("Perplexity measures how surprised a language model is.", "困惑度衡量语言模型有多么意外。"),
]


@dataclass(frozen=True)
class Codec:
    """One tokenizer behind one interface: text -> ids -> text, and the pieces it sees."""

    name: str
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    pieces: Callable[[str], list[str]]
    unk_id: int | None  # None: byte-level, every string is representable
    vocab_size: int


def codec(tokenizer, name: str) -> Codec:
    """A `Codec` for a `tokenizers.Tokenizer` (bpe.train_bpe) or a `transformers` tokenizer.
    No special tokens are added ([CLS], <|im_start|>): we count the text's own tokens."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        return Codec(name, lambda t: tokenizer.encode(t).ids, tokenizer.decode,
                     lambda t: tokenizer.encode(t).tokens, tokenizer.token_to_id("[UNK]"),
                     tokenizer.get_vocab_size())
    if not hasattr(tokenizer, "convert_ids_to_tokens"):
        raise TypeError(f"codec takes a tokenizers.Tokenizer or a transformers tokenizer, not "
                        f"{type(tokenizer).__name__}.")

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    return Codec(name, encode, lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
                 lambda t: tokenizer.convert_ids_to_tokens(encode(t)), tokenizer.unk_token_id,
                 len(tokenizer))


def tokenizer_stats(c: Codec, texts: Sequence[str]) -> dict:
    """Tokens per character, bytes per token, unknown-token rate, and the share of texts that
    decode back to exactly the same string."""
    if not texts:
        raise ValueError("Give at least one text.")
    ids = [c.encode(t) for t in texts]
    n_tok = sum(map(len, ids))
    n_chars = sum(map(len, texts))
    n_unk = sum(i == c.unk_id for seq in ids for i in seq) if c.unk_id is not None else 0
    exact = sum(c.decode(seq) == t for seq, t in zip(ids, texts))
    return {"tokenizer": c.name, "vocab_size": c.vocab_size, "texts": len(texts),
            "characters": n_chars, "tokens": n_tok, "tokens_per_char": n_tok / n_chars,
            "bytes_per_token": sum(len(t.encode("utf-8")) for t in texts) / max(n_tok, 1),
            "unk_rate": n_unk / max(n_tok, 1), "exact_round_trip": exact / len(texts)}


def compare(codecs: Sequence[Codec], texts_by_language: dict[str, Sequence[str]]) -> pd.DataFrame:
    """`tokenizer_stats` for every tokenizer on every language, one row each."""
    rows = [{"language": lang, **tokenizer_stats(c, texts)}
            for c in codecs for lang, texts in texts_by_language.items()]
    return pd.DataFrame(rows)


def cost_ratio(c: Codec, pairs: Sequence[tuple[str, str]] = PARALLEL) -> float:
    """Tokens for the Chinese side / tokens for the English side of the same statements: how
    many times more a per-token price (or a per-token compute cost) charges for Chinese."""
    english = sum(len(c.encode(en)) for en, _ in pairs)
    chinese = sum(len(c.encode(zh)) for _, zh in pairs)
    return chinese / english


def side_by_side(codecs: Sequence[Codec], text: str, width: int = 12) -> pd.DataFrame:
    """The first `width` pieces each tokenizer cuts `text` into (byte-level pieces shown as
    the tokenizer stores them: 'Ġ' is a space, 'æľ' a fragment of a UTF-8 character)."""
    rows = {}
    for c in codecs:
        pieces = c.pieces(text)
        rows[f"{c.name} ({len(pieces)})"] = pieces[:width] + [""] * (width - len(pieces[:width]))
    return pd.DataFrame(rows).T
