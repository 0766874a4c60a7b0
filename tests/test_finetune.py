import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

import bigmodel_lab.finetune as ft
from bigmodel_lab.data import load_sentiment
from bigmodel_lab.models import packaged_model_path


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(packaged_model_path(), local_files_only=True)


def tiny_bert(tokenizer, seed=0, dropout=0.0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                        num_labels=2)
    return BertForSequenceClassification(config)


@pytest.fixture(scope="module")
def sentences():
    return load_sentiment("sst2", n_train=48, n_eval=24, offline=True)


def test_collate_pads_each_batch_to_its_longest_row():
    batch = ft.collate([{"input_ids": [1, 2, 3], "label": 1}, {"input_ids": [4], "label": 0}])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_length_grouping_visits_every_example_once_with_less_padding():
    lengths = np.random.default_rng(0).integers(1, 100, size=1000)
    torch.manual_seed(0)
    grouped = list(ft.LengthGroupedBatchSampler(lengths, 16, mega=10))
    plain = list(ft.LengthGroupedBatchSampler(lengths, 16, group_by_length=False))
    assert sorted(i for b in grouped for i in b) == list(range(1000))
    assert len(grouped) == len(ft.LengthGroupedBatchSampler(lengths, 16))

    def padding(batches):
        return sum(max(lengths[b]) * len(b) - lengths[b].sum() for b in batches)

    assert padding(grouped) < 0.2 * padding(plain)


def test_ddp_ranks_split_the_same_global_batches():
    lengths = np.arange(50) % 7 + 1
    torch.manual_seed(3)
    single = list(ft.LengthGroupedBatchSampler(lengths, 8))
    ranks = []
    for rank in range(2):
        torch.manual_seed(3)
        ranks.append(list(ft.LengthGroupedBatchSampler(lengths, 8, rank=rank, world_size=2)))
    assert len(ranks[0]) == len(ranks[1]) == len(ft.LengthGroupedBatchSampler(lengths, 8, world_size=2))
    for b, r0, r1 in zip(single, *ranks):
        assert sorted(r0 + r1) == sorted(b)


def test_global_batch_must_divide_over_processes():
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        ft.LengthGroupedBatchSampler([1, 2, 3], 5, world_size=2)


def test_non_text_values_say_how_to_fix(tokenizer):
    model = tiny_bert(tokenizer)
    with pytest.raises(TypeError, match=r"position 1 is float .*str\(t\)"):
        ft.predict_proba(model, tokenizer, ["fine", float("nan")])
    with pytest.raises(TypeError, match=r"\[text\]"):
        ft.predict_proba(model, tokenizer, "a single string")


def test_labels_outside_zero_one_say_how_to_fix(tokenizer, sentences):
    bad = sentences["test"].cast_column("label", sentences["test"].features["label"].__class__(
        names=["a", "b", "c"])).map(lambda r, i: {"label": 2 if i == 0 else r["label"]},
                                    with_indices=True)
    with pytest.raises(ValueError, match="0 \\(negative\\) or 1 \\(positive\\).*Map them"):
        ft.evaluate(tiny_bert(tokenizer), tokenizer, bad)


