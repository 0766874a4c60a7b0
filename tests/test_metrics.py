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


# ---------------------------------------------------------------- uncertainty and paired tests
def test_accuracy_with_error_by_hand():
    from bigmodel_lab.metrics import accuracy_with_error

    acc = accuracy_with_error([1] * 84 + [0] * 16)  # p = 0.84, n = 100
    assert acc.value == pytest.approx(0.84) and acc.n == 100
    assert acc.se == pytest.approx((0.84 * 0.16 / 100) ** 0.5)
    # Wilson interval by hand: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    z = 1.959964
    centre = (0.84 + z * z / 200) / (1 + z * z / 100)
    half = z * (0.84 * 0.16 / 100 + z * z / 40000) ** 0.5 / (1 + z * z / 100)
    assert (acc.low, acc.high) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert "0.840 ± 0.037" in str(acc)


def test_accuracy_interval_stays_inside_0_1_and_all_right_has_no_standard_error():
    from bigmodel_lab.metrics import accuracy_with_error

    acc = accuracy_with_error(np.ones(20))
    assert acc.value == 1.0 and acc.se == 0.0 and acc.high == 1.0 and 0.8 < acc.low < 1.0


def test_accuracy_of_nothing_says_what_to_pass():
    from bigmodel_lab.metrics import accuracy_with_error

    with pytest.raises(ValueError, match="at least one"):
        accuracy_with_error([])


def test_mcnemar_counts_only_the_discordant_examples():
    from bigmodel_lab.metrics import mcnemar

    a = np.array([1] * 10 + [0] * 0 + [1] * 50 + [0] * 40, dtype=bool)  # A right, B wrong: 10
    b = np.array([0] * 10 + [1] * 0 + [1] * 50 + [0] * 40, dtype=bool)
    test = mcnemar(a, b)
    assert (test.only_a, test.only_b) == (10, 0)
    assert test.p_value == pytest.approx(2 * 0.5**10)  # exact binomial, two-sided
    assert test.significant and test.diff == pytest.approx(-0.10)
    assert "A is better beyond noise" in test.verdict("A", "B")


def test_mcnemar_of_a_balanced_disagreement_is_noise():
    from bigmodel_lab.metrics import mcnemar

    a = np.array([1, 0] * 5 + [1] * 40, dtype=bool)  # 5 each way
    b = np.array([0, 1] * 5 + [1] * 40, dtype=bool)
    test = mcnemar(a, b)
    assert test.p_value == 1.0 and test.diff == 0.0
    assert test.diff_low < 0 < test.diff_high
    assert "within noise" in test.verdict("A", "B")
    # b = 3, c = 1: p = 2 * P(X <= 1 | n = 4) = 2 * 5/16
    a = np.array([1, 1, 1, 0] + [1] * 10, dtype=bool)
    b = np.array([0, 0, 0, 1] + [1] * 10, dtype=bool)
    assert mcnemar(a, b).p_value == pytest.approx(2 * 5 / 16)


def test_mcnemar_paired_interval_matches_the_paired_differences():
    from bigmodel_lab.metrics import mcnemar

    rng = np.random.default_rng(0)
    a, b = rng.random(400) < 0.8, rng.random(400) < 0.85
    test = mcnemar(a, b)
    d = b.astype(float) - a.astype(float)
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert (test.diff_low, test.diff_high) == (pytest.approx(d.mean() - 1.96 * se),
                                               pytest.approx(d.mean() + 1.96 * se))


def test_mcnemar_on_different_examples_says_how_to_fix():
    from bigmodel_lab.metrics import mcnemar

    with pytest.raises(ValueError, match="same examples"):
        mcnemar([1, 0, 1], [1, 0])


def test_within_a_margin_is_met_missed_or_inconclusive():
    from bigmodel_lab.metrics import within

    assert within(0.002, 0.002, 0.01) == "met"  # interval -0.2..+0.6 points, inside ±1
    assert within(-0.03, 0.005, 0.01) == "missed"  # interval -4.0..-2.0, wholly outside
    assert within(0.005, 0.013, 0.01) == "inconclusive"  # 852 sentences: ±2.5 points
    assert within(0.03, 0.005, 0.01) == "missed"  # better by more than the margin: outside too
