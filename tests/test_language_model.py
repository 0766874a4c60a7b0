import math

import pytest
import torch

from bigmodel_lab.language_model import TokenBlocks, bigram_perplexity, unigram_perplexity


def test_unigram_of_uniform_text_has_perplexity_vocab_size():
    ids = torch.arange(10).repeat(50)
    assert math.isclose(unigram_perplexity(ids, ids, 10), 10.0, rel_tol=1e-9)


def test_bigram_learns_a_deterministic_cycle():
    ids = torch.arange(10).repeat(50)  # 0 1 2 ... 9 0 1 ...: next token is certain
    result = bigram_perplexity(ids, ids, 10, lambdas=(0.99,))
    assert result["perplexity"] < 1.2 < unigram_perplexity(ids, ids, 10)


def test_token_blocks_cut_equal_non_overlapping_blocks():
    blocks = TokenBlocks(torch.arange(25), 8)
    assert len(blocks) == 3 and blocks[1]["input_ids"].tolist() == list(range(8, 16))
    with pytest.raises(ValueError, match="shorter context"):
        TokenBlocks(torch.arange(5), 8)
