"""Evaluation beyond accuracy: F1, confusion matrix, calibration and the most confident mistakes.

A classifier outputs probabilities p(y | x). Accuracy asks whether argmax p is right; calibration
asks whether a confidence of 0.9 is right 90% of the time. The expected calibration error bins
the predictions by confidence c = max_y p(y | x) into M equal-width bins B_m and averages the
gap between accuracy and confidence, weighted by bin size:

    ECE = sum_m |B_m| / N * | acc(B_m) - conf(B_m) |

(Guo et al. 2017, On Calibration of Modern Neural Networks.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


def check_probs(probs, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate (N, C) probabilities and optional (N,) integer labels; return numpy arrays."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(
            f"probs must have shape (N, num_classes), got {probs.shape}. "
            "For a binary classifier pass both columns, e.g. np.stack([1 - p, p], axis=1)."
        )
    if labels is None:
        return probs, None
    labels = np.asarray(labels if isinstance(labels, np.ndarray) else list(labels))
    if labels.shape != (len(probs),):
        raise ValueError(f"labels must have shape ({len(probs)},), got {labels.shape}.")
    bad = sorted(set(np.unique(labels).tolist()) - set(range(probs.shape[1])))
    if bad:
        raise ValueError(
            f"labels must be integers in 0..{probs.shape[1] - 1}; found {bad[:5]}. "
            "Map them first, e.g. label = 1 for positive, 0 for negative."
        )
    return probs, labels.astype(int)


def classification_report(probs, labels) -> dict[str, float]:
    """Accuracy and F1 of the positive class (macro F1 when there are more classes)."""
    probs, labels = check_probs(probs, labels)
    preds = probs.argmax(axis=1)
    average = "binary" if probs.shape[1] == 2 else "macro"
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1": float(f1_score(labels, preds, average=average, zero_division=0)),
    }


def confusion(probs, labels, names=("negative", "positive")) -> pd.DataFrame:
    """Confusion matrix as a labelled table: rows are true classes, columns predicted."""
    probs, labels = check_probs(probs, labels)
    matrix = confusion_matrix(labels, probs.argmax(axis=1), labels=list(range(probs.shape[1])))
    names = list(names)[: probs.shape[1]]
    return pd.DataFrame(
        matrix, index=[f"true {n}" for n in names], columns=[f"pred {n}" for n in names]
    )


@dataclass(frozen=True)
class Reliability:
    """Per-bin data of a reliability diagram, and the expected calibration error."""

    edges: np.ndarray  # (M + 1,) bin edges in confidence
    confidence: np.ndarray  # (M,) mean confidence per bin (nan if empty)
    accuracy: np.ndarray  # (M,) accuracy per bin (nan if empty)
    count: np.ndarray  # (M,) predictions per bin
    ece: float


def reliability(probs, labels, n_bins: int = 10) -> Reliability:
    """Bin predictions by confidence; return per-bin accuracy/confidence and the ECE."""
    probs, labels = check_probs(probs, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are (lo, hi]; a confidence of exactly 0 goes to the first bin.
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        mean_acc = np.bincount(which, weights=correct, minlength=n_bins) / count
    gaps = np.where(count > 0, np.abs(mean_acc - mean_conf), 0.0)
    ece = float((count / max(len(conf), 1) * gaps).sum())
    return Reliability(edges, mean_conf, mean_acc, count, ece)


def expected_calibration_error(probs, labels, n_bins: int = 10) -> float:
    """ECE with `n_bins` equal-width confidence bins (0 = perfectly calibrated)."""
    return reliability(probs, labels, n_bins).ece


def plot_reliability(rel: Reliability, ax=None, title: str | None = None):
    """Reliability diagram: accuracy per confidence bin against the diagonal."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(4.5, 4))[1]
    centers = (rel.edges[:-1] + rel.edges[1:]) / 2
    width = rel.edges[1] - rel.edges[0]
    filled = rel.count > 0
    ax.bar(centers[filled], rel.accuracy[filled], width=width * 0.9, alpha=0.8,
           label="accuracy in bin")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlabel("confidence (max predicted probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title(title or f"Reliability diagram, ECE = {rel.ece:.3f}")
    return ax


def most_confident_mistakes(texts, probs, labels, k: int = 5, width: int = 160) -> pd.DataFrame:
    """The k wrong predictions made with the highest confidence, as a readable table."""
    probs, labels = check_probs(probs, labels)
    preds = probs.argmax(axis=1)
    wrong = np.flatnonzero(preds != labels)
    order = wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")][:k]
    texts = list(texts)
    return pd.DataFrame({
        "text": [_shorten(texts[i], width) for i in order],
        "label": labels[order],
        "predicted": preds[order],
        "confidence": probs[order].max(axis=1).round(3),
    })


def _shorten(text: str, width: int) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"
