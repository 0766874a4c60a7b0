"""Baselines a practitioner tries before a transformer: majority class, TF-IDF + logistic
regression, and an LSTM trained from scratch.

Each returns class probabilities of shape (N, 2), so the same metrics (bigmodel_lab.metrics)
score every model. The LSTM speaks the Hugging Face calling convention (`model(input_ids,
attention_mask, labels)` -> `.loss`, `.logits`; `model.config.num_labels`), so it trains with
the package's one loop (`bigmodel_lab.finetune.finetune` -> `train.fit`) and is scored by the
same `predict_proba` as the transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from .finetune import check_labels, check_texts


# ---------------------------------------------------------------------------- majority class
def majority(train_labels) -> DummyClassifier:
    """Always predict the most frequent training label: the floor any model must beat."""
    labels = check_labels(train_labels)
    return DummyClassifier(strategy="most_frequent").fit(np.zeros((len(labels), 1)), labels)


def majority_proba(model: DummyClassifier, texts) -> np.ndarray:
    return model.predict_proba(np.zeros((len(check_texts(texts)), 1)))


# ---------------------------------------------------------------------------- TF-IDF + LR
def tfidf_logreg(texts, labels, ngram_range=(1, 2), min_df: int = 2, C: float = 4.0,
                 max_features: int | None = 200_000) -> Pipeline:
    """Fit TF-IDF (word uni+bigrams, sublinear tf) + L2 logistic regression.

    tf-idf(t, d) = (1 + log tf(t, d)) * (log((1 + N) / (1 + df(t))) + 1), rows L2-normalised;
    the classifier is p(positive | d) = sigmoid(w . x_d + b)."""
    texts, labels = check_texts(texts), check_labels(labels)
    pipe = make_pipeline(
        TfidfVectorizer(ngram_range=ngram_range, min_df=min_df, sublinear_tf=True,
                        max_features=max_features, strip_accents="unicode"),
        LogisticRegression(C=C, max_iter=2000),
    )
    return pipe.fit(texts, labels)


def top_features(pipe: Pipeline, k: int = 10) -> dict[str, list[str]]:
    """The k n-grams with the most negative and most positive weights."""
    vec, clf = pipe.steps[0][1], pipe.steps[-1][1]
    names = np.asarray(vec.get_feature_names_out())
    order = np.argsort(clf.coef_[0])
    return {"negative": names[order[:k]].tolist(), "positive": names[order[-k:][::-1]].tolist()}


# ---------------------------------------------------------------------------- LSTM
@dataclass
class LSTMConfig:
    vocab_size: int
    embed_dim: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False  # True reads right padding first: predictions would depend on it
    dropout: float = 0.2
    num_labels: int = 2
    pad_token_id: int = 0


class LSTMClassifier(nn.Module):
    """Embedding -> LSTM -> masked mean + max pooling -> linear: a classic text classifier.

    Embeddings are learned from scratch (no pretraining): the gap to the fine-tuned transformer
    is the value of pretraining."""

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim,
                                  padding_idx=config.pad_token_id)
        self.lstm = nn.LSTM(config.embed_dim, config.hidden_size, config.num_layers,
                            batch_first=True, bidirectional=config.bidirectional,
                            dropout=config.dropout if config.num_layers > 1 else 0.0)
        width = config.hidden_size * (2 if config.bidirectional else 1)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * width, config.num_labels)

    def forward(self, input_ids, attention_mask=None, labels=None) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        x = self.dropout(self.embed(input_ids))  # (B, T, E)
        # No pack_padded_sequence: on CPU its training path is ~100x slower than the fused
        # kernel. A left-to-right LSTM never sees the right padding before a real token, and
        # the pooling ignores padded positions, so the output does not depend on padding.
        h, _ = self.lstm(x)  # (B, T, W)
        mask = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
        mean = (h * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, W)
        peak = h.masked_fill(mask == 0, float("-inf")).amax(1)  # (B, W)
        peak = torch.nan_to_num(peak, neginf=0.0)
        logits = self.head(self.dropout(torch.cat([mean, peak], dim=-1)))  # (B, num_labels)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def lstm_classifier(tokenizer, **overrides) -> LSTMClassifier:
    """An LSTM classifier over `tokenizer`'s vocabulary (the tokenizer only splits words)."""
    config = LSTMConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id or 0,
                        **overrides)
    return LSTMClassifier(config)
