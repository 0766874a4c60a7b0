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


# ------------------------------------------------------------------ uncertainty and paired tests
@dataclass(frozen=True)
class Accuracy:
    """An accuracy with its standard error and a 95% (Wilson) interval."""

    value: float
    n: int
    se: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} ± {self.se:.3f} (95% CI {self.low:.3f}-{self.high:.3f}, n={self.n})"


def accuracy_with_error(correct) -> Accuracy:
    """Accuracy of a 0/1 vector with its standard error sqrt(p(1-p)/n) and Wilson 95% interval.

    On 852 sentences at p = 0.84 one standard error is 1.3 points: differences smaller than
    about two of them are noise.
    """
    correct = np.asarray(correct, dtype=float).ravel()
    n = len(correct)
    if n == 0:
        raise ValueError("No predictions to score: pass at least one 0/1 value.")
    p = float(correct.mean())
    se = float(np.sqrt(p * (1 - p) / n))
    z = 1.959964
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Accuracy(p, n, se, float(max(0.0, centre - half)), float(min(1.0, centre + half)))


@dataclass(frozen=True)
class PairedTest:
    """McNemar's exact test of two classifiers scored on the same examples."""

    accuracy_a: float
    accuracy_b: float
    only_a: int  # examples A got right and B wrong
    only_b: int  # examples B got right and A wrong
    p_value: float
    diff_low: float  # 95% interval of accuracy_b - accuracy_a (paired, normal approximation)
    diff_high: float

    @property
    def diff(self) -> float:
        return self.accuracy_b - self.accuracy_a

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05

    def verdict(self, name_a: str = "A", name_b: str = "B") -> str:
        """One sentence in words: who is better, or that the difference is noise."""
        points = f"{100 * self.diff:+.1f} points (95% CI {100 * self.diff_low:+.1f} to " \
                 f"{100 * self.diff_high:+.1f}), McNemar p = {self.p_value:.3g}"
        if not self.significant:
            return f"{name_b} vs {name_a}: {points}: within noise, no difference shown."
        better = name_b if self.diff > 0 else name_a
        return f"{name_b} vs {name_a}: {points}: {better} is better beyond noise."


def mcnemar(correct_a, correct_b) -> PairedTest:
    """McNemar's exact (binomial) test on paired 0/1 correctness vectors of equal length.

    Only the discordant examples carry information: with b = #(A right, B wrong) and
    c = #(A wrong, B right), under the null b ~ Binomial(b + c, 1/2); the two-sided p-value is
    min(1, 2 P(X <= min(b, c))).
    """
    from scipy.stats import binom

    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b.shape or len(a) == 0:
        raise ValueError(f"correct_a and correct_b must be non-empty and of equal length, got "
                         f"{a.shape} and {b.shape}: score both models on the same examples.")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    m = only_a + only_b
    p = 1.0 if m == 0 else float(min(1.0, 2 * binom.cdf(min(only_a, only_b), m, 0.5)))
    n = len(a)
    d = b.astype(float) - a.astype(float)
    se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    return PairedTest(float(a.mean()), float(b.mean()), only_a, only_b, p,
                      float(d.mean() - 1.96 * se), float(d.mean() + 1.96 * se))


def within(diff: float, se: float, margin: float) -> str:
    """Judge a target "within `margin`" for a difference `diff` with standard error `se`.

    'met' when the whole 95% interval lies inside the margin, 'missed' when the whole interval
    lies outside, 'inconclusive' when it straddles the margin (the data cannot tell).
    """
    low, high = diff - 1.96 * se, diff + 1.96 * se
    if -margin <= low and high <= margin:
        return "met"
    if high < -margin or low > margin:
        return "missed"
    return "inconclusive"
