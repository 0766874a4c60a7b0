import pytest
import torch
from torch import nn

from bigmodel_lab.models import packaged_model_path
from bigmodel_lab.transformer import (
    GPT,
    Encoder,
    EncoderForSequenceClassification,
    MultiHeadAttention,
    TransformerConfig,
    count_parameters,
    load_bert_weights,
    num_parameters,
    set_attention_backend,
)

TINY = dict(vocab_size=50, context_length=16, num_layers=2, num_heads=2, hidden_size=8,
            dropout=0.0, attention_dropout=0.0)


def test_multihead_attention_matches_torch_after_copying_weights():
    torch.manual_seed(0)
    cfg = TransformerConfig(hidden_size=16, num_heads=4, attention_dropout=0.0)
    ref = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    ours = MultiHeadAttention(cfg).copy_from_torch(ref).eval()
    x = torch.randn(2, 5, 16)
    key_padding = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    out, w = ours(x, attention_mask=key_padding)
    ref_out, ref_w = ref(x, x, x, key_padding_mask=~key_padding.bool(), average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=0)


def test_copy_from_torch_rejects_other_shapes():
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttention(TransformerConfig(hidden_size=16, num_heads=4)).copy_from_torch(
            nn.MultiheadAttention(16, 2)
        )


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_lab_and_fused_attention_give_the_same_outputs(norm):
    torch.manual_seed(0)
    cfg = TransformerConfig(**TINY, norm_position=norm)
    ids = torch.randint(0, 50, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 6:] = 0
    enc = Encoder(cfg).eval()
    lab = enc(ids, mask).last_hidden_state
    fused = set_attention_backend(enc, "fused")(ids, mask).last_hidden_state
    torch.testing.assert_close(lab, fused, atol=1e-5, rtol=0)
    gpt = GPT(cfg).eval()
    lab = gpt(ids).logits
    fused = set_attention_backend(gpt, "fused")(ids).logits
    torch.testing.assert_close(lab, fused, atol=1e-5, rtol=0)


def test_gpt_is_causal_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    gpt = GPT(TransformerConfig(**TINY)).eval()
    ids = torch.randint(0, 50, (1, 8))
    other = ids.clone()
    other[0, 5:] = (other[0, 5:] + 1) % 50
    torch.testing.assert_close(gpt(ids).logits[:, :5], gpt(other).logits[:, :5])


def test_kv_cache_gives_the_same_logits_as_a_full_forward():
    torch.manual_seed(0)
    gpt = GPT(TransformerConfig(**TINY)).eval()
    ids = torch.randint(0, 50, (2, 9))
    full = gpt(ids).logits
    cache = gpt.new_cache()
    steps = [gpt(ids[:, :4], cache=cache).logits]
    steps += [gpt(ids[:, t : t + 1], cache=cache).logits for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_gpt_ties_input_and_output_embeddings():
    gpt = GPT(TransformerConfig(**TINY))
    assert gpt.lm_head.weight is gpt.embeddings.token.weight


def test_gpt_loss_is_next_token_cross_entropy():
    torch.manual_seed(0)
    gpt = GPT(TransformerConfig(**TINY)).eval()
    ids = torch.randint(0, 50, (2, 6))
    out = gpt(ids, labels=ids)
    expected = nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 50), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)


def test_classifier_returns_loss_and_logits():
    model = EncoderForSequenceClassification(TransformerConfig(**TINY, norm_position="post"), 3)
    out = model(torch.randint(0, 50, (4, 7)), labels=torch.tensor([0, 1, 2, 0]))
    assert out.logits.shape == (4, 3) and out.loss.ndim == 0


def test_too_long_input_says_what_to_do():
    with pytest.raises(ValueError, match="context_length=16"):
        GPT(TransformerConfig(**TINY))(torch.zeros(1, 17, dtype=torch.long))


