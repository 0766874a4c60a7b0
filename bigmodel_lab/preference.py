"""Preference tuning of a causal LM: a reward model, preference pairs, the DPO loss and loop,
and the measures of what tuning changed (reward, KL to the reference, diversity, perplexity).

The recipe of notebook 17: sample several continuations per prompt from the reference model,
score them with a reward model (notebook 06's sentiment classifier), keep the best as
"chosen" and the worst as "rejected", and train a LoRA adapter with the DPO loss. The
reference model is the same network with the adapter switched off, so no second copy of the
weights is held in memory.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .exercises import CheckResult, _call, _Failed, _report
from .lora import _quiet_peft

CHAT_INSTRUCTION = "Continue this movie review: "


# ---------------------------------------------------------------------------- the task
def review_openings(texts: Sequence[str], n_words: int = 8) -> list[str]:
    """The first `n_words` words of each review: the prompts the LM continues."""
    if not isinstance(n_words, int) or n_words < 1:
        raise ValueError(f"n_words must be a positive integer, got {n_words!r}: pass e.g. n_words=8.")
    return [" ".join(str(t).split()[:n_words]) for t in texts]


def prompt_texts(openings: Sequence[str], tokenizer=None, chat: bool = False) -> list[str]:
    """The text fed to the LM: the opening itself (plain continuation), or the opening inside
    the chat template ("Continue this movie review: ...") when `chat=True`."""
    if not chat:
        return list(openings)
    if tokenizer is None:
        raise ValueError("chat=True needs the tokenizer (its chat template): pass tokenizer=...")
    return [tokenizer.apply_chat_template([{"role": "user", "content": CHAT_INSTRUCTION + o}],
                                          tokenize=False, add_generation_prompt=True)
            for o in openings]


def positive_prob(classifier, tokenizer, texts: Sequence[str], max_length: int = 64,
                  batch_size: int = 64) -> np.ndarray:
    """The reward: P(positive) of each text under a sentiment classifier, shape (N,)."""
    from .finetune import predict_proba

    if classifier.config.num_labels != 2:
        raise ValueError(f"The reward model must be a 2-class sentiment classifier (negative, "
                         f"positive), got {classifier.config.num_labels} labels: load notebook "
                         "06's classifier with finetune.load_or_finetune.")
    return predict_proba(classifier, tokenizer, list(texts), max_length, batch_size)[:, 1]


# ---------------------------------------------------------------------------- sampling
@dataclass
class Samples:
    """Continuations sampled for a list of prompts, as token ids and as text."""

    prompts: list[str]
    prompt_ids: list[list[int]]  # one per sample (a prompt sampled k times appears k times)
    completion_ids: list[list[int]]  # up to and including the end-of-text token, if produced
    texts: list[str]  # the decoded continuations
    prompt_index: np.ndarray  # which prompt each sample continues

    def __len__(self) -> int:
        return len(self.texts)


@torch.no_grad()
def sample_continuations(model, tokenizer, prompts: Sequence[str], n_per_prompt: int = 1,
                         max_new_tokens: int = 24, batch_size: int = 32, seed: int = 0,
                         progress: bool = False) -> Samples:
    """Sample `n_per_prompt` continuations of each prompt (temperature 1, no top-k/top-p, so
    the samples follow the model's own distribution and the KL estimate below is unbiased).

    Prompts are left-padded in batches of `batch_size` sequences."""
    if n_per_prompt < 1 or max_new_tokens < 1:
        raise ValueError("n_per_prompt and max_new_tokens must be >= 1.")
    prompts = list(prompts)
    index = np.repeat(np.arange(len(prompts)), n_per_prompt)
    eos = tokenizer.eos_token_id
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    out = Samples(prompts, [], [], [], index)
    starts = range(0, len(index), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"sampling {len(index)} continuations")
    try:
        for start in starts:
            batch = [prompts[i] for i in index[start:start + batch_size]]
            enc = tokenizer(batch, return_tensors="pt", padding=True)
            gen = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                 do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id)
            for row, mask, new in zip(enc["input_ids"], enc["attention_mask"],
                                      gen[:, enc["input_ids"].shape[1]:]):
                ids = new.tolist()
                if eos in ids:
                    ids = ids[:ids.index(eos) + 1]
                out.prompt_ids.append(row[mask.bool()].tolist())
                out.completion_ids.append(ids)
                out.texts.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


# ---------------------------------------------------------------------------- log-probabilities
def pack(prompt_ids: Sequence[list[int]], completion_ids: Sequence[list[int]],
         pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch of prompt + completion; `completion_mask` marks the completion."""
    if len(prompt_ids) != len(completion_ids):
        raise ValueError("prompt_ids and completion_ids must hold one entry per sequence.")
    rows = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids)]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    completion_mask = torch.zeros_like(input_ids)
    for i, (p, r) in enumerate(zip(prompt_ids, rows)):
        input_ids[i, :len(r)] = torch.tensor(r)
        attention_mask[i, :len(r)] = 1
        completion_mask[i, len(p):len(r)] = 1
    return dict(input_ids=input_ids, attention_mask=attention_mask, completion_mask=completion_mask)


