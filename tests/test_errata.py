import math

import pytest
import torch

from bigmodel_lab import errata

RECOMPUTED = {c.key: c.recompute() for c in errata.CLAIMS}


def test_cross_entropy_examples():
    assert RECOMPUTED["ce_two_class"]["correct"] == pytest.approx(-math.log(0.7) / 2, abs=1e-4)
    assert RECOMPUTED["ce_two_class"]["one_sample"] == pytest.approx(-math.log(0.7), abs=1e-4)
    four = RECOMPUTED["ce_four_samples"]
    assert four["correct"] == pytest.approx(-(math.log(0.3) + math.log(0.6)) / 4, abs=1e-4)
    assert four["bce"] == pytest.approx(-(2 * math.log(0.3) + 2 * math.log(0.6)) / 4, abs=1e-4)
    assert RECOMPUTED["log_loss_formula"]["printed"] == 0.0
    assert RECOMPUTED["log_loss_formula"]["correct"] == pytest.approx(-math.log(0.1), abs=1e-4)


def test_gradient_descent_examples():
    assert RECOMPUTED["gd_gradient"]["correct"] == [0.0, 0.0]
    assert RECOMPUTED["gd_update"]["correct"] == [1.0, 2.0]
    assert RECOMPUTED["gd_update"]["own"] == pytest.approx([1.2, 2.2])


def test_activation_examples():
    assert RECOMPUTED["relu"]["correct"] == [0.0, 0.0, 2.0]
    s = RECOMPUTED["sigmoid"]["correct"]
    assert s[1] == 0.5 and s[0] == pytest.approx(1 / (1 + math.e**2), abs=1e-4)
    assert s[2] == pytest.approx(1 - s[0], abs=1e-4)


def test_attention_example_outputs_are_weighted_averages_of_the_values():
    out = RECOMPUTED["output"]["correct"]
    q, k, v = (torch.tensor(t, dtype=torch.float64) for t in (errata.EXAMPLE_Q, errata.EXAMPLE_K, errata.EXAMPLE_V))
    expected = torch.softmax(torch.outer(q, k), -1) @ v  # d_k = 1: no scaling
    assert out == pytest.approx(expected.tolist(), abs=1e-4)
    assert all(7 <= o <= 9 for o in out)
    assert RECOMPUTED["same_index"]["their_output"] == pytest.approx(
        float(torch.softmax(q * k, -1) @ v), abs=1e-4
    )


def test_attention_example_intermediate_steps():
    assert RECOMPUTED["scores"]["dot"] == 32.0
    assert RECOMPUTED["scores"]["correct"][2] == [12.0, 15.0, 18.0]
    assert RECOMPUTED["scaling"]["correct"] == pytest.approx([4 / 3**0.5, 6 / 3**0.5, 10 / 3**0.5], abs=1e-4)
    w = RECOMPUTED["softmax"]["correct"]
    assert sum(w) == pytest.approx(1.0, abs=1e-3)
    assert RECOMPUTED["softmax"]["claimed_sum"] == pytest.approx(1.1001, abs=1e-4)


def test_sqrt_dk_scaling_brings_variance_from_d_k_to_one():
    r = RECOMPUTED["sqrt_dk_reason"]
    assert r["var_unscaled"] == pytest.approx(64, rel=0.1)
    assert r["var_scaled"] == pytest.approx(1, rel=0.1)


def test_formulas_marked_right_are_verified_numerically():
    for key in ("attention_formula", "ffn_formula", "chain_rule"):
        diff = RECOMPUTED[key].get("max_diff", RECOMPUTED[key].get("max_diff_vs_torch"))
        assert diff < 1e-6, key


def test_table_has_every_claim_with_a_verdict_and_filled_explanation():
    t = errata.table()
    assert len(t) == len(errata.CLAIMS)
    assert set(t.verdict) <= {"right", "wrong", "partly right"}
    assert t.loc["relu", "verdict"] == "right"
    assert t.loc["sigmoid", "verdict"] == "wrong"
    assert not t.why.str.contains("{").any()
    assert set(t.source) - {"000, 001"} <= set(errata.SEEDS.values())
