import pytest
import torch

from bigmodel_lab.generate import generate, next_token
from bigmodel_lab.transformer import GPT, TransformerConfig

TINY = dict(vocab_size=40, context_length=32, num_layers=2, num_heads=2, hidden_size=16,
            dropout=0.0, attention_dropout=0.0)


@pytest.mark.parametrize("backend", ["lab", "fused"])
def test_kv_cache_generates_the_same_tokens_as_recomputing(backend):
    torch.manual_seed(0)
    model = GPT(TransformerConfig(**TINY, attention_backend=backend))
    prompt = torch.randint(0, 40, (2, 5))
    with_cache = generate(model, prompt, 20, use_cache=True)
    without = generate(model, prompt, 20, use_cache=False)
    assert torch.equal(with_cache, without)
    sampled = [generate(model, prompt, 20, temperature=1.0, top_k=10, use_cache=c,
                        generator=torch.Generator().manual_seed(1)) for c in (True, False)]
    assert torch.equal(*sampled)


def test_greedy_and_top1_pick_the_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    assert next_token(logits, 0.0).squeeze(1).tolist() == [1, 0]
    assert next_token(logits, 1.0, top_k=1).squeeze(1).tolist() == [1, 0]


def test_top_k_never_samples_outside_the_k_best():
    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0]]).repeat(500, 1)
    picks = next_token(logits, 2.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(picks.flatten().tolist()) <= {0, 1}


def test_bad_temperature_and_too_long_generation_say_what_to_fix():
    with pytest.raises(ValueError, match="temperature"):
        next_token(torch.zeros(1, 3), -1.0)
    model = GPT(TransformerConfig(**TINY))
    with pytest.raises(ValueError, match="context_length"):
        generate(model, torch.zeros(1, 30, dtype=torch.long), 5)
