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
