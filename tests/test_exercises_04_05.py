"""Self-checks of notebooks 04-05: a right answer passes, typical mistakes are named."""

import torch

from bigmodel_lab import exercises
from bigmodel_lab.transformer import count_parameters


def pre_ln(block, x):
    x = x + block.attn(block.ln_1(x), causal=True)[0]
    return x + block.mlp(block.ln_2(x))


def post_ln(block, x):
    x = block.ln_1(x + block.attn(x, causal=True)[0])
    return block.ln_2(x + block.mlp(x))


def top_k(logits, k):
    kth = logits.topk(k).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def cached_greedy(model, ids, n):
    cache = model.new_cache()
    step = ids
    for _ in range(n):
        nxt = model(step, cache=cache).logits[:, -1].argmax(-1, keepdim=True)
        ids, step = torch.cat([ids, nxt], 1), nxt
    return ids


def test_right_answers_pass():
    assert exercises.check_pre_ln_block(pre_ln, quiet=True)
    assert exercises.check_encoder_param_formula(lambda c: count_parameters(c, "encoder"), quiet=True)
    assert exercises.check_mean_pooling(
        lambda h, m: (h * m[..., None]).sum(1) / m.sum(1, keepdim=True), quiet=True)
    assert exercises.check_top_k_filter(top_k, quiet=True)
    assert exercises.check_cached_greedy(cached_greedy, quiet=True)


def test_typical_mistakes_are_named():
    assert "post-LN" in exercises.check_pre_ln_block(post_ln, quiet=True).message
    no_norms = exercises.check_encoder_param_formula(
        lambda c: count_parameters(c, "encoder") - 2 * c.hidden_size * (1 + 2 * c.num_layers), quiet=True)
    assert "LayerNorm" in no_norms.message
    assert "padding" in exercises.check_mean_pooling(lambda h, m: h.mean(1), quiet=True).message
    assert "worst" in exercises.check_top_k_filter(
        lambda x, k: x.masked_fill(x >= x.topk(k).values[:, -1:], float("-inf")), quiet=True).message
    slow = exercises.check_cached_greedy(
        lambda m, ids, n: __import__("bigmodel_lab.generate").generate.generate(m, ids, n, use_cache=False),
        quiet=True)
    assert "feed" in slow.message and not slow
