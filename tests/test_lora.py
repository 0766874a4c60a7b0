"""LoRA by hand against peft, the answer-only loss against Hugging Face's, adapters on disk."""

import pytest
import torch
from torch import nn

from bigmodel_lab import lora as L


def tiny_llama(vocab_size: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def test_fresh_lora_linear_equals_its_base_because_b_starts_at_zero():
    base = nn.Linear(8, 5)
    x = torch.randn(3, 8)
    assert torch.equal(L.LoRALinear(base, r=2)(x), base(x))


def test_lora_linear_equals_peft_for_the_same_a_and_b():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 6))
    ours = L.LoRALinear(nn.Linear(8, 6), r=4, alpha=8.0)
    ours.base.load_state_dict(net[0].state_dict())
    peft_net = get_peft_model(net, LoraConfig(r=4, lora_alpha=8, target_modules=["0"],
                                              lora_dropout=0.0))
    layer = peft_net.base_model.model[0]
    a, b = torch.randn(4, 8), torch.randn(6, 4)
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(a)
        layer.lora_B["default"].weight.copy_(b)
        ours.lora_A.weight.copy_(a)
        ours.lora_B.weight.copy_(b)
    x = torch.randn(5, 8)
    torch.testing.assert_close(ours(x), peft_net(x))
    torch.testing.assert_close(ours.delta_weight(), layer.get_delta_weight("default"))


def test_merge_keeps_outputs_and_unmerge_restores_the_weight():
    ours = L.LoRALinear(nn.Linear(8, 6), r=2, alpha=4.0)
    nn.init.normal_(ours.lora_B.weight)
    w0 = ours.base.weight.detach().clone()
    x = torch.randn(4, 8)
    before = ours(x)
    ours.merge()
    torch.testing.assert_close(ours(x), before)
    assert not torch.allclose(ours.base.weight, w0)
    ours.unmerge()
    torch.testing.assert_close(ours.base.weight, w0)
    torch.testing.assert_close(ours(x), before)


def test_add_lora_trains_only_the_adapters():
    model = tiny_llama()
    names = L.add_lora(model, L.LoRAConfig(r=2, target_modules=("q_proj", "v_proj")))
    assert len(names) == 4  # 2 layers x (q, v)
    trainable, total = L.trainable_parameters(model)
    assert trainable == 2 * (2 * (32 + 32) + 2 * (32 + 16))  # r (in + out) per layer
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    assert total > trainable


def test_add_lora_with_unknown_targets_names_the_layers_to_use():
    with pytest.raises(ValueError, match="q_proj"):
        L.add_lora(tiny_llama(), L.LoRAConfig(target_modules=("query",)))


def test_bad_rank_and_dropout_say_what_to_use():
    with pytest.raises(ValueError, match="r=8"):
        L.LoRAConfig(r=0)
    with pytest.raises(ValueError, match="0.05"):
        L.LoRAConfig(dropout=1.0)
    with pytest.raises(TypeError, match="linear layers"):
        L.LoRALinear(nn.Conv1d(2, 2, 1))


def test_answer_loss_equals_the_hugging_face_loss_on_the_answer_tokens():
    model = tiny_llama()
    from bigmodel_lab.prompting import collate_left

    rows = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    labels = [[-100, -100, -100, -100, 9, 10], [-100, 12, 13]]
    batch = collate_left(rows, pad_id=0, labels=labels)
    with torch.no_grad():
        ours = L.answer_loss(model, batch)
        ref = model(**batch).loss
    torch.testing.assert_close(ours, ref)


def test_answer_loss_refuses_right_padding_and_all_masked_labels():
    model = tiny_llama()
    ids = torch.tensor([[5, 6, 7, 0]])
    batch = {"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 0]]),
             "labels": torch.tensor([[-100, -100, 7, -100]])}
    with pytest.raises(ValueError, match="pad on the left"):
        L.answer_loss(model, batch)
    batch["labels"] = torch.full_like(ids, -100)
    with pytest.raises(ValueError, match="sft_example"):
        L.answer_loss(model, batch)


def test_peft_adapter_saves_atomically_and_reloads_the_same_outputs(tmp_path):
    model = L.peft_lora(tiny_llama(), L.LoRAConfig(r=2, dropout=0.0))
    for n, p in model.named_parameters():
        if "lora_B" in n:
            nn.init.normal_(p)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    folder = L.save_adapter(model, tmp_path / "adapter", {"profile": "smoke"})
    assert L.read_adapter_info(folder) == {"profile": "smoke"}
    assert 0 < L.adapter_size_mb(folder) < 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    reloaded = L.load_adapter(tiny_llama(), folder)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, expected)


def test_qlora_without_cuda_says_why():
    ok, why = L.qlora_available()
    if not torch.cuda.is_available():
        assert not ok and "GPU" in why
        with pytest.raises(RuntimeError, match="peft_lora"):
            L.load_causal_lm_4bit("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_lora_parameters_counts_the_adapters_frozen_or_not():
    from bigmodel_lab import lora

    model = torch.nn.Sequential(torch.nn.Linear(6, 6))
    lora.add_lora(model, lora.LoRAConfig(r=2, target_modules=("0",)))
    n = lora.lora_parameters(model)
    assert n == 2 * (6 + 6)  # A is (2, 6), B is (6, 2)
    for p in model.parameters():
        p.requires_grad_(False)
    assert lora.lora_parameters(model) == n


def test_adapter_save_killed_between_renames_is_recovered_on_read(tmp_path, monkeypatch):
    from bigmodel_lab import runtime

    model = L.peft_lora(tiny_llama(), L.LoRAConfig(r=2, dropout=0.0))
    folder = L.save_adapter(model, tmp_path / "adapter", {"profile": "cpu"})
    real_replace, calls = runtime.os.replace, {"n": 0}

    def second_rename_dies(*args, **kwargs):  # old aside done, new not yet in
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_replace(*args, **kwargs)

    monkeypatch.setattr(runtime.os, "replace", second_rename_dies)
    with pytest.raises(KeyboardInterrupt):
        L.save_adapter(model, folder, {"profile": "gpu"})
    monkeypatch.undo()
    assert not folder.exists()  # killed between the renames
    assert L.read_adapter_info(folder) == {"profile": "gpu"}  # the complete new copy went in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
