import math

import pytest
import torch
from safetensors import safe_open
from torch.utils.data import DataLoader

from bigmodel_lab.train import TrainConfig, fit, load_weights, lr_multiplier
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


def test_warmup_then_cosine_decay_to_the_floor():
    lrs = [lr_multiplier(s, 100, 10, "cosine", 0.1) for s in range(101)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1.0
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert math.isclose(lrs[100], 0.1)


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    cfg = dict(max_steps=1, lr=1e-2, warmup_steps=0, schedule="constant", progress=False)
    tiny = {**TINY, "dropout": 0.0, "attention_dropout": 0.0}
    models = []
    for batch_size, accum in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = GPT(TransformerConfig(**tiny))
        loader = DataLoader(lm_data(8), batch_size=batch_size)
        fit(model, loader, TrainConfig(grad_accum_steps=accum, **cfg))
        models.append(model)
    for x, y in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)


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