def token_logprobs(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(token | earlier tokens) of every completion token: (B, T-1) values and mask."""
    logits = model(input_ids=batch["input_ids"],
                   attention_mask=batch["attention_mask"]).logits[:, :-1]  # (B, T-1, V)
    targets = batch["input_ids"][:, 1:]
    logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
    mask = batch["completion_mask"][:, 1:].to(logps.dtype)
    return logps * mask, mask


@torch.no_grad()
def sample_logprobs(model, samples: Samples, pad_id: int, batch_size: int = 8) -> list[np.ndarray]:
    """Per-token log-probabilities of each sample's completion under `model`.

    Small batches: the logits of a batch (B x T x 49,152 floats for SmolLM2) dominate memory."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(samples), batch_size):
        sl = slice(start, start + batch_size)
        logps, mask = token_logprobs(model, pack(samples.prompt_ids[sl],
                                                 samples.completion_ids[sl], pad_id))
        out += [lp[m.bool()].numpy() for lp, m in zip(logps, mask)]
    model.train(was_training)
    return out


# ---------------------------------------------------------------------------- DPO
def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The DPO loss (Rafailov et al., 2023) of a batch of pairs, and the implicit rewards.

    Inputs are summed log-probabilities of whole completions, shape (B,). With the implicit
    reward r(y) = beta * (log pi(y|x) - log pi_ref(y|x)),

        loss = -mean log sigmoid(r(y_chosen) - r(y_rejected)).

    Minimising it raises the chosen completion's probability relative to the reference, and
    lowers the rejected one's, more for pairs the policy still ranks wrongly.
    Returns (loss, chosen_rewards, rejected_rewards)."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0 (typically 0.1-0.5), got {beta}.")
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return loss, chosen_rewards.detach(), rejected_rewards.detach()


@dataclass
class Pairs:
    """Preference pairs: for each prompt, the best and the worst of its samples."""

    prompt_ids: list[list[int]]
    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]
    chosen_text: list[str]
    rejected_text: list[str]
    chosen_reward: np.ndarray
    rejected_reward: np.ndarray

    def __len__(self) -> int:
        return len(self.chosen_ids)


