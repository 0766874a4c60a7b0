import json
import math
import signal

import pytest
import torch
from safetensors import safe_open
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.utils.data import DataLoader

from bigmodel_lab.train import (
    TrainConfig,
    evaluate_loss,
    fit,
    load_checkpoint,
    load_weights,
    lr_multiplier,
)
from bigmodel_lab.transformer import GPT, EncoderForSequenceClassification, TransformerConfig

TINY = dict(vocab_size=32, context_length=8, num_layers=1, num_heads=2, hidden_size=8,
            dropout=0.1, attention_dropout=0.1)


def lm_data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 32, (n, 8), generator=g)
    return [{"input_ids": x, "labels": x} for x in ids]


def new_gpt():
    torch.manual_seed(0)
    return GPT(TransformerConfig(**TINY))


def run(tmp, loss_fn=None, **overrides):
    loader = DataLoader(lm_data(), batch_size=4, shuffle=True)
    config = TrainConfig(epochs=3, lr=1e-2, grad_accum_steps=2, warmup_steps=2, save_every=2,
                         checkpoint_dir=str(tmp), progress=False, log_every=1, **overrides)
    model = new_gpt()
    kwargs = {"loss_fn": loss_fn} if loss_fn else {}
    return model, fit(model, loader, config, **kwargs)


def failing_loss(after, error):
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        if calls["n"] > after:
            raise error
        return model(**batch).loss

    return loss_fn


def assert_same_weights(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_run(tmp_path):
    reference, hist = run(tmp_path / "ref")
    assert hist.steps == 9  # 6 batches / 2 accumulation = 3 steps per epoch
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "crash", loss_fn=failing_loss(11, RuntimeError("killed")))
    resumed, hist = run(tmp_path / "crash")
    assert hist.resumed_from_step == 4  # the last checkpoint before the crash
    assert_same_weights(reference, resumed)


def test_ctrl_c_keeps_a_checkpoint_and_resumes_exactly(tmp_path):
    reference, _ = run(tmp_path / "ref")
    _, hist = run(tmp_path / "ctrlc", loss_fn=failing_loss(7, KeyboardInterrupt()))
    assert hist.interrupted and hist.steps == 3
    resumed, hist = run(tmp_path / "ctrlc")
    assert hist.resumed_from_step == 3
    assert_same_weights(reference, resumed)


