"""Knowledge distillation: a small student learns from a big teacher's soft predictions.

The loss (Hinton, Vinyals & Dean 2015), for student logits z_s, teacher logits z_t, label y:

    L = alpha * T^2 * KL( softmax(z_t / T) || softmax(z_s / T) )
        + (1 - alpha) * CrossEntropy(z_s, y)

T > 1 softens both distributions so the student also learns how the teacher ranks the wrong
classes ("dark knowledge"); the gradient of the soft term shrinks like 1/T^2, which the T^2
factor undoes, so alpha keeps the same meaning at every temperature. alpha = 0 is plain
fine-tuning on the labels: the no-distillation baseline uses the same code, data and budget.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def distillation_loss(
    student_logits: torch.Tensor,  # (B, C)
    teacher_logits: torch.Tensor,  # (B, C)
    labels: torch.Tensor,  # (B,)
    temperature: float = 2.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels), batch mean."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (1 = no softening); got {temperature}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha weighs soft vs hard loss and must be in [0, 1]; got {alpha}.")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape (B, C).")
    hard = F.cross_entropy(student_logits, labels)
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    # KL(p_t || p_s) = sum p_t (log p_t - log p_s), averaged over the batch
    soft = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean()
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def make_student(teacher: nn.Module, layers: Sequence[int] | None = None) -> nn.Module:
    """A copy of `teacher` keeping only some transformer layers (default: every other one,
    0, 2, 4, ... as DistilBERT was initialised from BERT). Embeddings, kept layers and the
    classifier head start from the teacher's weights."""
    from .compress import _layers, keep_layers

    n = len(_layers(teacher))
    layers = list(range(0, n, 2)) if layers is None else list(layers)
    if len(layers) > n:
        raise ValueError(f"The teacher has {n} layers; a student cannot keep {len(layers)}.")
    return keep_layers(copy.deepcopy(teacher), layers)


@torch.inference_mode()
def teacher_logits(teacher: nn.Module, tokenizer, texts: Sequence[str], max_length: int,
                   batch_size: int = 64) -> np.ndarray:
    """The teacher's logits (N, C) for `texts`, computed once before training the student.

    Returned as log-probabilities: they differ from the logits by a per-row constant, which
    softmax(z / T) ignores, so they are exactly as good as logits for the loss."""
    from .finetune import predict_proba

    probs = predict_proba(teacher, tokenizer, list(texts), max_length, batch_size)
    return np.log(np.clip(probs, 1e-12, None)).astype(np.float32)


def distill(student: nn.Module, teacher: nn.Module, tokenizer, dsd, config,
            temperature: float = 2.0, alpha: float = 0.5, max_length: int = 128,
            batch_size: int = 32, eval_split: str | None = "validation"):
    """Train `student` on dsd["train"] with the distillation loss through
    `bigmodel_lab.train.fit` (the book's one training loop); returns its History.

    The teacher's logits are computed once up front and ride along in each batch.
    alpha=0 trains on the labels only (the no-distillation baseline, same loop and data)."""
    from torch.utils.data import DataLoader

    from .checks import check_max_length
    from .finetune import (
        LengthGroupedBatchSampler,
        collate,
        evaluate,
        held_out_split,
        token_lengths,
        tokenize_split,
        training_split,
    )
    from .train import fit

    max_length = check_max_length(student, max_length)
    check_max_length(teacher, max_length)
    held_out = held_out_split(dsd, eval_split) if eval_split is not None else None
    train = tokenize_split(training_split(dsd), tokenizer, max_length)
    if alpha > 0:
        soft = teacher_logits(teacher, tokenizer, dsd["train"]["text"], max_length)
    else:  # no teacher needed: zeros keep the batch format the same
        soft = np.zeros((len(train), student.config.num_labels), dtype=np.float32)
    train = train.add_column("teacher_logits", soft.tolist())
    pad_id = tokenizer.pad_token_id or 0

    def collate_with_teacher(rows):
        batch = collate(rows, pad_id)
        batch["teacher_logits"] = torch.tensor([r["teacher_logits"] for r in rows])
        return batch

    sampler = LengthGroupedBatchSampler(token_lengths(train), batch_size)
    loader = DataLoader(train.with_format(None), batch_sampler=sampler,
                        collate_fn=collate_with_teacher)

    def loss_fn(model, batch):
        logits = model(input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits
        return distillation_loss(logits, batch["teacher_logits"], batch["labels"],
                                 temperature, alpha)

    eval_fn = None
    if held_out is not None:

        def eval_fn(model):
            scores = evaluate(model, tokenizer, held_out, max_length, batch_size * 2)
            return {"accuracy": scores["accuracy"], "f1": scores["f1"]}

    return fit(student, loader, config, loss_fn=loss_fn, eval_fn=eval_fn)
