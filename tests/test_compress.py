"""Tests for bigmodel_lab.compress on tiny randomly initialised BERT classifiers."""

import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from bigmodel_lab import compress


def tiny_bert(layers: int = 2, heads: int = 4, hidden: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden,
                        max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(config).eval()


def batch(n: int = 3, t: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (n, t), generator=g)
    mask = torch.ones(n, t, dtype=torch.long)
    mask[0, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


class WordTokenizer:
    """Deterministic stand-in tokenizer for ONNX tests (hashes words into the tiny vocab)."""

    def __call__(self, texts, padding=True, truncation=True, max_length=16, return_tensors="pt"):
        rows = [[2 + hash(w) % 97 for w in t.split()][:max_length] or [1] for t in texts]
        width = max_length if padding == "max_length" else max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = r, 1
        if return_tensors == "pt":
            return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
        return {"input_ids": ids, "attention_mask": mask}

    def save_pretrained(self, folder):
        pass


def test_size_mb_counts_float32_bytes():
    layer = nn.Linear(1000, 250, bias=False)  # 250k floats = 1.0 MB
    assert compress.size_mb(layer) == pytest.approx(1.0, abs=0.01)


def test_size_mb_of_missing_file_says_to_export_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="export or save"):
        compress.size_mb(tmp_path / "nope.onnx")


def test_magnitude_prune_reaches_requested_sparsity_and_counts_nonzeros():
    model = tiny_bert()
    total = compress.count_parameters(model)
    compress.magnitude_prune(model, 0.5)
    assert compress.sparsity(model) == pytest.approx(0.5, abs=0.01)
    assert compress.count_parameters(model) == total
    assert compress.count_parameters(model, nonzero=True) < total
    compress.make_pruning_permanent(model)
    assert not any(n.endswith("_mask") for n, _ in model.named_buffers())
    assert compress.sparsity(model) == pytest.approx(0.5, abs=0.01)


def test_pruned_weights_are_the_smallest_in_magnitude():
    model = tiny_bert()
    before = torch.cat([m.weight.detach().abs().flatten() for m, _ in compress.encoder_linears(model)])
    compress.magnitude_prune(model, 0.3)
    after = torch.cat([m.weight.detach().flatten() for m, _ in compress.encoder_linears(model)])
    assert before[after == 0].max() <= before[after != 0].min()


def test_prune_amount_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        compress.magnitude_prune(tiny_bert(), 1.5)


def test_removing_a_head_equals_zeroing_its_value_projection():
    model = tiny_bert()
    size = model.config.hidden_size // model.config.num_attention_heads
    zeroed = tiny_bert()
    value = zeroed.bert.encoder.layer[1].attention.self.value
    with torch.no_grad():
        value.weight[size: 2 * size] = 0  # head 1 of layer 1 now outputs zeros
        value.bias[size: 2 * size] = 0
    compress.remove_heads(model, {1: [1], 0: [0, 3]})
    compress.remove_heads(zeroed, {0: [0, 3]})
    assert model.bert.encoder.layer[1].attention.self.query.out_features == 3 * size
    assert compress.count_parameters(model) < compress.count_parameters(tiny_bert())
    with torch.no_grad():
        torch.testing.assert_close(model(**batch()).logits, zeroed(**batch()).logits)


def test_remove_heads_names_heads_by_original_index_and_refuses_emptying_a_layer():
    model = tiny_bert()
    compress.remove_heads(model, {0: [1]})
    compress.remove_heads(model, {0: [2]})
    assert model.bert.encoder.layer[0].attention.self.head_ids == [0, 3]
    with pytest.raises(ValueError, match="no \\(remaining\\) heads"):
        compress.remove_heads(model, {0: [1]})
    with pytest.raises(ValueError, match="keep_layers"):
        compress.remove_heads(model, {0: [0, 3]})


def test_head_importance_has_one_score_per_head_and_least_important_keeps_a_head():
    model = tiny_bert()
    scores = compress.head_importance(model, [{**batch(), "labels": torch.tensor([0, 1, 1])}])
    assert scores.shape == (2, 4)
    assert torch.allclose(scores.norm(dim=-1), torch.ones(2))
    chosen = compress.least_important_heads(scores, 6)
    assert sum(map(len, chosen.values())) == 6
    assert all(len(h) <= 3 for h in chosen.values())
    assert all(p.grad is None for p in model.parameters())


def test_keep_layers_matches_a_model_built_with_fewer_layers():
    model = tiny_bert(layers=3)
    compress.keep_layers(model, [0, 2])
    assert model.config.num_hidden_layers == 2
    assert model(**batch()).logits.shape == (3, 2)
    with pytest.raises(ValueError, match="layer indices"):
        compress.keep_layers(tiny_bert(), [5])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False, width=32), min_size=2, max_size=40),
       st.booleans())
