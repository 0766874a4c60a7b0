"""The from-scratch Llama decoder against transformers' LlamaForCausalLM."""

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from bigmodel_lab.convert import load_llama_weights
from bigmodel_lab.decoder import (
    Decoder,
    RMSNorm,
    apply_rotary,
    causal_padding_mask,
    kv_cache_bytes_per_token,
    rope_tables,
)
from bigmodel_lab.generate import encode_prompts, generate
from bigmodel_lab.positional import rope_cos_sin
from bigmodel_lab.transformer import TransformerConfig, decoder_from_pretrained


def tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    fields = dict(vocab_size=97, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rope_theta=500.0, tie_word_embeddings=True, rms_norm_eps=1e-5)
    return LlamaForCausalLM(LlamaConfig(**{**fields, **overrides})).eval()


@pytest.mark.parametrize("kv_heads", [4, 2, 1])  # multi-head, grouped-query, multi-query
def test_tiny_decoder_matches_llama_logits(kv_heads):
    hf = tiny_llama(num_key_value_heads=kv_heads)
    ours = decoder_from_pretrained(hf)
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (ours(ids).logits - hf(ids).logits).abs().max() < 1e-5


def test_left_padding_matches_llama_on_the_real_tokens():
    hf, ids = tiny_llama(), torch.randint(0, 97, (2, 10))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    ours = decoder_from_pretrained(hf)
    with torch.no_grad():
        a, b = hf(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask).logits
    assert torch.isfinite(b).all()
    assert (a[0, 4:] - b[0, 4:]).abs().max() < 1e-5 and (a[1] - b[1]).abs().max() < 1e-5


def test_lab_and_fused_attention_agree_with_and_without_the_cache():
    hf = tiny_llama()
    fused = decoder_from_pretrained(hf)
    lab = load_llama_weights(Decoder(replace(fused.config, attention_backend="lab")), hf).eval()
    ids = torch.randint(0, 97, (1, 9))
    with torch.no_grad():
        assert (lab(ids).logits - fused(ids).logits).abs().max() < 1e-5
        cache = lab.new_cache(1, 9)
        steps = [lab(ids[:, :5], cache=cache).logits] + [lab(ids[:, t:t + 1], cache=cache).logits
                                                          for t in range(5, 9)]
        assert (torch.cat(steps, 1) - fused(ids).logits).abs().max() < 1e-5


def test_cache_written_in_chunks_gives_the_full_forward_logits():
    model = decoder_from_pretrained(tiny_llama())
    ids, mask = torch.randint(0, 97, (2, 11)), torch.ones(2, 11, dtype=torch.long)
    mask[1, :3] = 0
    cache = model.new_cache(2, 16)
    with torch.no_grad():
        parts = [model(ids[:, :6], attention_mask=mask[:, :6], cache=cache).logits,
                 model(ids[:, 6:], attention_mask=mask, cache=cache).logits]
        full = model(ids, attention_mask=mask).logits
    assert (torch.cat(parts, 1) - full).abs().max() < 1e-5
    assert cache.nbytes() == 11 * 2 * kv_cache_bytes_per_token(model.config)


def test_batched_left_padded_greedy_equals_each_prompt_alone():
    model = decoder_from_pretrained(tiny_llama())
    prompts = [torch.randint(0, 97, (1, n), generator=torch.Generator().manual_seed(n)) for n in (3, 7)]
    ids = torch.zeros(2, 7, dtype=torch.long)
    mask = torch.zeros(2, 7, dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, 7 - p.shape[1]:], mask[row, 7 - p.shape[1]:] = p, 1
    batched = generate(model, ids, 12, attention_mask=mask)
    for row, p in enumerate(prompts):
        assert torch.equal(batched[row, 7:], generate(model, p, 12)[0, p.shape[1]:])


