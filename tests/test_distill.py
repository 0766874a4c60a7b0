"""Tests for bigmodel_lab.distill: the loss against a hand computation, and the student."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import BertConfig, BertForSequenceClassification

from bigmodel_lab import compress
from bigmodel_lab.distill import distillation_loss, make_student


def tiny_bert(layers: int = 4):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(config).eval()


def test_loss_matches_a_hand_computation():
    student = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0])
    T, alpha = 2.0, 0.3

    def softmax(z):
        e = [math.exp(v) for v in z]
        return [v / sum(e) for v in e]

    soft = hard = 0.0
    for s, t, y in zip(student.tolist(), teacher.tolist(), labels.tolist()):
        p_s, p_t = softmax([v / T for v in s]), softmax([v / T for v in t])
        soft += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s)) / 2
        hard += -math.log(softmax(s)[y]) / 2
    expected = alpha * T * T * soft + (1 - alpha) * hard
    assert distillation_loss(student, teacher, labels, T, alpha).item() == pytest.approx(expected)


def test_soft_part_equals_torch_kl_div_and_alpha_zero_is_cross_entropy():
    torch.manual_seed(1)
    s, t, y = torch.randn(5, 3), torch.randn(5, 3), torch.randint(0, 3, (5,))
    kl = F.kl_div(F.log_softmax(s / 4, -1), F.log_softmax(t / 4, -1), log_target=True,
                  reduction="batchmean")
    torch.testing.assert_close(distillation_loss(s, t, y, 4.0, 1.0), 16 * kl)
    torch.testing.assert_close(distillation_loss(s, t, y, 4.0, 0.0), F.cross_entropy(s, y))


@settings(max_examples=25, deadline=None)
@given(st.floats(0.5, 10.0), st.floats(0.0, 1.0))
def test_matching_the_teacher_leaves_only_the_hard_loss(temperature, alpha):
    z = torch.tensor([[0.3, -1.2, 2.0], [1.0, 0.0, -0.5]])
    y = torch.tensor([2, 1])
    loss = distillation_loss(z, z.clone(), y, temperature, alpha)
    assert loss.item() == pytest.approx((1 - alpha) * F.cross_entropy(z, y).item(), abs=1e-5)


def test_t_squared_keeps_the_soft_gradient_scale_at_high_temperature():
    # Hinton et al.: for large T the soft-loss gradient tends to (z_s - z_t) / (C * N) once
    # scaled by T^2 (zero-mean logits), the same size at every temperature.
    s = torch.tensor([[0.5, -0.5]], requires_grad=True)
    t = torch.tensor([[-1.0, 1.0]])
    grads = []
    for T in (20.0, 80.0):
        (g,) = torch.autograd.grad(distillation_loss(s, t, torch.tensor([0]), T, 1.0), s)
        grads.append(g)
    torch.testing.assert_close(grads[0], grads[1], atol=2e-3, rtol=0.0)
    torch.testing.assert_close(grads[1], (s - t).detach() / 2, atol=2e-3, rtol=0.0)


def test_bad_temperature_alpha_or_shapes_say_what_to_fix():
    z = torch.zeros(2, 2)
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation_loss(z, z, y, 0.0)
    with pytest.raises(ValueError, match=r"alpha .* in \[0, 1\]"):
        distillation_loss(z, z, y, 2.0, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(z, torch.zeros(2, 3), y)


def test_student_keeps_every_other_teacher_layer_with_the_teachers_weights():
    teacher = tiny_bert(layers=4)
    student = make_student(teacher)
    assert student.config.num_hidden_layers == 2
    assert teacher.config.num_hidden_layers == 4  # the teacher is untouched
    for s_layer, t_index in zip(student.bert.encoder.layer, (0, 2)):
        t_layer = teacher.bert.encoder.layer[t_index]
        torch.testing.assert_close(s_layer.output.dense.weight, t_layer.output.dense.weight)
    torch.testing.assert_close(student.classifier.weight, teacher.classifier.weight)
    layer_params = compress.count_parameters(teacher) - compress.embedding_parameters(teacher)
    student_layer_params = (compress.count_parameters(student)
                            - compress.embedding_parameters(student))
    assert student_layer_params < 0.55 * layer_params
    ids = torch.randint(0, 100, (2, 6))
    assert student(input_ids=ids).logits.shape == (2, 2)
    with pytest.raises(ValueError, match="cannot keep"):
        make_student(teacher, layers=range(5))


def test_distill_names_the_fix_for_a_long_max_length_and_a_missing_split():
    import datasets

    from bigmodel_lab.distill import distill
    from bigmodel_lab.finetune import finetune_config

    rows = datasets.Dataset.from_dict({"text": ["good", "bad"], "label": [1, 0]})
    student, teacher = tiny_bert(2), tiny_bert(4)  # 64 positions
    config = finetune_config(progress=False)
    with pytest.raises(ValueError, match="max_length=64 or less"):
        distill(student, teacher, None, datasets.DatasetDict(train=rows), config, max_length=128)
    with pytest.raises(ValueError, match="No 'validation' split.*eval_split=None"):
        distill(student, teacher, None, datasets.DatasetDict(train=rows), config, max_length=32)
