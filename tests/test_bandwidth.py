import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bigmodel_lab import bandwidth
from bigmodel_lab.convert import quantize_dynamic_int8
from bigmodel_lab.transformer import decoder_from_pretrained


def _model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return decoder_from_pretrained(LlamaForCausalLM(config))


def test_weight_bytes_count_the_tied_matrix_once_and_int8_as_one_byte():
    model = _model()
    params = sum(p.numel() for p in model.parameters())  # tied: counted once
    assert bandwidth.weight_bytes_per_token(model) == 4 * params
    int8 = quantize_dynamic_int8(model)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    norms = sum(p.numel() for n, p in model.named_parameters() if "norm" in n)
    assert bandwidth.weight_bytes_per_token(int8) == linear + 4 * norms + 4 * 32  # + one embedding row


def test_bound_is_bandwidth_over_bytes():
    r = bandwidth.decode_bound(tokens_per_s=5.0, weight_bytes=10**9, bandwidth_gbs=20.0)
    assert r["bound_tokens_per_s"] == 20.0 and r["fraction_of_bound"] == 0.25
    assert bandwidth.copy_bandwidth_gbs(size_mb=8, repeats=2) > 0