def test_greedy_generation_matches_llama_generate_on_tiny_model():
    hf = tiny_llama()
    ours = decoder_from_pretrained(hf)
    ids = torch.randint(3, 97, (1, 5))
    theirs = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20,
                         do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(generate(ours, ids, 20), theirs)
    assert torch.equal(generate(ours, ids, 20, use_cache=False), theirs)


def test_rmsnorm_matches_torch_rmsnorm():
    x = torch.randn(3, 5, 16)
    ours, ref = RMSNorm(16, eps=1e-5), torch.nn.RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ref.weight.copy_(ours.weight)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(shift=st.integers(0, 40))
def test_rope_scores_depend_only_on_relative_position(shift):
    cos, sin = rope_tables(64, 8, 500.0)
    q, k = torch.randn(8, generator=torch.Generator().manual_seed(0)), torch.randn(8)

    def score(m, n):
        return (apply_rotary(q, cos[m], sin[m]) * apply_rotary(k, cos[n], sin[n])).sum()

    assert torch.allclose(score(5 + shift, 2 + shift), score(5, 2), atol=1e-4)


def test_rope_tables_agree_with_the_book_positional_module():
    cos, sin = rope_tables(128, 64, 100000.0)
    ref_cos, ref_sin = rope_cos_sin(128, 64, 100000.0)
    assert (cos - ref_cos).abs().max() < 1e-4 and (sin - ref_sin).abs().max() < 1e-4


def test_padding_rows_attend_to_themselves_so_no_row_is_empty():
    mask = causal_padding_mask(torch.tensor([[0, 0, 1, 1]]), 0, 4, torch.device("cpu"))
    assert mask.any(-1).all()
    assert not mask[0, 0, 3, :2].any()  # real tokens never see padding


def test_kv_cache_bytes_scale_with_kv_heads():
    gqa = TransformerConfig(num_layers=30, hidden_size=576, num_heads=9, num_kv_heads=3)
    mha = replace(gqa, num_kv_heads=None)
    assert kv_cache_bytes_per_token(gqa) == 2 * 30 * 3 * 64 * 4
    assert kv_cache_bytes_per_token(mha) == 3 * kv_cache_bytes_per_token(gqa)


def test_gpt2_layout_builds_from_the_same_switches():
    config = TransformerConfig(vocab_size=50, context_length=16, num_layers=2, num_heads=2,
                               hidden_size=16, activation="gelu_tanh", dropout=0.0,
                               attention_dropout=0.0, attention_backend="fused")
    model = Decoder(config)
    assert isinstance(model.norm, torch.nn.LayerNorm) and model.position is not None
    assert generate(model, torch.zeros(1, 3, dtype=torch.long), 5).shape == (1, 8)


def test_mismatched_checkpoints_name_the_key_and_the_fix():
    hf = tiny_llama()
    wrong = Decoder(TransformerConfig.from_llama(tiny_llama(hidden_size=48).config))
    with pytest.raises(ValueError, match=r"model\.embed_tokens\.weight.*from_llama"):
        load_llama_weights(wrong, hf)
    deeper = Decoder(TransformerConfig.from_llama(tiny_llama(num_hidden_layers=3).config))
    with pytest.raises(KeyError, match=r"model\.layers\.2\..*from_llama"):
        load_llama_weights(deeper, hf)
    state = {**hf.state_dict(), "model.extra.weight": torch.zeros(1)}
    with pytest.raises(KeyError, match="model.extra.weight"):
        decoder_from_pretrained(state, config=hf.config)
    with pytest.raises(ValueError, match="config="):
        decoder_from_pretrained(hf.state_dict())


def test_folder_source_loads_like_the_model(tmp_path):
    hf = tiny_llama()
    hf.save_pretrained(tmp_path)
    ids = torch.randint(0, 97, (1, 6))
    with torch.no_grad():
        assert torch.equal(decoder_from_pretrained(tmp_path)(ids).logits,
                           decoder_from_pretrained(hf)(ids).logits)
    with pytest.raises(FileNotFoundError, match="config.json"):
        decoder_from_pretrained(tmp_path / "missing")


