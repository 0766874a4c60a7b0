import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from bigmodel_lab.metrics import (
    classification_report,
    confusion,
    expected_calibration_error,
    most_confident_mistakes,
    reliability,
)


def random_case(seed, n=200):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    return np.stack([1 - p, p], axis=1), rng.integers(0, 2, size=n)


def test_report_and_confusion_match_sklearn():
    probs, labels = random_case(0)
    preds = probs.argmax(1)
    report = classification_report(probs, labels)
    assert report["accuracy"] == pytest.approx(accuracy_score(labels, preds))
    assert report["f1"] == pytest.approx(f1_score(labels, preds))
    np.testing.assert_array_equal(confusion(probs, labels).to_numpy(),
                                  confusion_matrix(labels, preds))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 20))
def test_ece_is_between_zero_and_one_and_counts_every_prediction(seed, n_bins):
    probs, labels = random_case(seed, n=50)
    rel = reliability(probs, labels, n_bins)
    assert 0.0 <= rel.ece <= 1.0
    assert rel.count.sum() == len(labels)


def test_ece_is_zero_when_confidence_equals_accuracy():
    # 10 predictions at confidence 0.8, 8 of them right: perfectly calibrated.
    probs = np.tile([0.2, 0.8], (10, 1))
    labels = np.array([1] * 8 + [0] * 2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)


def test_ece_of_an_overconfident_model_is_the_gap():
    probs = np.tile([0.0, 1.0], (10, 1))  # always certain, right half the time
    labels = np.array([1, 0] * 5)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5)


def test_most_confident_mistakes_are_wrong_and_sorted():
    probs = np.array([[0.1, 0.9], [0.4, 0.6], [0.95, 0.05], [0.3, 0.7]])
    labels = np.array([0, 0, 0, 1])
    table = most_confident_mistakes(["a", "b", "c", "d"], probs, labels, k=5)
    assert table["text"].tolist() == ["a", "b"]
    assert table["confidence"].is_monotonic_decreasing


def test_labels_out_of_range_say_how_to_fix():
    with pytest.raises(ValueError, match="Map them first"):
        classification_report(np.full((2, 2), 0.5), [0, 2])


def test_one_column_probabilities_say_how_to_fix():
    with pytest.raises(ValueError, match="np.stack"):
        classification_report(np.array([0.2, 0.9]), [0, 1])
