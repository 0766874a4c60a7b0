"""Prompting an instruct LLM as a classifier: chat-template prompts, label-word scores, calibration.

The model is never asked to *generate* an answer that we then parse. After the prompt (ending
with the assistant turn's opening), we read the log-probabilities the model gives to the first
token of each label word and predict the larger one:

    p(positive | x) = exp(l_pos) / (exp(l_pos) + exp(l_neg)),   l_w = log p(w | prompt(x))

Few-shot prompts (k solved examples as earlier chat turns) share one long prefix across all
test sentences, so its keys and values are computed once (the KV cache) and only each
sentence's own turn is run, in left-padded batches.

Contextual calibration (Zhao et al., 2021, Calibrate Before Use): a prompt has a bias towards
one label even for an input with no content. Estimate it as the mean label distribution
p_cf over content-free inputs ("N/A", "", "[MASK]"), then divide it out:

    q(y | x) proportional to p(y | x) / p_cf(y)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from .runtime import trim_freed_memory

LABEL_WORDS = ("negative", "positive")  # index = label (0 negative, 1 positive)
CONTENT_FREE = ("N/A", "", "[MASK]")


@dataclass(frozen=True)
class Template:
    """How a sentence is asked about: a system message and a user message with {text}."""

    name: str
    system: str
    user: str

    def __post_init__(self) -> None:
        if "{text}" not in self.user:
            raise ValueError(f"Template {self.name!r}: the user message must contain {{text}} "
                             f"(where the sentence goes), got {self.user!r}.")

    def render(self, text: str) -> str:
        return self.user.replace("{text}", text)


TEMPLATES = (
    Template("instruction", "Classify the sentiment of the movie review as positive or "
             "negative. Answer with one word.", "{text}"),
    Template("review-question", "You are a helpful assistant.",
             "Review: {text}\nSentiment (positive or negative)?"),
    Template("critic-liked", "You read film criticism. Answer positive or negative.",
             "A critic wrote: \"{text}\" Did the critic like the film?"),
)


def label_token_ids(tokenizer, words=LABEL_WORDS) -> list[int]:
    """The first token of each label word as the assistant would start its reply."""
    ids = [tokenizer.encode(w, add_special_tokens=False) for w in words]
    firsts = [i[0] for i in ids]
    if len(set(firsts)) != len(firsts):
        raise ValueError(f"Label words {words} start with the same token: pick words whose "
                         "first tokens differ (e.g. 'positive' / 'negative').")
    return firsts


def messages(template: Template, text: str, shots=()) -> list[dict]:
    """Chat messages: system, then each (text, label) shot as a user/assistant pair, then `text`."""
    out = [{"role": "system", "content": template.system}]
    for shot_text, shot_label in shots:
        out += [{"role": "user", "content": template.render(shot_text)},
                {"role": "assistant", "content": LABEL_WORDS[int(shot_label)]}]
    return out + [{"role": "user", "content": template.render(text)}]


def prompt_text(tokenizer, template: Template, text: str, shots=()) -> str:
    """The full prompt string through the model's chat template, ending where the reply starts."""
    return tokenizer.apply_chat_template(messages(template, text, shots), tokenize=False,
                                         add_generation_prompt=True)


def split_prompt(tokenizer, template: Template, text: str, shots=()) -> tuple[str, str]:
    """(shared prefix, this sentence's part) of the prompt; prefix + part == prompt_text."""
    full = prompt_text(tokenizer, template, text, shots)
    probe = prompt_text(tokenizer, template, "\x00", shots)
    cut = probe.index(template.render("\x00"))
    # Cut at the start of the last user turn (its role header belongs to the sentence's part).
    start = probe.rfind("<|im_start|>", 0, cut) if "<|im_start|>" in probe[:cut] else cut
    prefix = probe[:start]
    if not full.startswith(prefix):
        raise RuntimeError("The chat template puts the sentence inside the shared prefix.")
    return prefix, full[len(prefix):]