def preference_pairs(samples: Samples, rewards, min_margin: float = 0.0) -> Pairs:
    """Rank each prompt's samples by reward: chosen = highest, rejected = lowest.

    Prompts whose best and worst differ by less than `min_margin` give no pair (their
    samples agree, so they carry no preference)."""
    rewards = np.asarray(rewards, dtype=float)
    if len(rewards) != len(samples):
        raise ValueError(f"{len(rewards)} rewards for {len(samples)} samples: score every sample.")
    keep = dict(p=[], c=[], r=[], ct=[], rt=[], cr=[], rr=[])
    for prompt in np.unique(samples.prompt_index):
        idx = np.flatnonzero(samples.prompt_index == prompt)
        if len(idx) < 2:
            raise ValueError("A pair needs at least 2 samples per prompt: use n_per_prompt >= 2.")
        best, worst = idx[np.argmax(rewards[idx])], idx[np.argmin(rewards[idx])]
        if rewards[best] - rewards[worst] < min_margin or best == worst:
            continue
        for key, value in zip(keep, (samples.prompt_ids[best], samples.completion_ids[best],
                                     samples.completion_ids[worst], samples.texts[best],
                                     samples.texts[worst], rewards[best], rewards[worst])):
            keep[key].append(value)
    return Pairs(keep["p"], keep["c"], keep["r"], keep["ct"], keep["rt"],
                 np.array(keep["cr"]), np.array(keep["rr"]))


@dataclass
class DPOConfig:
    """Knobs of the DPO loop: beta (how far from the reference), LoRA and optimiser."""

    beta: float = 0.1
    lr: float = 3e-4
    steps: int = 100
    batch_pairs: int = 8
    warmup_steps: int = 5
    lora_r: int = 8
    lora_alpha: int = 16
    activation_checkpointing: bool = False  # recompute layer activations in backward: less memory
    seed: int = 0
    progress: bool = True


@dataclass
class DPOHistory:
    """Per-step loss, reward margin and pair accuracy; time and peak memory of the loop."""

    loss: list[float] = field(default_factory=list)
    margin: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    peak_memory_mb: float = 0.0


