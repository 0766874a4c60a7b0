"""Preference tuning: the DPO loss against a hand computation and against trl, pairs, the loop."""

import math
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bigmodel_lab import preference as pref


@pytest.fixture(scope="module")
def tiny():
    """A tiny random Llama and the packaged MiniLM WordPiece tokenizer (no LLM weights)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from bigmodel_lab.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2").path,
                                        local_files_only=True)
    tok.eos_token = "[SEP]"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.cls_token_id)
    return LlamaForCausalLM(config).eval(), tok


# ---------------------------------------------------------------------------- the DPO loss
def test_dpo_loss_matches_a_hand_computation():
    pc, pr = torch.tensor([-10.0, -12.0]), torch.tensor([-11.0, -9.0])
    rc, rr = torch.tensor([-10.5, -12.0]), torch.tensor([-10.5, -10.0])
    beta = 0.5
    # pair 1: 0.5*((-10+10.5) - (-11+10.5)) = 0.5; pair 2: 0.5*(0 - 1) = -0.5
    hand = (-math.log(1 / (1 + math.exp(-0.5))) - math.log(1 / (1 + math.exp(0.5)))) / 2
    loss, chosen, rejected = pref.dpo_loss(pc, pr, rc, rr, beta)
    assert loss.item() == pytest.approx(hand, rel=1e-6)
    assert chosen.tolist() == pytest.approx([0.25, 0.0])
    assert rejected.tolist() == pytest.approx([-0.25, 0.5])


def test_dpo_loss_is_log_2_when_the_policy_is_the_reference():
    logps = torch.randn(5) - 20
    loss, _, _ = pref.dpo_loss(logps, logps - 3, logps, logps - 3, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))


def _trl_loss(pc, pr, rc, rr, beta):
    """trl 1.16's DPOTrainer._compute_loss on given per-token log-probs (one token each)."""
    from trl import DPOTrainer

    logps = torch.cat([pc, pr])[:, None]  # batch is [chosen, rejected], one completion token
    n = logps.shape[0]
    outputs = SimpleNamespace(log_probs=logps, entropy=torch.zeros(n, 1),
                              mean_logits=torch.zeros(n, 1), is_top1=torch.zeros(n, 1, dtype=bool))
    stub = SimpleNamespace(
        model=SimpleNamespace(training=True), aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=["sigmoid"],
        loss_weights=[1.0], beta=beta, label_smoothing=0.0, use_weighting=False,
        accelerator=SimpleNamespace(device="cpu", gather_for_metrics=lambda x: x,
                                    gather=lambda x: x),
        _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1)
    inputs = dict(input_ids=torch.ones(n, 2, dtype=torch.long),
                  attention_mask=torch.ones(n, 2, dtype=torch.long),
                  completion_mask=torch.tensor([[0, 1]] * n), ref_chosen_logps=rc,
                  ref_rejected_logps=rr)
    return DPOTrainer._compute_loss(stub, lambda **kw: outputs, inputs, return_outputs=False)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_matches_trl(beta):
    g = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = (torch.randn(4, generator=g) * 3 - 10 for _ in range(4))
    ours = pref.dpo_loss(pc, pr, rc, rr, beta)[0]
    assert ours.item() == pytest.approx(_trl_loss(pc, pr, rc, rr, beta).item(), rel=1e-6)


def test_dpo_loss_rejects_a_non_positive_beta():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="beta must be > 0"):
        pref.dpo_loss(x, x, x, x, beta=0.0)


# ---------------------------------------------------------------------------- pairs and packing
def _samples(rewards_per_prompt):
    index = np.repeat(np.arange(len(rewards_per_prompt)), [len(r) for r in rewards_per_prompt])
    n = len(index)
    return pref.Samples([f"p{i}" for i in range(len(rewards_per_prompt))],
                        [[1, 2]] * n, [[10 + i] for i in range(n)], [f"t{i}" for i in range(n)],
                        index)


def test_pairs_take_the_best_and_worst_sample_of_each_prompt():
    rewards = [[0.2, 0.9, 0.5], [0.6, 0.1, 0.3]]
    pairs = pref.preference_pairs(_samples(rewards), np.concatenate(rewards))
    assert pairs.chosen_text == ["t1", "t3"] and pairs.rejected_text == ["t0", "t4"]
    assert pairs.chosen_reward.tolist() == [0.9, 0.6]


def test_pairs_skip_prompts_below_the_margin():
    rewards = [[0.50, 0.52], [0.1, 0.9]]
    pairs = pref.preference_pairs(_samples(rewards), np.concatenate(rewards), min_margin=0.1)
    assert len(pairs) == 1 and pairs.chosen_text == ["t3"]


def test_pairs_need_two_samples_per_prompt():
    with pytest.raises(ValueError, match="n_per_prompt >= 2"):
        pref.preference_pairs(_samples([[0.3], [0.4]]), [0.3, 0.4])