def test_checkpoint_is_safetensors_and_written_atomically(tmp_path):
    run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]
    with safe_open(str(tmp_path / "last.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert any(k.startswith("model.") for k in keys) and any(k.startswith("optim.") for k in keys)
    assert "model.lm_head.weight" not in keys  # tied to the embeddings: stored once
    with safe_open(str(tmp_path / "last.safetensors"), "pt") as f:
        assert set(json.loads(f.metadata()["provenance"])) == {"profile", "origin"}


def test_warmup_then_cosine_decay_to_the_floor():
    lrs = [lr_multiplier(s, 100, 10, "cosine", 0.1) for s in range(101)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1.0
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert math.isclose(lrs[100], 0.1)


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    # The gradients the optimizer sees are compared, without clipping: AdamW's first step is
    # scale-free (about lr * sign(g)), so weights alone would miss a wrong 1/accum factor, and a
    # parameter whose gradient is near AdamW's eps turns summation-order rounding (1e-12) into
    # a visible weight difference (1.4e-6 on an AVX2 CPU).
    cfg = dict(max_steps=1, lr=1e-2, warmup_steps=0, schedule="constant", progress=False,
               max_grad_norm=None)
    tiny = {**TINY, "dropout": 0.0, "attention_dropout": 0.0}
    models, grads = [], []

    def record(optimizer, args, kwargs):
        grads.append([p.grad.clone() for group in optimizer.param_groups for p in group["params"]
                      if p.grad is not None])

    handle = register_optimizer_step_pre_hook(record)
    try:
        for batch_size, accum in ((8, 1), (4, 2)):
            torch.manual_seed(0)
            model = GPT(TransformerConfig(**tiny))
            loader = DataLoader(lm_data(8), batch_size=batch_size)
            fit(model, loader, TrainConfig(grad_accum_steps=accum, **cfg))
            models.append(model)
    finally:
        handle.remove()
    assert len(grads) == 2 and len(grads[0]) == len(grads[1])
    for g_big, g_accum in zip(*grads):
        torch.testing.assert_close(g_accum, g_big, atol=1e-7, rtol=1e-5)
    for x, y in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)


def test_classifier_fine_tuning_keeps_best_and_stops_early(tmp_path):
    torch.manual_seed(0)
    cfg = TransformerConfig(**{**TINY, "norm_position": "post"})
    model = EncoderForSequenceClassification(cfg, num_labels=2)
    data = [{"input_ids": torch.randint(0, 32, (8,)), "attention_mask": torch.ones(8, dtype=torch.long),
             "labels": torch.tensor(i % 2)} for i in range(32)]
    scores = iter([0.5, 0.9, 0.6, 0.7, 0.8, 0.95])

    def accuracy(m):
        return {"accuracy": next(scores)}

    config = TrainConfig(epochs=10, eval_every=2, metric="accuracy", greater_is_better=True,
                         early_stopping_patience=2, checkpoint_dir=str(tmp_path), progress=False)
    hist = fit(model, DataLoader(data, batch_size=4), config, eval_fn=accuracy)
    assert hist.stopped_early and hist.steps == 8
    assert hist.best_step == 4 and hist.best_metric == 0.9
    assert load_weights(model, tmp_path / "best.safetensors")["step"] == 4
    assert hist.examples_per_s > 0 and hist.peak_memory_mb > 0


def test_wrong_metric_name_says_which_keys_exist():
    model = new_gpt()
    config = TrainConfig(max_steps=1, eval_every=1, metric="accuracy", progress=False)
    with pytest.raises(KeyError, match="set metric="):
        fit(model, DataLoader(lm_data(4), batch_size=4), config, eval_loader=DataLoader(lm_data(4)))


def test_resuming_with_other_settings_is_refused_with_the_difference(tmp_path):
    run(tmp_path)
    with pytest.raises(ValueError, match="lr: 0.01 -> 0.02"):
        fit(new_gpt(), DataLoader(lm_data(), batch_size=4),
            TrainConfig(epochs=3, lr=2e-2, grad_accum_steps=2, warmup_steps=2, save_every=2,
                        checkpoint_dir=str(tmp_path), progress=False, log_every=1))


# --- interruptions: Ctrl-C anywhere, including during an evaluation ---------------------------


def eval_run(tmp, eval_fn=None, loss_fn=None, **overrides):
    """9 steps, evaluation every 2 (loss on 8 held-out random rows, which rises as the model
    memorises the training rows), so patience 2 stops at step 6 with the best at step 2: the
    best-model and early-stopping bookkeeping are both exercised."""
    held_out = DataLoader(lm_data(8, seed=1), batch_size=4)
    config = dict(epochs=3, lr=1e-2, grad_accum_steps=2, warmup_steps=2, eval_every=2,
                  early_stopping_patience=2, log_every=3,
                  checkpoint_dir=str(tmp), progress=False)
    model = new_gpt()
    kwargs = {"loss_fn": loss_fn} if loss_fn else {}
    hist = fit(model, DataLoader(lm_data(), batch_size=4, shuffle=True),
               TrainConfig(**{**config, **overrides}), eval_loader=held_out,
               eval_fn=eval_fn, **kwargs)
    return model, hist


def interrupted_eval(at_call, loader):
    calls = {"n": 0}

    def eval_fn(model):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return evaluate_loss(model, loader)

    return eval_fn


def assert_same_run(reference, ref_hist, resumed, hist):
    assert_same_weights(reference, resumed)
    assert hist.train == ref_hist.train  # the same training curve, window averages included
    assert hist.eval == ref_hist.eval
    assert (hist.steps, hist.best_step, hist.best_metric, hist.stopped_early) == (
        ref_hist.steps, ref_hist.best_step, ref_hist.best_metric, ref_hist.stopped_early)


@pytest.mark.parametrize("at_call", [2, 3])
def test_ctrl_c_during_an_evaluation_redoes_it_and_ends_as_the_uninterrupted_run(tmp_path,
                                                                                 at_call):
    reference, ref_hist = eval_run(tmp_path / "ref")
    assert ref_hist.stopped_early and ref_hist.best_step == 2 and ref_hist.steps == 6
    held_out = DataLoader(lm_data(8, seed=1), batch_size=4)
    _, hist = eval_run(tmp_path / "cut", eval_fn=interrupted_eval(at_call, held_out))
    assert hist.interrupted and len(hist.eval) == at_call - 1
    resumed, hist = eval_run(tmp_path / "cut")
    assert hist.resumed_from_step == 2 * at_call
    assert_same_run(reference, ref_hist, resumed, hist)


def test_ctrl_c_during_the_final_evaluation_is_redone_on_resume(tmp_path):
    reference, ref_hist = eval_run(tmp_path / "ref", eval_every=None)
    held_out = DataLoader(lm_data(8, seed=1), batch_size=4)
    _, hist = eval_run(tmp_path / "cut", eval_every=None, eval_fn=interrupted_eval(1, held_out))
    assert hist.interrupted and hist.steps == 9 and hist.eval == []
    resumed, hist = eval_run(tmp_path / "cut", eval_every=None)
    assert len(hist.eval) == 1
    assert_same_run(reference, ref_hist, resumed, hist)


def test_ctrl_c_inside_the_optimizer_step_waits_until_the_step_is_counted(tmp_path):
    """SIGINT delivered while AdamW updates the weights: without holding it, the weights of
    step 5 would be saved as step 4 and the resumed run would take step 5 twice."""
    reference, ref_hist = eval_run(tmp_path / "ref", early_stopping_patience=None)
    steps = {"n": 0}

    def send_sigint(optimizer, args, kwargs):
        steps["n"] += 1
        if steps["n"] == 5:
            # raise_signal delivers to this (the main) thread before it returns. os.kill(getpid())
            # lets the kernel pick any thread: with the threads earlier tests leave running, the
            # handler could run a few bytecodes later, after the held block had ended.
            signal.raise_signal(signal.SIGINT)

    handle = register_optimizer_step_post_hook(send_sigint)
    # Ctrl-C as Python sets it up, whatever handler an earlier test or library left behind.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _, hist = eval_run(tmp_path / "cut", early_stopping_patience=None)
    finally:
        handle.remove()
        signal.signal(signal.SIGINT, previous)
    assert hist.interrupted and hist.steps == 5
    resumed, hist = eval_run(tmp_path / "cut", early_stopping_patience=None)
    assert hist.resumed_from_step == 5
    assert_same_run(reference, ref_hist, resumed, hist)


def test_ctrl_c_mid_log_window_keeps_the_training_curve(tmp_path):
    # Interrupted in the 2nd micro-batch of step 5 (loss calls: 2 per step, 2 per evaluation;
    # log rows every 3 steps): the partial average of step 4 travels in the checkpoint, so
    # the row at step 6 is the one an uninterrupted run logs.
    reference, ref_hist = eval_run(tmp_path / "ref", early_stopping_patience=None)
    _, hist = eval_run(tmp_path / "cut", early_stopping_patience=None,
                       loss_fn=failing_loss(13, KeyboardInterrupt()))
    assert hist.interrupted and hist.steps == 4
    resumed, hist = eval_run(tmp_path / "cut", early_stopping_patience=None)
    assert_same_run(reference, ref_hist, resumed, hist)


# --- refused resumes change nothing; unreadable files say what to do ------------------------


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_refused_resume_leaves_the_callers_model_exactly_as_it_was(tmp_path):
    run(tmp_path)
    model = new_gpt()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="resume=False"):
        fit(model, DataLoader(lm_data(), batch_size=4),
            TrainConfig(epochs=3, lr=2e-2, grad_accum_steps=2, warmup_steps=2, save_every=2,
                        checkpoint_dir=str(tmp_path), progress=False, log_every=1))
    assert same_state(before, model.state_dict())


def test_checkpoint_of_another_architecture_is_refused_before_any_copy(tmp_path):
    run(tmp_path)
    torch.manual_seed(0)
    wider = GPT(TransformerConfig(**{**TINY, "hidden_size": 16}))
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(ValueError, match="another architecture.*resume=False"):
        fit(wider, DataLoader(lm_data(), batch_size=4),
            TrainConfig(epochs=3, lr=1e-2, grad_accum_steps=2, warmup_steps=2, save_every=2,
                        checkpoint_dir=str(tmp_path), progress=False, log_every=1))
    assert same_state(before, wider.state_dict())
    # The same through load_checkpoint, with an optimizer that has taken a step already.
    optimizer = torch.optim.AdamW(wider.parameters(), lr=1e-3)
    wider(**lm_data(2)[0] | {"input_ids": lm_data(2)[0]["input_ids"][None],
                            "labels": lm_data(2)[0]["labels"][None]}).loss.backward()
    optimizer.step()
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    opt_before = [v.clone() for s in optimizer.state.values() for v in s.values()]
    with pytest.raises(ValueError, match="model was left unchanged"):
        load_checkpoint(tmp_path / "last.safetensors", wider, optimizer)
    assert same_state(before, wider.state_dict())
    assert all(torch.equal(a, b) for a, b in
               zip(opt_before, [v for s in optimizer.state.values() for v in s.values()]))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_or_truncated_checkpoint_says_delete_it_or_resume_false(tmp_path, damage):
    run(tmp_path)
    path = tmp_path / "last.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not a file" * 9,
                      "empty": b""}[damage])
    model = new_gpt()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"corrupt or truncated.*Delete it, or pass "
                                         r"TrainConfig\(resume=False\)"):
        fit(model, DataLoader(lm_data(), batch_size=4),
            TrainConfig(epochs=3, lr=1e-2, grad_accum_steps=2, warmup_steps=2, save_every=2,
                        checkpoint_dir=str(tmp_path), progress=False, log_every=1))
    assert same_state(before, model.state_dict())
    with pytest.raises(ValueError, match="Delete it"):
        load_weights(model, path)


def test_resume_false_starts_over_on_a_corrupt_checkpoint(tmp_path):
    run(tmp_path)
    (tmp_path / "last.safetensors").write_bytes(b"broken")
    _, hist = run(tmp_path, resume=False)
    assert hist.resumed_from_step is None and hist.steps == 9


def test_empty_training_loader_names_the_fix():
    with pytest.raises(ValueError, match="larger n_train"):
        fit(new_gpt(), DataLoader([], batch_size=4), TrainConfig(progress=False))
