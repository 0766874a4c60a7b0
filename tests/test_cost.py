"""Cost estimates checked against real modules: parameter counts, FLOP counter, saved tensors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
)

from bigmodel_lab import cost


def tiny_bert(hidden=32, layers=2, heads=4, attn="eager"):
    config = BertConfig(vocab_size=120, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden,
                        max_position_embeddings=64, num_labels=2, attn_implementation=attn)
    return BertForSequenceClassification(config)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@settings(max_examples=8, deadline=None)
@given(st.sampled_from([16, 32, 48]), st.integers(1, 3), st.sampled_from([1, 2, 4]))
def test_bert_parameter_count_is_exact(hidden, layers, heads):
    model = tiny_bert(hidden, layers, heads)
    assert cost.count_parameters(cost.from_config(model.config, num_labels=2)) == n_params(model)


def test_distilbert_parameter_count_is_exact():
    config = DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                              max_position_embeddings=64)
    model = DistilBertForSequenceClassification(config)
    assert cost.count_parameters(cost.from_config(model.config, num_labels=2)) == n_params(model)


def test_llama_parameter_count_is_exact_with_grouped_query_attention():
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=80,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    model = LlamaForCausalLM(config)
    assert cost.count_parameters(cost.from_config(model.config)) == n_params(model)


def test_published_sizes_come_out_right():
    assert cost.count_parameters(cost.LLAMA_7B) / 1e9 == pytest.approx(6.74, abs=0.01)
    assert cost.count_parameters(cost.LLAMA2_70B) / 1e9 == pytest.approx(68.98, abs=0.01)
    assert cost.count_parameters(cost.BERT_LARGE) / 1e6 == pytest.approx(334.1, abs=0.1)


def test_refined_forward_flops_match_the_flop_counter():
    model = tiny_bert().eval()
    arch = cost.from_config(model.config, num_labels=2)
    ids = torch.randint(0, 120, (3, 20))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=ids)
    head = 2 * 3 * (32 * 32 + 32 * 2)  # pooler + classifier run on the [CLS] token only
    assert counter.get_total_flops() == cost.forward_flops(arch, 3, 20)["refined"] + head


def test_backward_costs_twice_the_forward():
    model = tiny_bert()
    ids = torch.randint(0, 120, (2, 16))
    with FlopCounterMode(display=False) as fwd:
        loss = model(input_ids=ids, labels=torch.tensor([0, 1])).loss
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    assert bwd.get_total_flops() == pytest.approx(2 * fwd.get_total_flops(), rel=0.05)


def test_training_flops_is_six_n_d_and_memory_is_sixteen_bytes_per_parameter():
    arch = cost.BERT_BASE
    n = cost.count_parameters(arch)
    assert cost.training_flops(arch, 1e6) == 6 * n * 1e6
    for mixed in (False, True):
        mem = cost.training_memory(arch, 1, 1, mixed_precision=mixed)
        assert mem["weights"] + mem["gradients"] + mem["optimizer"] == 16 * n


def test_activation_formula_matches_korthikanti_in_16_bit():
    arch = cost.BERT_BASE
    s, b, h, a = 128, 8, 768, 12
    expected = arch.num_layers * (34 * s * b * h + 5 * a * s * s * b)
    assert cost.activation_bytes(arch, b, s, bytes_per_value=2) == expected


def test_saved_activation_measure_is_close_to_the_formula():
    model = tiny_bert(hidden=64, layers=2, heads=4).train()
    arch = cost.from_config(model.config, num_labels=2)
    ids = torch.randint(0, 120, (4, 32))
    measured, out = cost.saved_activation_bytes(model, lambda: model(input_ids=ids).logits)
    assert out.shape == (4, 2)
    assert measured == pytest.approx(cost.activation_bytes(arch, 4, 32), rel=0.35)


def test_kv_cache_only_for_decoders_and_grows_with_length():
    assert cost.inference_memory(cost.BERT_BASE, 1, 128)["kv_cache"] == 0
    short = cost.inference_memory(cost.LLAMA_7B, 1, 1024)["kv_cache"]
    assert cost.inference_memory(cost.LLAMA_7B, 1, 2048)["kv_cache"] == 2 * short


def test_gpu_hours_and_money():
    hours = cost.gpu_hours(3600 * 100e12, peak_flops=100e12, utilization=0.5)
    assert hours == pytest.approx(2.0)
    assert cost.money(hours, 2.5) == pytest.approx(5.0)


def test_published_llama_runs_imply_a_plausible_utilization():
    peak = cost.GPU_PEAK_FLOPS["A100 (bf16)"]
    for arch in (cost.LLAMA_7B, cost.LLAMA2_70B):
        u = cost.implied_utilization(arch, cost.PUBLISHED_RUNS[arch.name], peak)
        assert 0.3 < u < 0.6


@pytest.mark.parametrize("call, fix", [
    (lambda: cost.gpu_hours(1.0, 1.0, utilization=0), "0.3-0.5 is typical"),
    (lambda: cost.money(1.0, -1), "price_per_hour must be >= 0"),
    (lambda: cost.Architecture("x", "gpt9", 10, 8, 1, 2, 16), "Use one of"),
    (lambda: cost.Architecture("x", "bert", 10, 10, 1, 3, 16), "divisible by num_heads"),
])
def test_bad_inputs_say_what_to_fix(call, fix):
    with pytest.raises(ValueError, match=fix):
        call()


def test_scale_table_counts_gpus_of_the_memory_given():
    small = cost.scale_table([cost.LLAMA_7B], {"LLaMA-7B": 1e12}, 8, 512, 1e15, 2.0,
                             gpu_memory_gb=40)
    large = cost.scale_table([cost.LLAMA_7B], {"LLaMA-7B": 1e12}, 8, 512, 1e15, 2.0,
                             gpu_memory_gb=160)
    assert small.loc[0, "min_gpus"] >= 4 * large.loc[0, "min_gpus"] - 3
    assert small.loc[0, "min_gpus"] * 40e9 >= small.loc[0, "train_memory_gb"] * 1e9


def test_format_scale_table_marks_models_without_published_hours():
    archs = [cost.BERT_BASE, cost.LLAMA_7B]
    tokens = {"BERT-base": 1e9, "LLaMA-7B": cost.PUBLISHED_RUNS["LLaMA-7B"].tokens}
    runs = cost.add_published(cost.scale_table(archs, tokens, 8, 512, 312e12, 2.0), archs, 312e12)
    shown = cost.format_scale_table(runs).set_index("model")
    assert shown.loc["BERT-base", "published_gpu_hours"] == "-"
    assert shown.loc["LLaMA-7B", "implied_utilization"] == f"{runs.loc[1, 'implied_utilization']:.2f}"


def test_operator_times_names_the_matmul_of_a_linear_layer(capfd):
    import torch

    times = cost.operator_times(torch.nn.Linear(8, 8), input=torch.randn(4, 8))
    assert times["aten::addmm"] >= 0 and all(v >= 0 for v in times.values())
    assert "profiler_start" not in capfd.readouterr().err


def test_operator_times_leaves_no_profiler_garbage_behind():
    import gc

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
    times = cost.operator_times(model, 2, input=torch.randn(4, 8))
    assert times and all(v >= 0 for v in times.values())
    assert gc.collect() < 50  # the profiler's event cycles were collected inside (once thousands)
