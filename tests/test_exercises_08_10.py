"""The self-checks of notebooks 08-10 pass reference solutions and name the usual mistakes."""

import copy
import warnings

import torch
from torch.nn.utils import prune

from bigmodel_lab import compress, distill, exercises
from bigmodel_lab.exercises import _tiny_classifier


def test_random_heads_check_passes_random_and_rejects_importance_choice():
    def random_heads(scores, n, seed):
        g = torch.Generator().manual_seed(seed)
        return compress.least_important_heads(torch.rand(scores.shape, generator=g), n)

    assert exercises.check_random_heads(random_heads, quiet=True)
    assert not exercises.check_random_heads(
        lambda s, n, seed: compress.least_important_heads(s, n), quiet=True)


def test_per_layer_pruning_check_tells_global_from_per_layer():
    def per_layer(model, amount):
        for module, name in compress.encoder_linears(model):
            prune.l1_unstructured(module, name, amount=amount)
        return model

    assert exercises.check_per_layer_pruning(per_layer, quiet=True)
    result = exercises.check_per_layer_pruning(compress.magnitude_prune, quiet=True)
    assert not result and "separately" in result.message


def test_heads_removed_check_counts_surviving_heads():
    model = compress.remove_heads(_tiny_classifier(), {0: [0, 1], 1: [3]})
    assert exercises.check_heads_removed(model, 3, quiet=True)
    assert not exercises.check_heads_removed(model, 2, quiet=True)


def test_affine_vs_symmetric_check_recomputes_the_errors():
    x = torch.nn.functional.gelu(torch.randn(500, generator=torch.Generator().manual_seed(0)))
    errors = {}
    for name, symmetric in (("affine", False), ("symmetric", True)):
        s, z = compress.int8_params(x, symmetric=symmetric)
        errors[name] = float((compress.dequantize_int8(compress.quantize_int8(x, s, z), s, z)
                              - x).abs().mean())
    assert exercises.check_affine_vs_symmetric(errors, x, quiet=True)
    swapped = {"affine": errors["symmetric"], "symmetric": errors["affine"]}
    assert not exercises.check_affine_vs_symmetric(swapped, x, quiet=True)


def test_quantize_per_row_check_spots_one_scale_for_the_whole_matrix():
    def per_row(W):
        out = []
        for row in W:
            s, z = compress.int8_params(row)
            out.append(compress.dequantize_int8(compress.quantize_int8(row, s, z), s, z))
        return torch.stack(out)

    def per_tensor(W):
        s, z = compress.int8_params(W)
        return compress.dequantize_int8(compress.quantize_int8(W, s, z), s, z)

    assert exercises.check_quantize_per_row(per_row, quiet=True)
    result = exercises.check_quantize_per_row(per_tensor, quiet=True)
    assert not result and "each row" in result.message


def test_bench_batch_check_reads_the_shape():
    batch = {"input_ids": torch.zeros(1, 32, dtype=torch.long)}
    assert exercises.check_bench_batch(batch, 1, 32, quiet=True)
    assert not exercises.check_bench_batch(batch, 8, 32, quiet=True)


def test_head_kept_fp32_check_wants_encoder_int8_and_float_head():
    model = _tiny_classifier()
    names = {n for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and ".layer." in f".{n}."}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        partial = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), names,
                                                         dtype=torch.qint8)
    assert exercises.check_head_kept_fp32(partial, quiet=True)
    assert not exercises.check_head_kept_fp32(compress.quantize_dynamic_int8(model), quiet=True)


def test_soft_loss_check_wants_the_t_squared_factor():
    def soft(z_s, z_t, T):
        return distill.distillation_loss(z_s, z_t, torch.zeros(len(z_s), dtype=torch.long), T, 1.0)

    assert exercises.check_soft_loss(soft, quiet=True)
    result = exercises.check_soft_loss(lambda a, b, T: soft(a, b, T) / T**2, quiet=True)
    assert not result and "T^2" in result.message


def test_student_layers_and_temperature_checks():
    teacher = _tiny_classifier(layers=4)
    student = distill.make_student(teacher, (0, 3))
    assert exercises.check_student_layers(student, teacher, (0, 3), quiet=True)
    assert not exercises.check_student_layers(student, teacher, (0, 2), quiet=True)
    assert exercises.check_by_temperature({1.0: 0.8, 4.0: 0.82}, quiet=True)
    assert not exercises.check_by_temperature({2.0: 0.8}, quiet=True)


def test_checks_of_unfinished_exercises_say_so_instead_of_raising():
    assert not exercises.check_heads_removed(None, 3, quiet=True)
    assert not exercises.check_student_layers(None, _tiny_classifier(), (0,), quiet=True)
    assert not exercises.check_head_kept_fp32(None, quiet=True)
    assert not exercises.check_bench_batch(None, 1, 32, quiet=True)
    assert not exercises.check_affine_vs_symmetric({}, torch.ones(3), quiet=True)
    assert not exercises.check_random_heads(lambda s, n, seed: None, quiet=True)