def add_lora(model, config: DPOConfig):
    """Wrap the LM in a fresh `peft` LoRA adapter on every linear layer (the base is frozen)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    with _quiet_peft():  # peft reads a property transformers 5 deprecates
        return get_peft_model(model, lora)


def _summed_logps(model, prompt_ids, completion_ids, pad_id) -> torch.Tensor:
    logps, _ = token_logprobs(model, pack(prompt_ids, completion_ids, pad_id))
    return logps.sum(-1)


def train_dpo(model, pairs: Pairs, config: DPOConfig, pad_id: int) -> DPOHistory:
    """Train a peft-wrapped LM with the DPO loss on `pairs` (see `_train_dpo`)."""
    with _quiet_peft():  # peft + activation checkpointing read a deprecated transformers property
        return _train_dpo(model, pairs, config, pad_id)


def _train_dpo(model, pairs: Pairs, config: DPOConfig, pad_id: int) -> DPOHistory:
    """Train a peft-wrapped LM with the DPO loss on `pairs` (the book's loop).

    The reference log-probabilities are computed once, before the first step, with the adapter
    disabled: the reference never changes, so recomputing them each step (as a trainer without
    precomputation does) would double the forward passes."""
    from .train import peak_memory_mb

    if len(pairs) == 0:
        raise ValueError("No preference pairs: sample more continuations per prompt "
                         "or lower min_margin.")
    if not hasattr(model, "disable_adapter"):
        raise TypeError("train_dpo needs a peft model (its disabled adapter is the reference): "
                        "wrap the LM with preference.add_lora(model, config) first.")
    hist, start = DPOHistory(), time.perf_counter()
    n, b = len(pairs), min(config.batch_pairs, len(pairs))
    ref_c, ref_r = torch.zeros(n), torch.zeros(n)
    with torch.no_grad(), model.disable_adapter():
        model.eval()
        for s in range(0, n, 8):
            sl = slice(s, s + 8)
            ref_c[sl] = _summed_logps(model, pairs.prompt_ids[sl], pairs.chosen_ids[sl], pad_id)
            ref_r[sl] = _summed_logps(model, pairs.prompt_ids[sl], pairs.rejected_ids[sl], pad_id)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    warmup = max(1, config.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    rng = np.random.default_rng(config.seed)
    order: list[int] = []
    steps = range(config.steps)
    if config.progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="DPO")
    if config.activation_checkpointing:  # transformers 5 renamed gradient_ to activation_
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable({"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    for _ in steps:
        if len(order) < b:  # a fresh shuffled pass over the pairs
            order += rng.permutation(n).tolist()
        idx, order = order[:b], order[b:]
        prompts = [pairs.prompt_ids[i] for i in idx]
        both = _summed_logps(model, prompts + prompts, [pairs.chosen_ids[i] for i in idx]
                             + [pairs.rejected_ids[i] for i in idx], pad_id)
        loss, rc, rr = dpo_loss(both[:b], both[b:], ref_c[idx], ref_r[idx], config.beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        hist.loss.append(loss.item())
        hist.margin.append((rc - rr).mean().item())
        hist.accuracy.append((rc > rr).float().mean().item())
        if config.progress:
            steps.set_postfix(loss=f"{loss.item():.3f}", margin=f"{hist.margin[-1]:.2f}")
    if config.activation_checkpointing:
        (getattr(model, "activation_checkpointing_disable", None) or
         model.gradient_checkpointing_disable)()
    model.eval()
    hist.train_seconds = time.perf_counter() - start
    hist.peak_memory_mb = peak_memory_mb(torch.device("cpu"))
    return hist


# ---------------------------------------------------------------------------- what changed
def ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = text.lower().split()
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n (Li et al., 2016): unique word n-grams / all word n-grams, over all texts."""
    grams = [g for t in texts for g in ngrams(t, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeats_itself(text: str, n: int = 3) -> bool:
    """Does the text repeat one of its word n-grams (a sign of degenerate, looping output)?"""
    grams = ngrams(text, n)
    return len(set(grams)) < len(grams)


def top_words(texts: Sequence[str], k: int = 10) -> list[tuple[str, int]]:
    """The k most frequent words (lower-cased, punctuation stripped)."""
    words = [w.strip(".,!?;:\"'()").lower() for t in texts for w in t.split()]
    return Counter(w for w in words if w).most_common(k)


def per_sample(rewards, policy_logps: Sequence[np.ndarray],
               ref_logps: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-sample measures: reward, positive (P > 0.5), tokens, summed log-ratio and ref NLL.

    On samples drawn from the policy, E[log pi(y) - log pi_ref(y)] is KL(pi || pi_ref): the
    summed log-ratio over a sample's tokens, averaged over samples, estimates it."""
    rewards = np.asarray(rewards, dtype=float)
    if not len(rewards) == len(policy_logps) == len(ref_logps):
        raise ValueError("rewards, policy_logps and ref_logps must hold one entry per sample.")
    return dict(
        reward=rewards, positive=(rewards > 0.5).astype(float),
        tokens=np.array([len(lp) for lp in ref_logps], dtype=float),
        log_ratio=np.array([float(np.sum(p - r)) for p, r in zip(policy_logps, ref_logps)]),
        ref_nll=np.array([-float(np.sum(r)) for r in ref_logps]),
    )


def _statistics(m: dict[str, np.ndarray], texts: Sequence[str], idx: np.ndarray) -> np.ndarray:
    tokens = m["tokens"][idx].sum()
    return np.array([
        m["reward"][idx].mean(), m["positive"][idx].mean(),
        m["log_ratio"][idx].sum() / tokens,  # KL per token
        distinct_n([texts[i] for i in idx], 2),
        math.exp(m["ref_nll"][idx].sum() / tokens),  # perplexity under the reference
        np.mean([repeats_itself(texts[i]) for i in idx]),
    ])


STATISTICS = ("mean reward", "share positive", "KL per token (nats)", "distinct-2",
              "perplexity under reference", "share repeating a 3-gram")


def summarize(measures: dict[str, np.ndarray], texts: Sequence[str], n_boot: int = 1000,
              seed: int = 0):
    """Each statistic with a bootstrap standard error (resampling the samples): a DataFrame."""
    import pandas as pd

    n = len(texts)
    rng = np.random.default_rng(seed)
    point = _statistics(measures, texts, np.arange(n))
    boot = np.array([_statistics(measures, texts, rng.integers(0, n, n)) for _ in range(n_boot)])
    return pd.DataFrame({"value": point, "se": boot.std(axis=0, ddof=1)}, index=list(STATISTICS))


def paired_bootstrap(before: dict[str, np.ndarray], texts_before: Sequence[str],
                     after: dict[str, np.ndarray], texts_after: Sequence[str],
                     n_boot: int = 1000, seed: int = 0):
    """After - before for each statistic, resampling the same openings for both (paired):
    the difference, its standard error, a 95% interval and the ratio after / before."""
    import pandas as pd

    n = len(texts_before)
    if len(texts_after) != n:
        raise ValueError("before and after must score the same openings, one sample each.")
    rng = np.random.default_rng(seed)
    full = np.arange(n)
    diff = _statistics(after, texts_after, full) - _statistics(before, texts_before, full)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        boots.append(_statistics(after, texts_after, idx) - _statistics(before, texts_before, idx))
    boots = np.array(boots)
    low, high = np.percentile(boots, [2.5, 97.5], axis=0)
    base = _statistics(before, texts_before, full)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(base != 0, (base + diff) / base, np.nan)
    return pd.DataFrame({"change": diff, "se": boots.std(axis=0, ddof=1), "low": low,
                         "high": high, "after / before": ratio}, index=list(STATISTICS))


def paired_reward_test(before, after) -> tuple[float, float]:
    """Mean paired change in reward and the p-value of the Wilcoxon signed-rank test."""
    from scipy.stats import wilcoxon

    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if before.shape != after.shape:
        raise ValueError("Score the same openings before and after (equal lengths).")
    if np.all(after == before):  # no change at all: nothing to test
        return 0.0, 1.0
    return float((after - before).mean()), float(wilcoxon(after, before).pvalue)


# ---------------------------------------------------------------------------- exercise checks
def check_dpo_loss(fn: Callable, quiet: bool = False) -> CheckResult:
    """Exercise: fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> loss."""
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(6, generator=g) * 5 - 20 for _ in range(4)]
    try:
        for beta in (0.1, 0.5):
            got = _call(fn, *args, beta)
            if isinstance(got, tuple):
                got = got[0]
            if not isinstance(got, torch.Tensor) or got.numel() != 1:
                raise _Failed("return the loss as a one-element tensor (the mean over pairs).")
            want = dpo_loss(*args, beta)[0]
            if torch.isclose(got.float(), -want):
                raise _Failed("check the sign: the loss is -log sigmoid(margin).")
            if not torch.isclose(got.float(), want, atol=1e-5):
                raise _Failed(f"beta={beta}: got {got.item():.5f}, expected {want.item():.5f}. "
                              "Is beta applied to both log-ratios, and is it a mean over pairs?")
    except _Failed as err:
        return _report(False, str(err), quiet)
    return _report(True, "your DPO loss matches preference.dpo_loss for beta 0.1 and 0.5.", quiet)


def check_distinct_n(fn: Callable, quiet: bool = False) -> CheckResult:
    """Exercise: fn(texts, n) -> distinct-n over all texts."""
    texts = ["a great great film", "a great film indeed", "bad", "A Great film"]
    try:
        for n in (1, 2, 3):
            got = _call(fn, texts, n)
            want = distinct_n(texts, n)
            if not isinstance(got, (float, int, np.floating)):
                raise _Failed(f"return a float, got {type(got).__name__}.")
            if abs(got - want) > 1e-9:
                raise _Failed(f"n={n}: got {got:.4f}, expected {want:.4f}. Count n-grams over all "
                              "texts together (unique / total), lower-cased, words split on spaces.")
    except _Failed as err:
        return _report(False, str(err), quiet)
    return _report(True, "your distinct-n matches preference.distinct_n for n = 1, 2, 3.", quiet)
