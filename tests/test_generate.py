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


# --- the knobs, against transformers' logits processors on the same logits ------------------

from transformers.generation.logits_process import (  # noqa: E402
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from bigmodel_lab.generate import (  # noqa: E402
    apply_repetition_penalty,
    apply_top_k,
    apply_top_p,
    encode_prompts,
    process_logits,
)


def _logits(seed=0, shape=(4, 50)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("p", [0.05, 0.3, 0.7, 0.9, 0.99])
def test_top_p_matches_transformers(p):
    logits, ids = _logits(), torch.zeros(4, 1, dtype=torch.long)
    assert torch.equal(apply_top_p(logits, p), TopPLogitsWarper(p)(ids, logits.clone()))


@pytest.mark.parametrize("k", [1, 5, 49, 80])
def test_top_k_matches_transformers(k):
    logits, ids = _logits(1), torch.zeros(4, 1, dtype=torch.long)
    assert torch.equal(apply_top_k(logits, k), TopKLogitsWarper(k)(ids, logits.clone()))


@pytest.mark.parametrize("penalty", [0.8, 1.3, 2.0])
def test_repetition_penalty_matches_transformers(penalty):
    logits, ids = _logits(2), torch.randint(0, 50, (4, 7))
    ref = RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone())
    assert torch.allclose(apply_repetition_penalty(logits, ids, penalty), ref)


def test_all_knobs_in_transformers_order():
    logits, ids = _logits(3), torch.randint(0, 50, (4, 5))
    ref = RepetitionPenaltyLogitsProcessor(1.2)(ids, logits.clone())
    for warper in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(20), TopPLogitsWarper(0.8)):
        ref = warper(ids, ref)
    got = process_logits(logits, ids, temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.2)
    assert torch.allclose(got, ref)


def test_top_p_keeps_the_most_likely_token_and_bad_knobs_say_the_range():
    logits = torch.tensor([[10.0, 0.0, -1.0]])
    assert torch.isfinite(apply_top_p(logits, 1e-6)).sum() == 1
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        apply_top_p(logits, 1.5)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        apply_top_k(logits, 0)
    with pytest.raises(ValueError, match="repetition_penalty must be > 0"):
        apply_repetition_penalty(logits, torch.tensor([[0]]), 0.0)


def test_stop_tokens_end_a_row_and_pad_it():
    torch.manual_seed(0)
    model = GPT(TransformerConfig(**TINY))
    prompt = torch.randint(0, 40, (1, 4))
    free = generate(model, prompt, 10)
    stop = int(free[0, 6])  # the third generated token
    out = generate(model, prompt, 10, stop_tokens=[stop])
    first = (out[0, 4:] == stop).nonzero()[0, 0].item()
    assert out.shape[1] == 4 + first + 1 and torch.equal(out, free[:, : 4 + first + 1])


def test_gpt_refuses_left_padding_and_says_what_to_do():
    model = GPT(TransformerConfig(**TINY))
    mask = torch.tensor([[0, 1, 1]])
    with pytest.raises(ValueError, match="equal length"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 2, attention_mask=mask)


def test_encode_prompts_left_pads_with_the_chat_template():
    from transformers import AutoTokenizer

    from bigmodel_lab.models import converted_llm_dir

    tokenizer = AutoTokenizer.from_pretrained(converted_llm_dir())
    enc = encode_prompts(tokenizer, ["Hi", "What is the capital of France?"], system="Be brief.")
    assert enc["attention_mask"][0, 0] == 0 and enc["attention_mask"][:, -1].all()
    text = tokenizer.decode(enc["input_ids"][1])
    assert "<|im_start|>system\nBe brief." in text and text.endswith("<|im_start|>assistant\n")