def test_int8_roundtrip_error_is_at_most_half_a_step(values, symmetric):
    x = torch.tensor(values)
    scale, zero_point = compress.int8_params(x, symmetric=symmetric)
    q = compress.quantize_int8(x, scale, zero_point)
    assert q.dtype == torch.int8
    error = (compress.dequantize_int8(q, scale, zero_point) - x).abs().max()
    assert error <= scale / 2 + 1e-5
    assert compress.dequantize_int8(compress.quantize_int8(torch.zeros(1), scale, zero_point),
                                    scale, zero_point).item() == 0.0


def test_int8_maths_matches_torch_quantize_per_tensor():
    x = torch.randn(200) * 3 + 1
    scale, zero_point = compress.int8_params(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.quantize_per_tensor(x, scale, zero_point, torch.qint8)
    assert torch.equal(compress.quantize_int8(x, scale, zero_point), ref.int_repr())
    torch.testing.assert_close(compress.dequantize_int8(ref.int_repr(), scale, zero_point),
                               ref.dequantize())


def test_dynamic_int8_shrinks_linear_weights_and_keeps_predictions_close():
    model = tiny_bert(hidden=64)
    quantized = compress.quantize_dynamic_int8(model)
    assert isinstance(model.bert.encoder.layer[0].intermediate.dense, nn.Linear)  # copy made
    assert compress.linear_size_mb(quantized) < 0.4 * compress.linear_size_mb(model)
    with torch.no_grad():
        torch.testing.assert_close(quantized(**batch()).logits, model(**batch()).logits,
                                   atol=0.05, rtol=0.05)


def test_measure_latency_reports_median_p90_and_setting():
    calls = []
    result = compress.measure_latency(lambda: calls.append(1), batch_size=4, seq_len=8,
                                      warmup=2, repeats=5, threads=1)
    assert len(calls) == 7
    assert 0 <= result.median_ms <= result.p90_ms
    assert (result.batch_size, result.seq_len, result.threads) == (4, 8, 1)
    assert result.clock == ("cpu" if len(os.sched_getaffinity(0)) == 1 else "wall")
    with pytest.raises(ValueError, match="repeats"):
        compress.measure_latency(lambda: None, batch_size=1, seq_len=1, repeats=0)


def test_onnx_export_and_int8_match_pytorch(tmp_path):
    model, tokenizer = tiny_bert(hidden=64), WordTokenizer()
    path = compress.export_onnx(model, tokenizer, tmp_path / "model.onnx", max_length=16)
    int8 = compress.quantize_onnx(path, tmp_path / "model-int8.onnx")
    texts = ["a good film", "bad", "an utterly long and winding review of a film"]
    expected = compress.torch_predict_fn(model, tokenizer, 16)(texts)
    fp32 = compress.OnnxClassifier(path, tokenizer=tokenizer)
    np.testing.assert_allclose(fp32.predict_proba(texts), expected, atol=1e-5)
    np.testing.assert_allclose(compress.OnnxClassifier(int8, tokenizer=tokenizer)
                               .predict_proba(texts), expected, atol=0.05)
    assert compress.size_mb(int8) < compress.size_mb(path)
    assert fp32.max_length == 16 and fp32.id2label[1]


def test_export_int8_fuses_attention_and_layernorm_and_matches_pytorch(tmp_path):
    model, tokenizer = tiny_bert(hidden=64), WordTokenizer()
    paths = compress.export_int8(model, tokenizer, tmp_path / "deployed", max_length=16)
    assert set(paths) == {"fp32", "fused", "int8"}
    fused = compress.fused_operators(paths["fused"])
    assert fused.get("Attention") == 2 and fused.get("SkipLayerNormalization", 0) >= 2, fused
    assert compress.fused_operators(paths["int8"]).get("QAttention") == 2
    texts = ["a good film", "bad", "an utterly long and winding review of a film"]
    expected = compress.torch_predict_fn(model, tokenizer, 16)(texts)
    np.testing.assert_allclose(compress.OnnxClassifier(paths["fused"], tokenizer=tokenizer)
                               .predict_proba(texts), expected, atol=1e-4)
    np.testing.assert_allclose(compress.OnnxClassifier(paths["int8"], tokenizer=tokenizer)
                               .predict_proba(texts), expected, atol=0.05)


def test_optimize_onnx_needs_an_exported_graph(tmp_path):
    with pytest.raises(FileNotFoundError, match="run export_onnx first"):
        compress.optimize_onnx(tmp_path / "missing.onnx", tmp_path / "out.onnx", 4, 64)


def test_export_onnx_wants_an_onnx_file_name(tmp_path):
    with pytest.raises(ValueError, match=".onnx"):
        compress.export_onnx(tiny_bert(), WordTokenizer(), tmp_path / "model.bin")


def test_evaluate_predict_scores_a_perfect_predictor():
    import datasets

    split = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 1]})
    perfect = lambda texts: np.eye(2)[[0 if t == "a" else 1 for t in texts]]  # noqa: E731
    assert compress.evaluate_predict(perfect, split) == {"accuracy": 1.0, "f1": 1.0}
    with pytest.raises(ValueError, match="'label' column"):
        compress.evaluate_predict(perfect, split.remove_columns("label"))


