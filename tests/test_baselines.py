import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from bigmodel_lab import baselines, finetune
from bigmodel_lab.data import load_sentiment
from bigmodel_lab.metrics import classification_report
from bigmodel_lab.models import packaged_model_path


@pytest.fixture(scope="module")
def reviews():
    return load_sentiment("imdb", n_train=400, n_eval=100, offline=True)


def test_majority_predicts_the_most_frequent_training_label():
    model = baselines.majority([1, 1, 0])
    assert baselines.majority_proba(model, ["a", "b"]).argmax(1).tolist() == [1, 1]


def test_tfidf_logreg_beats_the_majority_class_on_real_reviews(reviews):
    pipe = baselines.tfidf_logreg(reviews["train"]["text"], reviews["train"]["label"], min_df=1)
    acc = classification_report(pipe.predict_proba(list(reviews["test"]["text"])),
                                reviews["test"]["label"])["accuracy"]
    assert acc > 0.65
    top = baselines.top_features(pipe, k=5)
    assert len(top["negative"]) == len(top["positive"]) == 5


def test_baselines_reject_labels_outside_zero_one():
    with pytest.raises(ValueError, match="Map them first"):
        baselines.tfidf_logreg(["good", "bad"], [1, 5])


def test_lstm_output_does_not_depend_on_padding():
    tokenizer = AutoTokenizer.from_pretrained(packaged_model_path(), local_files_only=True)
    torch.manual_seed(0)
    model = baselines.lstm_classifier(tokenizer).eval()
    texts = ["a fine film", "one of the worst films i have ever sat through, truly"]
    together = finetune.predict_proba(model, tokenizer, texts, max_length=32)
    alone = np.concatenate([finetune.predict_proba(model, tokenizer, [t], 32) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_lstm_trains_with_the_book_loop(reviews):
    tokenizer = AutoTokenizer.from_pretrained(packaged_model_path(), local_files_only=True)
    torch.manual_seed(0)
    model = baselines.lstm_classifier(tokenizer, embed_dim=16, hidden_size=16)
    config = finetune.finetune_config(epochs=8, lr=1e-2, progress=False)
    small = load_sentiment("sst2", n_train=32, n_eval=8, offline=True)
    history = finetune.finetune(model, tokenizer, small, config, max_length=24, batch_size=16,
                                eval_split=None)
    assert history.train[-1]["loss"] < history.train[0]["loss"]
