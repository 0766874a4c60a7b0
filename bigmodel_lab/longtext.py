"""Long documents under a fixed token budget: head, head+tail truncation, chunk-and-average.

An encoder reads at most `max_length` tokens (512 for BERT). A review longer than that must be
cut or split. With a budget of L tokens of text (max_length minus [CLS] and [SEP]):

- head:        the first L tokens.
- head+tail:   the first h tokens and the last L - h; Sun et al. 2019 ("How to Fine-Tune BERT
               for Text Classification?") found head 128 + tail 382 best on IMDb, because
               reviews tend to state their verdict at the start and at the end.
- chunk:       windows of L tokens (overlapping by `stride`), each classified, probabilities
               averaged: every token is read, at the cost of one forward pass per window.
"""

from __future__ import annotations

STRATEGIES = ("head", "head+tail", "chunk")


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}. Choose one of: {', '.join(STRATEGIES)}.")
    return strategy


def head(ids: list[int], budget: int) -> list[int]:
    """The first `budget` token ids."""
    return list(ids[:budget])


def head_tail(ids: list[int], budget: int, head_share: float = 0.25) -> list[int]:
    """The first ~head_share*budget ids and the last ids, `budget` in all (unchanged if short)."""
    if len(ids) <= budget:
        return list(ids)
    n_head = int(round(budget * head_share))
    n_tail = budget - n_head
    return list(ids[:n_head]) + (list(ids[-n_tail:]) if n_tail else [])


def chunks(ids: list[int], budget: int, stride: int = 0) -> list[list[int]]:
    """Windows of `budget` ids, consecutive windows overlapping by `stride` ids.

    An empty document gives one empty window (so it is still classified)."""
    if not 0 <= stride < budget:
        raise ValueError(f"stride must be in [0, budget); got stride={stride}, budget={budget}.")
    if len(ids) <= budget:
        return [list(ids)]
    step = budget - stride
    out = []
    for start in range(0, len(ids), step):
        out.append(list(ids[start : start + budget]))
        if start + budget >= len(ids):
            break
    return out


def with_special_tokens(ids: list[int], tokenizer) -> list[int]:
    """[CLS] ids [SEP] for BERT-style tokenizers."""
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None:
        raise ValueError(
            f"{type(tokenizer).__name__} has no [CLS]/[SEP] tokens; these long-text strategies "
            "expect a BERT-style encoder tokenizer."
        )
    return [cls, *ids, sep]


def windows(ids: list[int], tokenizer, max_length: int, strategy: str, stride: int = 0,
            head_share: float = 0.25) -> list[list[int]]:
    """Model inputs (with special tokens) for one document under one strategy."""
    budget = max_length - 2  # room for [CLS] and [SEP]
    check_strategy(strategy)
    if strategy == "head":
        parts = [head(ids, budget)]
    elif strategy == "head+tail":
        parts = [head_tail(ids, budget, head_share)]
    else:
        parts = chunks(ids, budget, stride)
    return [with_special_tokens(p, tokenizer) for p in parts]