def test_pack_marks_only_the_completion():
    batch = pref.pack([[5, 6], [7]], [[8, 9, 2], [3]], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 8, 9, 2], [7, 3, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["completion_mask"].tolist() == [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]


# ---------------------------------------------------------------------------- sampling, log-probs
def test_log_probs_of_samples_do_not_depend_on_padding(tiny):
    model, tok = tiny
    prompts = ["a good film", "the worst movie i have ever seen here"]  # unequal: left padding
    samples = pref.sample_continuations(model, tok, prompts, n_per_prompt=2, max_new_tokens=5,
                                        batch_size=4, seed=3)
    assert samples.prompt_index.tolist() == [0, 0, 1, 1] and len(samples) == 4
    ours = pref.sample_logprobs(model, samples, tok.pad_token_id)
    # Score each sample alone (no padding at all): the same log-probabilities.
    for i in range(4):
        alone = pref.pack([samples.prompt_ids[i]], [samples.completion_ids[i]], tok.pad_token_id)
        logps, mask = pref.token_logprobs(model, alone)
        np.testing.assert_allclose(ours[i], logps[mask.bool()].detach().numpy(), atol=1e-5)
        assert len(ours[i]) == len(samples.completion_ids[i])


def test_kl_estimate_is_zero_when_the_policy_is_the_reference():
    logps = [np.array([-1.0, -2.0]), np.array([-0.5])]
    m = pref.per_sample([0.9, 0.2], logps, logps)
    table = pref.summarize(m, ["good good film", "bad"], n_boot=20)
    assert table.loc["KL per token (nats)", "value"] == 0.0
    assert table.loc["share positive", "value"] == 0.5
    assert table.loc["perplexity under reference", "value"] == pytest.approx(math.exp(3.5 / 3))


def test_train_dpo_lowers_the_loss_and_keeps_the_reference(tiny):
    from transformers import LlamaForCausalLM

    model, tok = tiny
    model = LlamaForCausalLM(model.config)
    model.load_state_dict(tiny[0].state_dict())
    prompts = [[tok.cls_token_id, 1000 + i] for i in range(4)]
    chosen = [[2000 + i, 2001] for i in range(4)]
    rejected = [[3000 + i, 3001] for i in range(4)]
    pairs = pref.Pairs(prompts, chosen, rejected, [""] * 4, [""] * 4, np.ones(4), np.zeros(4))
    config = pref.DPOConfig(beta=0.5, lr=1e-2, steps=10, batch_pairs=4, warmup_steps=1,
                            activation_checkpointing=True, progress=False)
    policy = pref.add_lora(model, config)
    ref_before = pref._summed_logps(policy, prompts, chosen, tok.pad_token_id).detach()
    hist = pref.train_dpo(policy, pairs, config, tok.pad_token_id)
    assert hist.loss[-1] < hist.loss[0] and hist.accuracy[-1] == 1.0
    with torch.no_grad(), policy.disable_adapter():
        ref_after = pref._summed_logps(policy, prompts, chosen, tok.pad_token_id)
    torch.testing.assert_close(ref_after, ref_before)


def test_train_dpo_asks_for_a_peft_model(tiny):
    pairs = pref.Pairs([[1]], [[2]], [[3]], [""], [""], np.ones(1), np.zeros(1))
    with pytest.raises(TypeError, match="add_lora"):
        pref.train_dpo(tiny[0], pairs, pref.DPOConfig(progress=False), 0)


# ---------------------------------------------------------------------------- diversity, inputs
def test_distinct_2_counts_unique_bigrams_over_all_texts():
    assert pref.distinct_n(["great great great", "great great"], 2) == pytest.approx(1 / 3)
    assert pref.distinct_n(["a b c", "c d"], 2) == 1.0
    assert pref.repeats_itself("so good so good so good") and not pref.repeats_itself("a b c d")


def test_review_openings_take_the_first_words():
    assert pref.review_openings(["One two  three four", "short"], 3) == ["One two three", "short"]
    with pytest.raises(ValueError, match="n_words=8"):
        pref.review_openings(["x"], 0)


def test_reward_model_must_have_two_labels():
    clf = SimpleNamespace(config=SimpleNamespace(num_labels=3))
    with pytest.raises(ValueError, match="load_or_finetune"):
        pref.positive_prob(clf, None, ["a"])


def test_chat_prompts_need_the_tokenizer():
    with pytest.raises(ValueError, match="tokenizer="):
        pref.prompt_texts(["a"], chat=True)


def test_paired_bootstrap_needs_the_same_openings():
    m = pref.per_sample([0.5], [np.zeros(1)], [np.zeros(1)])
    with pytest.raises(ValueError, match="same openings"):
        pref.paired_bootstrap(m, ["a b"], m, ["a b", "c d"])


# ---------------------------------------------------------------------------- exercise checks
def test_checks_pass_the_reference_and_catch_a_wrong_sign():
    assert pref.check_dpo_loss(pref.dpo_loss, quiet=True)
    wrong = pref.check_dpo_loss(lambda *a: -pref.dpo_loss(*a)[0], quiet=True)
    assert not wrong and "sign" in wrong.message
    assert not pref.check_dpo_loss(lambda *a: None, quiet=True)
    assert pref.check_distinct_n(pref.distinct_n, quiet=True)
    assert not pref.check_distinct_n(lambda t, n: 0.5, quiet=True)