def test_empty_and_very_long_texts_are_classified(tokenizer):
    model = tiny_bert(tokenizer)
    texts = ["", "a fine film", "boring " * 5000]
    for strategy in ("head", "head+tail", "chunk"):
        probs = ft.predict_proba(model, tokenizer, texts, max_length=32, strategy=strategy)
        assert probs.shape == (3, 2)
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_batched_predictions_equal_one_at_a_time(tokenizer, sentences):
    model = tiny_bert(tokenizer)
    texts = sentences["test"]["text"][:10]
    together = ft.predict_proba(model, tokenizer, texts, max_length=32, batch_size=4)
    alone = np.concatenate([ft.predict_proba(model, tokenizer, [t], max_length=32) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_chunk_average_equals_head_for_short_texts(tokenizer):
    model = tiny_bert(tokenizer)
    texts = ["short and sweet", "not good at all"]
    np.testing.assert_allclose(
        ft.predict_proba(model, tokenizer, texts, max_length=32, strategy="chunk"),
        ft.predict_proba(model, tokenizer, texts, max_length=32, strategy="head"), atol=1e-6)


def test_finetune_learns_the_training_sentences(tokenizer, sentences):
    model = tiny_bert(tokenizer)
    config = ft.finetune_config(epochs=15, lr=3e-3, progress=False)
    history = ft.finetune(model, tokenizer, sentences, config, max_length=32, batch_size=16,
                          eval_split=None)
    assert history.train[0]["loss"] > history.train[-1]["loss"]
    train_acc = ft.evaluate(model, tokenizer, sentences["train"], max_length=32)["accuracy"]
    assert train_acc > 0.9


def test_interrupted_finetune_resumes_to_the_same_weights(tokenizer, sentences, tmp_path,
                                                          monkeypatch):
    def run(folder, interrupt_at=None):
        model = tiny_bert(tokenizer, dropout=0.1)
        calls = {"n": 0}
        real = ft.collate

        def flaky(rows, pad_id=0):
            calls["n"] += 1
            if calls["n"] == interrupt_at:
                raise KeyboardInterrupt
            return real(rows, pad_id)

        monkeypatch.setattr(ft, "collate", flaky)
        config = ft.finetune_config(epochs=2, lr=1e-3, progress=False, save_every=1,
                                    checkpoint_dir=str(folder))
        history = ft.finetune(model, tokenizer, sentences, config, max_length=32, batch_size=16,
                              eval_split=None)
        monkeypatch.setattr(ft, "collate", real)
        return model, history

    reference, _ = run(tmp_path / "straight")
    _, first = run(tmp_path / "crashed", interrupt_at=5)
    assert first.interrupted and (tmp_path / "crashed" / "last.safetensors").exists()
    resumed, second = run(tmp_path / "crashed")
    assert second.resumed_from_step == first.steps
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_save_is_atomic_and_replaces_the_old_checkpoint(tokenizer, tmp_path):
    folder = tmp_path / "sst2-tiny"
    ft.save_finetuned(tiny_bert(tokenizer, seed=0), tokenizer, folder, {"profile": "cpu"})
    ft.save_finetuned(tiny_bert(tokenizer, seed=1), tokenizer, folder, {"profile": "gpu"})
    assert ft.read_info(folder)["profile"] == "gpu"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sst2-tiny"]  # no temp leftovers


def test_checkpoint_of_another_architecture_is_not_reused(tokenizer, tmp_path):
    from bigmodel_lab.models import resolve_model

    folder = tmp_path / "sst2-x"
    ft.save_finetuned(tiny_bert(tokenizer), tokenizer, folder, {"profile": "cpu"})
    ok, why = ft.reusable(folder, resolve_model("minilm"), "distilbert", "cpu")
    assert not ok and "distilbert" in why
    ok, why = ft.reusable(folder, resolve_model("minilm"), "bert", "cpu")
    assert ok


def test_load_or_finetune_makes_then_loads_a_checkpoint(tokenizer, tmp_path, monkeypatch):
    from bigmodel_lab import setup

    base = tmp_path / "tiny-bert"
    tiny_bert(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    monkeypatch.setattr(ft, "CHECKPOINTS", tmp_path / "checkpoints")
    cfg = setup("06", profile="smoke", quiet=True)
    model, tok, info = ft.load_or_finetune(cfg, "sst2", str(base))
    assert info["action"] == "fine-tuned" and 0.0 <= info["test_accuracy"] <= 1.0
    # The quick stand-in has a folder of its own: never 06's folder.
    quick = tmp_path / "checkpoints" / "sst2-tiny-bert-quick-smoke"
    assert (quick / "info.json").exists()
    assert not (tmp_path / "checkpoints" / "sst2-tiny-bert").exists()
    assert ft.read_info(quick)["origin"] == "finetune.load_or_finetune in notebook 06"
    again, _, info2 = ft.load_or_finetune(cfg, "sst2", str(base))
    assert info2["action"] == "loaded" and info2["test_accuracy"] == info["test_accuracy"]
    texts = ["", "wonderful"]
    np.testing.assert_allclose(ft.predict_proba(again, tok, texts, max_length=32),
                               ft.predict_proba(model, tok, texts, max_length=32), atol=1e-5)
    cpu = setup("06", profile="cpu", quiet=True)  # a smoke checkpoint is not for cpu
    assert not ft.reusable(quick, info2["base_model"], "bert", cpu.profile)[0]


def test_a_smoke_run_never_picks_up_a_cpu_checkpoint(tokenizer, tmp_path, monkeypatch, capsys):

    monkeypatch.setattr(ft, "CHECKPOINTS", tmp_path)
    folder = tmp_path / "sst2-tiny-bert"
    ft.save_finetuned(tiny_bert(tokenizer), tokenizer, folder,
                      {"profile": "cpu", "base_model": "tiny-bert", "origin": "notebook 06"})
    ok, why = ft.reusable(folder, "tiny-bert", "bert", "smoke")
    assert not ok and "cpu profile" in why
    assert not ft.reusable(folder, "tiny-bert", "bert", "gpu")[0]  # nor the other way round
    assert ft.reusable(folder, "tiny-bert", "bert", "cpu")[0]


def test_later_notebooks_prefer_06s_model_and_say_when_they_get_a_quick_one(
        tokenizer, tmp_path, monkeypatch, capsys):
    from bigmodel_lab import setup

    base = tmp_path / "tiny-bert"
    tiny_bert(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    monkeypatch.setattr(ft, "CHECKPOINTS", tmp_path / "checkpoints")
    twelve = setup("12", profile="smoke", quiet=True)
    ft.load_or_finetune(twelve, "sst2", str(base))  # 12 run first: makes a quick one
    capsys.readouterr()
    eight = setup("08", profile="smoke", quiet=True)
    _, _, info = ft.load_or_finetune(eight, "sst2", str(base))
    said = capsys.readouterr().out
    assert info["kind"] == "quick" and "notebook 12" in info["origin"]
    assert "quick stand-in made by finetune.load_or_finetune in notebook 12" in said
    assert "Not notebook 06's model" in said and "run 06 in the smoke profile" in said
    # Once 06 has saved its model (same profile), 08 loads that one, and says so.
    six = setup("06", profile="smoke", quiet=True)
    ft.save_finetuned(tiny_bert(tokenizer, seed=1), tokenizer, ft.checkpoint_dir("sst2", "tiny-bert"),
                      {"profile": six.profile, "base_model": "tiny-bert", "epochs": 2,
                       "n_train": 100})
    capsys.readouterr()
    eight = setup("08", profile="smoke", quiet=True)
    _, _, info = ft.load_or_finetune(eight, "sst2", str(base))
    assert info["kind"] == "full" and info["origin"] == "notebook 06"
    assert "the fine-tuned classifier made by notebook 06 in the smoke profile" in \
        capsys.readouterr().out


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs, not even except/finally cleanup in the code
    under test (which only cleans up after an Exception)."""


def save_steps(monkeypatch, crash_at):
    """Make the crash_at-th filesystem step of save_finetuned (runtime.replace_folder) raise Killed."""
    from bigmodel_lab import runtime

    calls = {"n": 0}
    real_replace, real_rmtree = runtime.os.replace, runtime.shutil.rmtree

    def step(real):
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise Killed
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(runtime.os, "replace", step(real_replace))
    monkeypatch.setattr(runtime.shutil, "rmtree", step(real_rmtree))
    return calls


@pytest.mark.parametrize("crash_at", [1, 2, 3])  # rename old aside, rename new in, delete old
def test_save_killed_at_any_step_keeps_a_checkpoint_and_leaves_no_hidden_folder(
        tokenizer, tmp_path, monkeypatch, crash_at):
    folder = tmp_path / "sst2-tiny"
    ft.save_finetuned(tiny_bert(tokenizer, seed=0), tokenizer, folder, {"profile": "cpu"})
    with monkeypatch.context() as m:
        save_steps(m, crash_at)
        with pytest.raises(Killed):
            ft.save_finetuned(tiny_bert(tokenizer, seed=1), tokenizer, folder, {"profile": "gpu"})
    # Right after the crash, the old or the new checkpoint is on disk in full ...
    on_disk = [p for p in (folder, tmp_path / ".sst2-tiny.old", tmp_path / ".sst2-tiny.new")
               if (p / "info.json").exists() and (p / "model.safetensors").exists()]
    assert on_disk
    # ... and the next call (here: the reader's recovery) puts one in place, hidden ones gone.
    ft.recover_interrupted_save(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sst2-tiny"]
    assert ft.read_info(folder)["profile"] in ("cpu", "gpu")
    assert ft.read_info(folder)["profile"] == ("cpu" if crash_at == 1 else "gpu")
    BertForSequenceClassification.from_pretrained(folder)  # loads


def test_save_killed_while_writing_keeps_the_old_checkpoint(tokenizer, tmp_path, monkeypatch):
    folder = tmp_path / "sst2-tiny"
    ft.save_finetuned(tiny_bert(tokenizer, seed=0), tokenizer, folder, {"profile": "cpu"})
    model = tiny_bert(tokenizer, seed=1)
    monkeypatch.setattr(type(tokenizer), "save_pretrained",
                        lambda *a, **k: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        ft.save_finetuned(model, tokenizer, folder, {"profile": "gpu"})
    monkeypatch.undo()
    assert ft.read_info(folder)["profile"] == "cpu"  # untouched by the half-written copy
    ft.save_finetuned(model, tokenizer, folder, {"profile": "gpu"})  # the next call cleans up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sst2-tiny"]
    assert ft.read_info(folder)["profile"] == "gpu"


def test_saved_checkpoint_records_profile_and_origin(tokenizer, tmp_path):
    from bigmodel_lab import setup

    setup("06", profile="smoke", quiet=True)
    folder = ft.save_finetuned(tiny_bert(tokenizer), tokenizer, tmp_path / "x", {"n_train": 3})
    info = ft.read_info(folder)
    assert info["profile"] == "smoke" and info["origin"] == "notebook 06" and info["saved_at"]


def test_gradient_accumulation_takes_the_same_steps_as_the_full_batch(tokenizer, sentences):
    def run(accum):
        model = tiny_bert(tokenizer)
        config = ft.finetune_config(epochs=1, lr=1e-3, progress=False, grad_accum_steps=accum,
                                    max_grad_norm=None)
        ft.finetune(model, tokenizer, sentences, config, max_length=32, batch_size=16,
                    group_by_length=False, eval_split=None)
        return model

    full, accumulated = run(1), run(4)
    for a, b in zip(full.parameters(), accumulated.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert ft.steps_per_epoch(48, 16, 4) == 3


# --- bad input names the fix ----------------------------------------------------------------


def test_max_length_above_the_models_limit_names_the_limit_and_the_strategies(tokenizer,
                                                                              sentences):
    model = tiny_bert(tokenizer)  # 128 positions
    with pytest.raises(ValueError, match="max_length=128 or less.*strategy='head\\+tail'"):
        ft.predict_proba(model, tokenizer, ["a"], max_length=512)
    with pytest.raises(ValueError, match="max_length=128 or less"):
        ft.finetune(model, tokenizer, sentences, ft.finetune_config(progress=False),
                    max_length=129)
    with pytest.raises(TypeError, match="max_length=64"):
        ft.evaluate(model, tokenizer, sentences["test"], max_length="64")


def test_empty_training_split_and_missing_validation_split_name_the_fix(tokenizer, sentences):
    import datasets

    model = tiny_bert(tokenizer)
    config = ft.finetune_config(progress=False)
    empty = datasets.DatasetDict(train=sentences["train"].select([]),
                                 validation=sentences["validation"])
    with pytest.raises(ValueError, match="training split is empty.*larger n_train"):
        ft.finetune(model, tokenizer, empty, config, max_length=32)
    no_validation = datasets.DatasetDict(train=sentences["train"], test=sentences["test"])
    with pytest.raises(ValueError, match="No 'validation' split.*eval_split=None.*train_test_split"):
        ft.finetune(model, tokenizer, no_validation, config, max_length=32)
    with pytest.raises(ValueError, match="needs a DatasetDict with a 'train' split"):
        ft.finetune(model, tokenizer, sentences["train"], config, max_length=32)
    with pytest.raises(TypeError, match=r"one datasets.Dataset split \(e.g. dsd\['test'\]\)"):
        ft.evaluate(model, tokenizer, sentences, max_length=32)


def test_corrupt_fine_tuned_checkpoint_says_delete_it(tokenizer, tmp_path, monkeypatch):
    from bigmodel_lab import setup

    base = tmp_path / "tiny-bert"
    tiny_bert(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    monkeypatch.setattr(ft, "CHECKPOINTS", tmp_path / "checkpoints")
    cfg = setup("08", profile="smoke", quiet=True)
    folder = ft.save_finetuned(tiny_bert(tokenizer), tokenizer, ft.checkpoint_dir("sst2", "tiny-bert"),
                               {"profile": "smoke", "base_model": "tiny-bert"})
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt or truncated.*Delete the folder"):
        ft.load_or_finetune(cfg, "sst2", str(base))