def test_trimmed_vocabulary_gives_the_same_outputs_on_the_texts_it_kept():
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from bigmodel_lab.models import packaged_model_path

    tokenizer = BertTokenizerFast.from_pretrained(packaged_model_path())
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64)).eval()
    texts = ["a gripping, funny film", "dull and far too long"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    before = model(**batch).logits
    n_before = compress.count_parameters(model)
    kept = compress.trim_vocabulary(model, tokenizer, texts)
    assert kept < 0.01 and compress.count_parameters(model) < n_before
    torch.testing.assert_close(model(**batch).logits, before)
    unseen = tokenizer(["zebra"], return_tensors="pt")
    unk = tokenizer(["[UNK]"], return_tensors="pt")
    torch.testing.assert_close(model(**unseen).logits, model(**unk).logits)
    with pytest.raises(ValueError, match="already trimmed"):
        compress.trim_vocabulary(model, tokenizer, texts)


def _packaged_tiny():
    from transformers import BertTokenizerFast

    from bigmodel_lab.models import packaged_model_path

    tokenizer = BertTokenizerFast.from_pretrained(packaged_model_path())
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, num_labels=2)).eval()
    return model, tokenizer


def test_accuracy_agrees_with_finetune_evaluate():
    import datasets

    from bigmodel_lab import finetune

    model, tokenizer = _packaged_tiny()
    split = datasets.Dataset.from_dict({"text": ["good", "bad film", "fine", "awful"],
                                        "label": [1, 0, 1, 0]})
    expected = finetune.evaluate(model, tokenizer, split, 16, 2)["accuracy"]
    assert compress.accuracy(model, tokenizer, split, 16, 2) == pytest.approx(expected)


def test_latency_ms_is_the_median_of_torch_latency():
    ms = compress.latency_ms(tiny_bert(), batch(), repeats=3, warmup=1)
    assert ms > 0


def test_zeros_shrink_the_compressed_size_but_not_the_plain_size():
    dense = tiny_bert()
    sparse = compress.magnitude_prune(tiny_bert(), 0.9)
    assert compress.size_mb(sparse) == pytest.approx(compress.size_mb(dense), rel=0.01)
    assert compress.compressed_mb(sparse) < 0.8 * compress.compressed_mb(dense)


def test_recover_trains_and_keeps_pruned_weights_at_zero():
    import datasets

    model, tokenizer = _packaged_tiny()
    texts = ["good", "bad film", "fine", "awful", "great fun", "dull"]
    dsd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"text": texts, "label": [1, 0, 1, 0, 1, 0]})})
    compress.magnitude_prune(model, 0.5)
    before = compress.sparsity(model)
    compress.recover(model, tokenizer, dsd, steps=2, max_length=8, batch_size=2)
    assert compress.sparsity(model) >= before - 1e-9
    with pytest.raises(ValueError, match="at least 1"):
        compress.recover(model, tokenizer, dsd, steps=0, max_length=8, batch_size=2)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_or_truncated_onnx_file_says_delete_it_and_export_again(tmp_path, damage):
    model, tokenizer = tiny_bert(), WordTokenizer()
    path = compress.export_onnx(model, tokenizer, tmp_path / "model.onnx", max_length=16)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\x07not onnx" * 50)
    with pytest.raises(ValueError, match="Delete it and export again with compress.export_onnx"):
        compress.OnnxClassifier(path, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="Delete it and export again"):
        compress.quantize_onnx(path, tmp_path / "model-int8.onnx")


def test_export_records_profile_and_origin(tmp_path):
    from bigmodel_lab import setup

    setup("09", profile="smoke", quiet=True)
    path = compress.export_onnx(tiny_bert(), WordTokenizer(), tmp_path / "model.onnx", 16)
    info = compress.onnx_info(path)
    assert info["profile"] == "smoke" and info["origin"] == "notebook 09"
    assert compress.OnnxClassifier(path, tokenizer=WordTokenizer()).info["profile"] == "smoke"


def test_export_onnx_refuses_a_max_length_the_model_cannot_read(tmp_path):
    with pytest.raises(ValueError, match="max_length=64 or less"):
        compress.export_onnx(tiny_bert(), WordTokenizer(), tmp_path / "model.onnx", 100)
