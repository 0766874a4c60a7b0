"""Q4_1 from scratch against gguf-py and the real packaged GGUF; the fp32/bf16/int8 variants."""

import gguf
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bigmodel_lab import decoder_quant as dq
from bigmodel_lab.models import converted_llm_dir, packaged_gguf_path

Q4_1 = gguf.GGMLQuantizationType.Q4_1


@pytest.fixture(scope="module")
def reader():
    return dq.read_gguf(packaged_gguf_path())


def test_quantize_gives_the_same_bytes_as_gguf_py():
    w = np.random.default_rng(0).normal(0, 0.02, (48, 256)).astype(np.float32)
    assert np.array_equal(dq.quantize_q4_1(w), gguf.quants.quantize(w, Q4_1))


def test_dequantizing_the_real_file_matches_gguf_py_and_the_converted_model(reader):
    from safetensors import safe_open

    t = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
    ours = dq.dequantize_q4_1(np.asarray(t.data))
    assert np.array_equal(ours, gguf.quants.dequantize(np.asarray(t.data), Q4_1))
    with safe_open(converted_llm_dir() / "model.safetensors", "np") as f:
        assert np.array_equal(ours, f.get_tensor("model.layers.0.mlp.down_proj.weight"))


def test_report_on_real_tensors_shows_exact_decoding_and_a_stable_round_trip(reader):
    report = dq.q4_1_report(reader, ["blk.0.attn_v.weight", "blk.29.ffn_up.weight"])
    assert len(report) == 2 and (report["max |ours - gguf|"] == 0).all()
    assert (report["blocks identical after re-quantizing"] > 0.99).all()
    assert report["implied relative RMS error"].between(0.01, 0.3).all()
    table = dq.tensor_table(reader)
    assert set(table.loc[table.format == "Q4_1", "bits_per_weight"]) == {5.0}


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (3, 32), elements=st.floats(-4, 4, width=32)))
def test_every_weight_is_within_half_a_step(w):
    w_hat = dq.dequantize_q4_1(dq.quantize_q4_1(w))
    d = (w.max(1, keepdims=True) - w.min(1, keepdims=True)) / 15
    slack = 1e-3 * (np.abs(w).max(1, keepdims=True) + 15 * d) + 1e-6  # fp16 d and m
    assert (np.abs(w_hat - w) <= d / 2 + slack).all()


def test_a_constant_block_comes_back_exactly():
    w = np.full((1, 32), 0.25, np.float32)
    assert np.array_equal(dq.dequantize_q4_1(dq.quantize_q4_1(w)), w)


def test_bad_shapes_name_the_block_size():
    with pytest.raises(ValueError, match="multiple of 32"):
        dq.quantize_q4_1(np.zeros((2, 30), np.float32))
    with pytest.raises(ValueError, match="20 bytes"):
        dq.dequantize_q4_1(np.zeros((2, 30), np.uint8))


def test_reconstruction_error_of_an_exact_copy_is_zero():
    w = np.random.default_rng(1).normal(size=(4, 32))
    assert dq.reconstruction_error(w, w)["rms_error"] == 0


def tiny_linear_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def test_int8_variant_swaps_linears_in_place_and_stays_close():
    model = tiny_linear_model()
    x = torch.randn(5, 32)
    want = model(x)
    q = dq.make_variant(model, "int8")
    assert q is model and "quantized" in type(q[0]).__module__
    assert torch.allclose(q(x), want, atol=0.05)
    assert dq.make_variant(tiny_linear_model(), "bf16")[0].weight.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp32, bf16, int8"):
        dq.make_variant(model, "fp8")


def test_check_q4_1_block_passes_the_reference_and_explains_truncation():
    def reference(block):
        m = block.min()
        d = (block.max() - m) / 15
        return d, m, np.round((block - m) / d)

    def truncating(block):
        d, m, _ = reference(block)
        return d, m, np.floor((block - m) / d)

    assert dq.check_q4_1_block(reference, quiet=True)
    result = dq.check_q4_1_block(truncating, quiet=True)
    assert not result and "round to the nearest" in result.message


def test_weights_mb_counts_tied_weights_once_and_int8_at_a_byte():
    model = tiny_linear_model()
    fp32 = dq.weights_mb(model)
    assert fp32 == pytest.approx((32 * 32 + 32 + 32 * 4 + 4) * 4 / 1e6)
    emb = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    assert dq.weights_mb(torch.nn.ModuleList([emb, head])) == pytest.approx(160 / 1e6)
    int8 = dq.weights_mb(dq.make_variant(model, "int8"))
    assert int8 == pytest.approx((32 * 32 + 32 * 4) / 1e6 + (32 + 4) * 4 / 1e6)


def test_round_trip_in_chunks_equals_one_pass():
    w = np.random.default_rng(2).normal(size=(70, 64)).astype(np.float32)
    one = dq.dequantize_q4_1(dq.quantize_q4_1(w))
    assert np.array_equal(dq.round_trip_q4_1(w, rows_per_chunk=16), one)


def test_round_trip_in_place_changes_the_tensor_itself_and_reports_the_error():
    w = np.random.default_rng(4).normal(size=(70, 64)).astype(np.float32)
    t = torch.from_numpy(w.copy())
    ptr = t.data_ptr()
    err = dq.round_trip_q4_1_(t, rows_per_chunk=16)
    one = dq.dequantize_q4_1(dq.quantize_q4_1(w))
    assert t.data_ptr() == ptr and np.array_equal(t.numpy(), one)
    expected = dq.reconstruction_error(w, one)
    assert err == pytest.approx(expected)


def test_reconstruction_error_matches_the_direct_formula():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(5000, 8))
    a = w + rng.normal(0, 0.1, size=w.shape)
    got = dq.reconstruction_error(w, a)
    assert got["rms_error"] == pytest.approx(np.sqrt(((a - w) ** 2).mean()))
    assert got["max_abs_error"] == pytest.approx(np.abs(a - w).max())
    assert got["relative_rms_error"] == pytest.approx(got["rms_error"] / np.sqrt((w ** 2).mean()))