def draw_shots(train, k: int, seed: int = 0) -> list[tuple[str, int]]:
    """k examples from `train` (a datasets split), balanced (k/2 per label), in a seeded order."""
    if k % 2:
        raise ValueError(f"k={k}: use an even number of shots so both labels appear equally.")
    rng = np.random.default_rng(seed)
    labels = np.asarray(train["label"])
    picks = [int(i) for y in (0, 1)
             for i in rng.choice(np.flatnonzero(labels == y), k // 2, replace=False)]
    rng.shuffle(picks)
    return [(train[i]["text"], int(train[i]["label"])) for i in picks]


def reorder(shots, order: int) -> list[tuple[str, int]]:
    """The same shots in their `order`-th distinct order: 0 keeps the drawn order, each
    order > 0 is a seeded permutation different from all lower ones (k shots have k! orders)."""
    n = len(shots)
    if not 0 <= order < math.factorial(n):
        raise ValueError(f"{n} shots have {math.factorial(n)} distinct orders: ask for order 0 "
                         f"to {math.factorial(n) - 1} (grid_settings caps n_orders for you).")
    rng = np.random.default_rng(0)
    seen = [tuple(range(n))]
    while len(seen) <= order:
        perm = tuple(int(i) for i in rng.permutation(n))
        if perm not in seen:
            seen.append(perm)
    return [shots[i] for i in seen[order]]


# ---------------------------------------------------------------------------- scoring
def _model_device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def prefix_cache(model, tokenizer, prefix: str):
    """(ids, cache) of the shared prefix: its keys and values, computed once; (None, None)
    when there is no prefix."""
    if not prefix:
        return None, None
    ids = tokenizer(prefix, return_tensors="pt", add_special_tokens=False).input_ids
    out = model(input_ids=ids.to(_model_device(model)), use_cache=True)
    return ids, getattr(out, "cache", None) or out.past_key_values


def collate_left(rows: list[list[int]], pad_id: int, offset: int = 0,
                 labels: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
    """Left-pad token lists into a batch; position ids count real tokens from `offset` (the
    prefix length), so padding changes no real token's position."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    batch = {"input_ids": ids, "attention_mask": mask,
             "position_ids": (offset + mask.cumsum(1) - 1).clamp(min=offset)}
    if labels is not None:
        lab = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, r in enumerate(labels):
            lab[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        batch["labels"] = lab
    return batch


@torch.no_grad()
def label_logprobs(model, tokenizer, template: Template, texts, shots=(), batch_size: int = 16,
                   progress: bool = False) -> np.ndarray:
    """(N, 2) log-probabilities of the label words' first tokens after each prompt."""
    from tqdm.auto import tqdm

    texts = list(texts)
    if not texts:
        raise ValueError("No texts to score: pass at least one sentence.")
    device = _model_device(model)
    label_ids = label_token_ids(tokenizer)
    prefix, _ = split_prompt(tokenizer, template, texts[0], shots)
    prefix_ids, cache = prefix_cache(model, tokenizer, prefix)
    offset = 0 if prefix_ids is None else prefix_ids.shape[1]
    parts = [split_prompt(tokenizer, template, t, shots)[1] for t in texts]
    rows = [tokenizer(p, add_special_tokens=False).input_ids for p in parts]
    order = np.argsort([len(r) for r in rows], kind="stable")  # similar lengths batch together
    out = np.zeros((len(texts), len(label_ids)))
    for start in tqdm(range(0, len(texts), batch_size), desc="scoring", disable=not progress,
                      leave=False):
        idx = order[start:start + batch_size]
        batch = collate_left([rows[i] for i in idx], tokenizer.pad_token_id, offset)
        batch = {k: v.to(device) for k, v in batch.items()}
        past = None
        if cache is not None:
            past = copy.deepcopy(cache)  # the forward appends to a cache in place
            past.batch_repeat_interleave(len(idx))
            ones = torch.ones((len(idx), offset), dtype=batch["attention_mask"].dtype,
                              device=device)
            batch["attention_mask"] = torch.cat([ones, batch["attention_mask"]], dim=1)
        logits = model(**batch, cache=past, use_cache=past is not None,
                       logits_to_keep=1).logits[:, -1].float()
        out[idx] = torch.log_softmax(logits, dim=-1)[:, label_ids].cpu().numpy()
    # Each batch copied the prefix cache at its own size; glibc keeps such freed blocks unless
    # asked (notebook 16's prompt grid grew the process by 600 MB: 1.23 -> 1.83 GB).
    trim_freed_memory()
    return out


def probabilities(logprobs: np.ndarray) -> np.ndarray:
    """(N, 2) label probabilities renormalised over the label words."""
    logprobs = np.asarray(logprobs, dtype=np.float64)
    z = np.exp(logprobs - logprobs.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def content_free_bias(model, tokenizer, template: Template, shots=(),
                      inputs=CONTENT_FREE) -> np.ndarray:
    """p_cf: the mean label distribution the prompt gives to inputs with no content."""
    return probabilities(label_logprobs(model, tokenizer, template, inputs, shots)).mean(axis=0)


def calibrate(probs: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Contextual calibration: divide each label probability by the bias, renormalise."""
    probs, bias = np.asarray(probs, dtype=np.float64), np.asarray(bias, dtype=np.float64)
    if bias.shape != probs.shape[1:] or (bias <= 0).any():
        raise ValueError(f"bias must be {probs.shape[1]} positive probabilities (from "
                         f"content_free_bias), got {bias}.")
    q = probs / bias
    return q / q.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------- the prompt grid
@dataclass(frozen=True)
class PromptSetting:
    """One point of the grid: k shots (drawn once per k), a template, an order of the shots."""

    k: int
    template: Template
    order: int = 0

    @property
    def name(self) -> str:
        return f"k={self.k}, {self.template.name}" + (f", order {self.order}" if self.k else "")


def grid_settings(shot_counts, templates=TEMPLATES, n_orders: int = 3) -> list[PromptSetting]:
    """Every template for each k; each k > 0 also in `n_orders` distinct orders of the same
    shots (at most k! of them: 2 shots have only 2 orders)."""
    return [PromptSetting(k, t, o) for k in shot_counts for t in templates
            for o in (range(min(n_orders, math.factorial(k))) if k else (0,))]


def shots_for(setting: PromptSetting, train, seed: int = 0) -> list[tuple[str, int]]:
    return reorder(draw_shots(train, setting.k, seed), setting.order) if setting.k else []


def score_setting(model, tokenizer, setting: PromptSetting, texts, train, batch_size: int = 16,
                  seed: int = 0) -> dict:
    """Label probabilities (raw and calibrated) of `texts` under one setting, and the time taken
    (content-free bias included: it is part of the calibrated classifier's cost)."""
    import time

    shots = shots_for(setting, train, seed)
    start = time.perf_counter()
    probs = probabilities(label_logprobs(model, tokenizer, setting.template, texts, shots,
                                         batch_size))
    bias = content_free_bias(model, tokenizer, setting.template, shots)
    return {"probs": probs, "calibrated": calibrate(probs, bias), "bias": bias,
            "seconds": time.perf_counter() - start}


def prompt_grid(model, tokenizer, texts, labels, train, settings, batch_size: int = 16,
                seed: int = 0, progress: bool = True):
    """(table, scores): accuracy raw and calibrated of every setting on the same `texts`."""
    import pandas as pd
    from tqdm.auto import tqdm

    labels = np.asarray(labels)
    rows, scores = [], {}
    for setting in tqdm(settings, desc="prompt grid", disable=not progress):
        out = score_setting(model, tokenizer, setting, texts, train, batch_size, seed)
        scores[setting] = out
        rows.append({"k": setting.k, "template": setting.template.name, "order": setting.order,
                     "accuracy": float((out["probs"].argmax(1) == labels).mean()),
                     "calibrated": float((out["calibrated"].argmax(1) == labels).mean()),
                     "p_cf(positive)": float(out["bias"][1]),
                     "predicted positive": float(out["probs"].argmax(1).mean()),
                     "seconds": out["seconds"]})
    return pd.DataFrame(rows), scores


def spread(table, column: str):
    """Mean, standard deviation, min and max of `column` over the grid, per k."""
    return table.groupby("k")[column].agg(["mean", "std", "min", "max", "count"])


# ---------------------------------------------------------------------------- fine-tuning data
def sft_example(tokenizer, template: Template, text: str, label: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of prompt -> label word: the prompt's labels are -100 (no loss there),
    the answer (label word and end-of-turn token) keeps its ids."""
    if int(label) not in (0, 1):
        raise ValueError(f"label must be 0 (negative) or 1 (positive), got {label!r}.")
    prompt = tokenizer(prompt_text(tokenizer, template, text), add_special_tokens=False).input_ids
    answer = tokenizer(LABEL_WORDS[int(label)] + tokenizer.eos_token,
                       add_special_tokens=False).input_ids
    return prompt + answer, [-100] * len(prompt) + answer


def sft_batches(tokenizer, template: Template, texts, labels, batch_size: int, seed: int = 0):
    """A re-iterable list of left-padded SFT batches in a seeded shuffled order (epoch-fixed)."""
    examples = [sft_example(tokenizer, template, t, y) for t, y in zip(texts, labels)]
    order = np.random.default_rng(seed).permutation(len(examples))
    return [collate_left([examples[i][0] for i in chunk], tokenizer.pad_token_id,
                         labels=[examples[i][1] for i in chunk])
            for chunk in np.array_split(order, max(1, len(order) // batch_size))]


# ---------------------------------------------------------------------------- exercise checks
def check_calibrate(fn, quiet: bool = False):
    """fn(probs (N, 2), bias (2,)) -> calibrated (N, 2), compared with `calibrate`."""
    from .exercises import _call, _Failed, _run_check

    def body() -> str:
        rng = np.random.default_rng(4)
        probs = rng.dirichlet([2, 2], size=20)
        bias = np.array([0.3, 0.7])
        got = _call(fn, probs.copy(), bias.copy())
        if got is None:
            raise _Failed("return the calibrated probabilities, shape (20, 2).")
        got = np.asarray(got, dtype=float)
        if got.shape != probs.shape:
            raise _Failed(f"expected shape {probs.shape}, got {got.shape}.")
        if not np.allclose(got.sum(axis=1), 1):
            raise _Failed("each row must sum to 1: renormalise after dividing by the bias.")
        if not np.allclose(got, calibrate(probs, bias)):
            raise _Failed("rows differ from p / p_cf renormalised.")
        return "your calibration equals prompting.calibrate on 20 random rows."

    return _run_check(body, quiet)


def check_answer_mask(fn, tokenizer, quiet: bool = False):
    """fn(prompt_ids, answer_ids) -> (input_ids, labels) with -100 on the prompt."""
    from .exercises import _call, _Failed, _run_check

    def body() -> str:
        ids, labels = sft_example(tokenizer, TEMPLATES[0], "a fine film .", 1)
        n_answer = sum(label != -100 for label in labels)
        got = _call(fn, ids[:-n_answer], ids[-n_answer:])
        if got is None:
            raise _Failed("return (input_ids, labels), two lists of the same length.")
        got_ids, got_labels = (list(map(int, x)) for x in got)
        if got_ids != ids:
            raise _Failed("input_ids must be the prompt followed by the answer.")
        if got_labels != labels:
            wrong = "the answer tokens must keep their ids" if -100 in got_labels[-n_answer:] \
                else "every prompt token must be -100"
            raise _Failed(f"labels differ from sft_example: {wrong}.")
        return f"{len(ids) - n_answer} prompt tokens masked, {n_answer} answer tokens kept."

    return _run_check(body, quiet)
