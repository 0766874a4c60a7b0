import json

import pytest

from bigmodel_lab import models


def test_default_model_falls_back_to_packaged_minilm(capsys):
    model, tokenizer, source = models.load_pretrained()
    assert source.origin == "packaged" and source.name == "all-MiniLM-L6-v2"
    assert "Hub not reachable" in capsys.readouterr().out
    assert model.config.num_labels == 2 and model.config.hidden_size == 384
    assert model.config.id2label == {0: "negative", 1: "positive"}
    out = model(**tokenizer(["a fine film"], return_tensors="pt"))
    assert out.logits.shape == (1, 2)


def test_unknown_model_offline_says_what_is_available():
    with pytest.raises(ValueError, match="Available offline: all-MiniLM-L6-v2"):
        models.load_pretrained("bert-large-cased")


def test_unknown_task_lists_tasks():
    with pytest.raises(ValueError, match="classification, base"):
        models.load_pretrained(task="translation")


def test_saved_folder_loads_as_local(tmp_path):
    model, tokenizer, _ = models.load_pretrained("all-MiniLM-L6-v2", task="base")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    again, _, source = models.load_pretrained(str(tmp_path), task="base")
    assert source.origin == "local"
    assert type(again).__name__ == "BertModel"


def test_checkpoint_from_another_model_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="'gpt2' checkpoint but a 'bert' model"):
        models.check_checkpoint(tmp_path, expected_model_type="bert")


def test_folder_without_config_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        models.check_checkpoint(tmp_path)


def test_embeddings_ignore_padding():
    model, tokenizer, _ = models.load_pretrained("all-MiniLM-L6-v2", task="base")
    alone = models.embed(model, tokenizer, ["short"])
    padded = models.embed(model, tokenizer, ["short", "a much longer sentence " * 5])
    assert abs(alone[0] - padded[0]).max() < 1e-4


def test_without_attention_dropout_keeps_hidden_dropout():
    model, _, _ = models.load_pretrained("all-MiniLM-L6-v2")
    assert models.without_attention_dropout(model) == model.config.num_hidden_layers
    assert model.config.attention_probs_dropout_prob == 0.0
    layer = model.bert.encoder.layer[0]
    assert layer.attention.self.dropout.p == 0.0
    assert layer.attention.output.dropout.p == model.config.hidden_dropout_prob > 0


# --- bad input names the fix ----------------------------------------------------------------


def test_three_label_classifier_predicts_saves_and_reloads(tmp_path):
    from bigmodel_lab import finetune

    model, tokenizer, _ = models.load_pretrained("all-MiniLM-L6-v2", num_labels=3)
    assert model.config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    probs = finetune.predict_proba(model, tokenizer, ["fine", "awful film"], max_length=16)
    assert probs.shape == (2, 3)
    finetune.save_finetuned(model, tokenizer, tmp_path / "three", {"n_labels": 3})
    again, _, source = models.load_pretrained(str(tmp_path / "three"))  # keeps its 3 labels
    assert source.origin == "local" and again.config.num_labels == 3
    assert again.config.id2label == model.config.id2label
    assert abs(finetune.predict_proba(again, tokenizer, ["fine", "awful film"], max_length=16)
               - probs).max() < 1e-5
    with pytest.raises(ValueError, match="Leave num_labels out"):
        models.load_pretrained(str(tmp_path / "three"), num_labels=2)


def test_empty_model_folder_says_it_is_empty_not_sentencepiece(tmp_path):
    with pytest.raises(FileNotFoundError, match="is empty: not a saved model.*save_pretrained"):
        models.load_pretrained(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="is empty"):
        models.load_causal_lm(str(tmp_path))


def test_half_saved_model_folder_says_what_is_missing(tmp_path):
    model, tokenizer, _ = models.load_pretrained("all-MiniLM-L6-v2", task="base")
    model.config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights.*save_pretrained"):
        models.load_pretrained(str(tmp_path))
    model.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"tokenizer.save_pretrained\(folder\)"):
        models.load_pretrained(str(tmp_path), task="base")


def test_truncated_weights_say_delete_and_save_again(tmp_path):
    model, tokenizer, _ = models.load_pretrained("all-MiniLM-L6-v2", task="base")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])
    with pytest.raises(ValueError, match="corrupt or truncated.*Delete the folder"):
        models.load_pretrained(str(tmp_path), task="base")


@pytest.mark.parametrize("kwargs, fix", [
    ({"name": 123}, "name must be a string"),
    ({"name": ["all-MiniLM-L6-v2"]}, "Load one at a time"),
    ({"num_labels": "3"}, "num_labels=3"),
    ({"task": ["base"]}, "task must be a string"),
])
def test_wrong_argument_types_say_what_to_pass(kwargs, fix):
    with pytest.raises(TypeError, match=fix):
        models.load_pretrained(**kwargs)


def test_max_length_above_the_models_positions_names_the_limit():
    model, tokenizer, _ = models.load_pretrained("all-MiniLM-L6-v2", task="base")
    with pytest.raises(ValueError, match="max_length=512 or less.*head\\+tail"):
        models.embed(model, tokenizer, ["a"], max_length=1024)


def test_load_causal_lm_without_mmap_asks_transformers_to_read_the_file(monkeypatch):
    from bigmodel_lab import models

    seen = {}

    def fake(loader, path, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    import transformers

    monkeypatch.setattr(models, "from_pretrained", fake)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: None)
    for mmap, expected in ((True, None), (False, True)):
        seen.clear()
        with pytest.raises(RuntimeError, match="stop here"):
            models.load_causal_lm(mmap=mmap)
        assert seen.get("disable_mmap") is expected