def test_scaled_rope_checkpoints_are_refused_with_the_reason():
    fields = dict(tiny_llama().config.to_dict())
    fields["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500.0}
    with pytest.raises(ValueError, match="default RoPE"):
        TransformerConfig.from_llama(fields)


# --- the real packaged SmolLM2-135M-Instruct (loaded once for the module) --------------------


@pytest.fixture(scope="module")
def smollm2():
    from bigmodel_lab.models import load_causal_lm

    hf, tokenizer, _ = load_causal_lm()
    return hf, decoder_from_pretrained(hf), tokenizer


def test_real_llm_logits_within_1e4_of_transformers(smollm2):
    hf, ours, tokenizer = smollm2
    # Sentences written for this test only, never used to tune anything.
    texts = ["The lighthouse keeper counted ships until the fog rolled in.",
             "Quantum error correction spreads one logical qubit over many physical ones.",
             "我们明天早上九点在图书馆见面。"]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        a = hf(**enc).logits
        b = ours(**enc).logits
    real = enc["attention_mask"].bool()
    assert (a - b).abs()[real].max() < 1e-4


def test_real_llm_greedy_64_tokens_identical_to_generate(smollm2):
    hf, ours, tokenizer = smollm2
    ids = encode_prompts(tokenizer, "Describe, step by step, how bread is baked.")["input_ids"]
    theirs = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=64,
                         do_sample=False)
    mine = generate(ours, ids, 64, stop_tokens=[tokenizer.eos_token_id])
    assert theirs.shape[1] - ids.shape[1] == 64
    assert mine.tolist() == theirs.tolist()


def test_int8_copy_leaves_the_fp32_decoder_intact_and_stays_close():
    from bigmodel_lab.convert import quantize_dynamic_int8

    model = decoder_from_pretrained(tiny_llama(hidden_size=64, intermediate_size=128))
    ids = torch.randint(0, 97, (1, 8))
    with torch.no_grad():
        before = model(ids).logits
        int8 = quantize_dynamic_int8(model)
        assert torch.equal(model(ids).logits, before)
        assert isinstance(model.lm_head, torch.nn.Linear) and model.lm_head.weight is model.embed.weight
        assert (int8(ids).logits - before).abs().max() < 0.1 * before.abs().max()


@pytest.mark.parametrize("tied", [True, False])
def test_read_order_layout_gives_the_same_model_in_the_same_memory(tied):
    from bigmodel_lab.bandwidth import weight_bytes_per_token
    from bigmodel_lab.convert import read_order_layout
    from bigmodel_lab.decoder import ReadOrderLinear

    model = decoder_from_pretrained(tiny_llama(tie_word_embeddings=tied))
    ids = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    with torch.no_grad():
        before = model(ids, attention_mask=mask).logits
        greedy = generate(model, ids[:1], 12)
    n_params, n_bytes = sum(p.numel() for p in model.parameters()), weight_bytes_per_token(model)
    read_order_layout(model)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert isinstance(model.lm_head, ReadOrderLinear)
    assert sum(p.numel() for p in model.parameters()) == n_params  # no second copy, tied or not
    assert weight_bytes_per_token(model) == n_bytes
    if tied:
        assert model.embed.weight.data_ptr() == model.lm_head.weight_t.data_ptr()
    with torch.no_grad():
        after = model(ids, attention_mask=mask).logits
        assert (after - before)[mask.bool()].abs().max() < 1e-5
        assert torch.equal(generate(model, ids[:1], 12), greedy)


def test_real_llm_in_read_order_layout_decodes_the_same_64_tokens(smollm2):
    from bigmodel_lab.convert import read_order_layout

    hf, ours, tokenizer = smollm2
    fast = read_order_layout(decoder_from_pretrained(hf))  # a second decoder: ours stays as it is
    ids = encode_prompts(tokenizer, "Describe, step by step, how bread is baked.")["input_ids"]
    with torch.no_grad():
        assert generate(fast, ids, 64).tolist() == generate(ours, ids, 64).tolist()