def test_bad_head_count_says_what_to_fix():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        TransformerConfig(hidden_size=10, num_heads=3)


@pytest.mark.parametrize(
    "config, kind",
    [
        (TransformerConfig.bert_base(), "encoder"),
        (TransformerConfig.distilbert(), "encoder"),
        (TransformerConfig.minilm(), "encoder"),
        (TransformerConfig.gpt2_small(), "gpt"),
        (TransformerConfig(**TINY, position_embedding="sinusoidal"), "gpt"),
    ],
)
def test_parameter_formula_equals_module_count(config, kind):
    with torch.device("meta"):
        model = Encoder(config) if kind == "encoder" else GPT(config)
    assert count_parameters(config, kind) == num_parameters(model)


def test_formula_matches_transformers_for_bert_base_and_gpt2_small():
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    with torch.device("meta"):
        bert = BertModel(BertConfig(), add_pooling_layer=False)
        gpt2 = GPT2LMHeadModel(GPT2Config())
    assert count_parameters(TransformerConfig.bert_base(), "encoder") == num_parameters(bert)
    assert count_parameters(TransformerConfig.gpt2_small(), "gpt") == num_parameters(gpt2)


@pytest.fixture(scope="module")
def minilm():
    from transformers import AutoTokenizer, BertModel

    path = packaged_model_path()
    return BertModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path), path


def test_encoder_with_bert_weights_matches_transformers(minilm):
    hf, tok, path = minilm
    enc = load_bert_weights(Encoder(TransformerConfig.from_bert(hf.config)), path).eval()
    batch = tok(["A tiny test.", "Attention is all you need, they said."], padding=True,
                return_tensors="pt")
    with torch.no_grad():
        ref = hf(**batch).last_hidden_state
        for backend in ("lab", "fused"):
            ours = set_attention_backend(enc, backend)(**batch).last_hidden_state
            assert (ours - ref).abs().max() < 1e-4


def test_models_embed_gives_the_same_sentence_embeddings_for_our_encoder(minilm):
    from bigmodel_lab.models import embed

    hf, tok, path = minilm
    enc = load_bert_weights(Encoder(TransformerConfig.from_bert(hf.config)), path).eval()
    texts = ["A tiny test.", "Attention is all you need, they said."]
    assert abs(embed(enc, tok, texts) - embed(hf, tok, texts)).max() < 1e-4

def test_mismatching_checkpoint_names_the_first_bad_key(minilm):
    hf, _, _ = minilm
    state = dict(hf.state_dict())
    wrong = TransformerConfig.from_bert(hf.config, hidden_size=192, num_heads=6)
    with pytest.raises(ValueError, match="embeddings.word_embeddings.weight"):
        load_bert_weights(Encoder(wrong), state)
    del state["encoder.layer.0.attention.self.key.bias"]
    with pytest.raises(KeyError, match="encoder.layer.0.attention.self.key.bias"):
        load_bert_weights(Encoder(TransformerConfig.from_bert(hf.config)), state)


def test_torch_transformer_encoder_with_copied_weights_gives_the_same_output():
    from bigmodel_lab.transformer import torch_encoder_from

    torch.manual_seed(0)
    enc = Encoder(TransformerConfig(**TINY, norm_position="post")).eval()
    ids = torch.randint(0, 50, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    ref = torch_encoder_from(enc)(enc.embeddings(ids), src_key_padding_mask=mask == 0)
    ours = enc(ids, mask).last_hidden_state
    torch.testing.assert_close(ours[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=0)


def test_trace_shapes_lists_modules_in_call_order():
    from bigmodel_lab.transformer import trace_shapes

    gpt = GPT(TransformerConfig(**TINY))
    rows = trace_shapes(gpt, torch.zeros(1, 5, dtype=torch.long))
    assert rows[0]["module"].startswith("embeddings") and rows[-1]["module"] == "lm_head"
    assert rows[-1]["output"] == (1, 5, 50)
