"""Why did the classifier say that? Token attributions, attention, and where the model fails.

Integrated gradients (Sundararajan et al. 2017) attributes the prediction F(x) to each input
embedding by integrating the gradient along the straight path from a baseline x' (here: every
word replaced by [PAD], [CLS]/[SEP] kept) to the input:

    IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x')) / dx_i  da

and the attributions sum to F(x) - F(x') (completeness); Captum reports how far the numerical
integral is from that as the convergence delta. Attention weights, by contrast, say where a
head looked, not what changed the output (Jain & Wallace 2019, "Attention is not
Explanation"), so the two are shown side by side and their rank correlation is measured.

The probes at the end need only a `predict(texts) -> (N, 2) probabilities` function.
"""

from __future__ import annotations

import html
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

PredictFn = Callable[[Sequence[str]], np.ndarray]
LABELS = ("negative", "positive")


# ----------------------------------------------------------------------------- attributions
@dataclass(frozen=True)
class Attribution:
    """Per-token scores for one text: positive pushes towards `label`, negative against it."""

    tokens: list[str]
    scores: np.ndarray  # (T,)
    label: str
    probability: float
    delta: float  # completeness error of the numerical integral (0 is exact)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _encode(tokenizer, text: str, max_length: int, device, model=None) -> dict:
    if not isinstance(text, str):
        raise TypeError(f"Expected a text (str), got {type(text).__name__}.")
    if model is not None:
        from .checks import check_max_length

        max_length = check_max_length(model, max_length)
    enc = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
    return {k: enc[k].to(device) for k in ("input_ids", "attention_mask")}


@torch.no_grad()
def predict_one(model, tokenizer, text: str, max_length: int = 128) -> np.ndarray:
    """Class probabilities (2,) for one text."""
    model.eval()
    logits = model(**_encode(tokenizer, text, max_length, _device(model), model)).logits
    return torch.softmax(logits.float(), dim=-1)[0].cpu().numpy()


def integrated_gradients(model, tokenizer, text: str, target: int | None = None,
                         n_steps: int = 32, max_length: int = 128) -> Attribution:
    """Integrated-gradients attribution of each token to the probability of `target`
    (default: the predicted class), with Captum's LayerIntegratedGradients on the word
    embeddings. Scores are summed over the embedding dimension."""
    from captum.attr import LayerIntegratedGradients

    model.eval()
    enc = _encode(tokenizer, text, max_length, _device(model), model)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    special = torch.tensor(tokenizer.get_special_tokens_mask(ids[0].tolist(),
                                                             already_has_special_tokens=True),
                           device=ids.device, dtype=torch.bool)
    baseline = torch.where(special, ids, torch.full_like(ids, tokenizer.pad_token_id or 0))
    probs = predict_one(model, tokenizer, text, max_length)
    target = int(probs.argmax()) if target is None else int(target)

    def forward(input_ids, attention_mask):
        return torch.softmax(model(input_ids=input_ids, attention_mask=attention_mask).logits,
                             dim=-1)

    lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    attributions, delta = lig.attribute(ids, baselines=baseline, target=target,
                                        additional_forward_args=(mask,), n_steps=n_steps,
                                        internal_batch_size=n_steps,
                                        return_convergence_delta=True)
    scores = attributions.sum(dim=-1)[0].detach().cpu().numpy()
    tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    return Attribution(tokens, scores, LABELS[target], float(probs[target]), float(delta.abs()))


@torch.no_grad()
def attention_weights(model, tokenizer, text: str, max_length: int = 128) -> tuple[list[str],
                                                                                     np.ndarray]:
    """(tokens, weights (layers, heads, T, T)) from the eager attention implementation.

    SDPA kernels never materialise the weights, so the model is switched to "eager" for
    this call and switched back afterwards."""
    model.eval()
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        enc = _encode(tokenizer, text, max_length, _device(model), model)
        out = model(**enc, output_attentions=True)
    finally:
        model.set_attn_implementation(previous)
    weights = torch.stack(out.attentions)[:, 0].float().cpu().numpy()  # (L, H, T, T)
    return tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist()), weights


def cls_attention(weights: np.ndarray, layer: int = -1) -> np.ndarray:
    """How much [CLS] (the token the classifier reads) attends to each token: one layer,
    averaged over heads. (T,)"""
    return weights[layer, :, 0, :].mean(axis=0)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two score vectors (e.g. |IG| and attention)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def merge_wordpieces(tokens: Sequence[str], scores: np.ndarray,
                     skip_special: bool = True) -> tuple[list[str], np.ndarray]:
    """Join "##" word pieces into words, summing their scores; drop [CLS]/[SEP]/[PAD]."""
    words: list[str] = []
    merged: list[float] = []
    for token, score in zip(tokens, scores):
        if skip_special and token in ("[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"):
            continue
        if token.startswith("##") and words:
            words[-1] += token[2:]
            merged[-1] += float(score)
        else:
            words.append(token)
            merged.append(float(score))
    return words, np.asarray(merged)


def render_html(tokens: Sequence[str], scores: np.ndarray, title: str | None = None) -> str:
    """Tokens as coloured text: green pushes towards the label, red against it, intensity
    proportional to |score| / max |score|. Text is HTML-escaped."""
    scores = np.asarray(scores, dtype=float)
    scale = float(np.abs(scores).max()) or 1.0
    spans = []
    for token, score in zip(tokens, scores):
        alpha = min(abs(score) / scale, 1.0) * 0.8
        rgb = "0,160,60" if score >= 0 else "220,40,40"
        spans.append(f'<span title="{score:+.3f}" style="background: rgba({rgb},{alpha:.2f}); '
                     f'padding: 1px 2px; border-radius: 3px">{html.escape(token)}</span>')
    head = f"<div><b>{html.escape(title)}</b></div>" if title else ""
    return f'{head}<div style="line-height: 1.9">{" ".join(spans)}</div>'


class Attributions:
    """Word scores that show as coloured text in a notebook (`_repr_html_`) and as a plain
    "word +0.123" list everywhere else (GitHub, a terminal, a text export): no placeholder."""

    def __init__(self, words: Sequence[str], scores: np.ndarray, title: str | None = None):
        self.words, self.scores, self.title = list(words), np.asarray(scores, float), title

    def _repr_html_(self) -> str:
        return render_html(self.words, self.scores, self.title)

    def __repr__(self) -> str:
        body = " ".join(f"{w}({s:+.3f})" for w, s in zip(self.words, self.scores))
        return (f"{self.title}\n" if self.title else "") + body


def plot_attributions(words: Sequence[str], scores: np.ndarray, title: str | None = None,
                      ax=None):
    """Word scores as a horizontal bar chart, green for, red against: the static figure of
    an attribution (what a reader without a kernel sees of the explorer)."""
    import matplotlib.pyplot as plt

    scores = np.asarray(scores, float)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.25 * len(words) + 1.0))
    ax.barh(range(len(words)), scores, color=np.where(scores >= 0, "tab:green", "tab:red"))
    ax.set_yticks(range(len(words)), words, fontsize=9)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("attribution to the predicted label (integrated gradients)")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# ----------------------------------------------------------------------------- explorer
def explain_text(model, tokenizer, text: str, n_steps: int = 32,
                 max_length: int = 128) -> dict:
    """Everything the explorer shows for one sentence: label, probability, word attributions
    (integrated gradients), [CLS] attention of the last layer, both as HTML, and how well
    their rankings agree."""
    attribution = integrated_gradients(model, tokenizer, text, n_steps=n_steps,
                                       max_length=max_length)
    tokens, weights = attention_weights(model, tokenizer, text, max_length)
    words, word_scores = merge_wordpieces(attribution.tokens, attribution.scores)
    _, word_attention = merge_wordpieces(tokens, cls_attention(weights))
    agreement = (rank_correlation(np.abs(word_scores), word_attention)
                 if len(words) > 2 else float("nan"))
    return {
        "label": attribution.label,
        "probability": attribution.probability,
        "words": words,
        "attributions": word_scores,
        "attention": word_attention,
        "delta": attribution.delta,
        "rank_correlation": agreement,
        "html": render_html(words, word_scores,
                            f"Integrated gradients: {attribution.label} "
                            f"(p = {attribution.probability:.3f})")
        + render_html(words, word_attention, "[CLS] attention, last layer (always >= 0)"),
    }


def explorer(model, tokenizer, text: str = "The plot was not bad at all.", n_steps: int = 32):
    """An ipywidgets box: type a sentence, press Explain, see label, attributions, attention.

    The work is done by `explain_text`; this only wires widgets to it."""
    import ipywidgets as widgets

    class Explorer(widgets.VBox):
        def __repr__(self) -> str:  # the text a static copy shows instead of VBox(children=...)
            return (f"Explorer for {box.value!r} (interactive in a running notebook; "
                    "plot_attributions gives its static figure)")

    box = widgets.Text(value=text, description="Sentence", layout=widgets.Layout(width="90%"))
    button = widgets.Button(description="Explain")
    output = widgets.HTML()

    def on_click(_=None) -> None:
        if not box.value.strip():
            output.value = "<i>Type a sentence first.</i>"
            return
        result = explain_text(model, tokenizer, box.value, n_steps=n_steps)
        output.value = (result["html"] + f"<div>rank correlation |IG| vs attention: "
                        f"{result['rank_correlation']:.2f}</div>")

    button.on_click(on_click)
    on_click()
    return Explorer([box, button, output])


# ----------------------------------------------------------------------------- failure modes
NEGATION = re.compile(r"\b(?:not|no|never|nothing|nobody|none|neither|nor|without|hardly|"
                      r"barely|cannot)\b|n't\b", re.IGNORECASE)


def has_negation(text: str) -> bool:
    """True when the text contains a negation word (not, never, n't, no, without, ...)."""
    return bool(NEGATION.search(text))


def error_analysis(texts: Sequence[str], labels: Sequence[int], probs: np.ndarray,
                   n_length_bins: int = 4):
    """One row per example: words, length bin (quartiles), negation, correct, confidence."""
    import pandas as pd

    probs = np.asarray(probs)
    frame = pd.DataFrame({
        "text": list(texts),
        "label": np.asarray(labels, dtype=int),
        "pred": probs.argmax(axis=1),
        "confidence": probs.max(axis=1),
    })
    frame["words"] = frame["text"].str.split().str.len()
    frame["length"] = pd.qcut(frame["words"], q=n_length_bins, duplicates="drop")
    frame["negation"] = frame["text"].map(has_negation)
    frame["correct"] = frame["label"] == frame["pred"]
    return frame


def accuracy_by(frame, column: str):
    """Accuracy and count per value of `column` in an `error_analysis` frame."""
    return (frame.groupby(column, observed=True)["correct"]
            .agg(accuracy="mean", n="size").reset_index())


# Word swaps that should not change sentiment. Each maps both ways. Only near-synonyms go in
# "neutral": swapping "the" for "this" everywhere is not harmless ("by this end", "this
# viewer"), it makes ungrammatical text, so it measures robustness to noise, not bias.
SWAPS: dict[str, dict[str, str]] = {
    "pronouns": {"he": "she", "him": "her", "his": "her", "himself": "herself", "man": "woman",
                 "men": "women", "actor": "actress", "boy": "girl", "father": "mother"},
    "names": {"john": "maria", "michael": "aisha", "david": "mei", "james": "fatima",
              "tom": "priya", "robert": "lakshmi"},
    "neutral": {"movie": "film", "film": "movie", "watched": "saw", "films": "movies"},
}


def swap_words(text: str, mapping: dict[str, str]) -> str:
    """Replace whole words by `mapping` (both directions, case kept)."""
    both = {**{v: k for k, v in mapping.items()}, **mapping}
    # "her" maps back ambiguously (him / his): the forward direction wins for the keys.
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, both)) + r")\b", re.IGNORECASE)

    def replace(match: re.Match) -> str:
        word = match.group(0)
        new = both[word.lower()]
        return new.capitalize() if word[0].isupper() else new

    return pattern.sub(replace, text)


def counterfactual_probe(predict: PredictFn, texts: Sequence[str],
                         swaps: dict[str, dict[str, str]] | None = None):
    """How far P(positive) moves when words that should not matter are swapped.

    One row per swap family: texts affected, mean and max |change| in P(positive), the share
    of affected texts whose predicted label flips, and the text that moved most, before and
    after the swap (`worst_before`, `worst_after`)."""
    import pandas as pd

    swaps = swaps or SWAPS
    texts = list(texts)
    base = np.asarray(predict(texts))
    rows = []
    for name, mapping in swaps.items():
        swapped = [swap_words(t, mapping) for t in texts]
        changed = [i for i, (a, b) in enumerate(zip(texts, swapped)) if a != b]
        if not changed:
            rows.append(dict(swap=name, texts=0, mean_abs_change=np.nan, max_abs_change=np.nan,
                             flip_rate=np.nan, worst_before=None, worst_after=None))
            continue
        new = np.asarray(predict([swapped[i] for i in changed]))
        old = base[changed]
        move = np.abs(new[:, 1] - old[:, 1])
        worst = changed[int(move.argmax())]
        rows.append(dict(swap=name, texts=len(changed), mean_abs_change=float(move.mean()),
                         max_abs_change=float(move.max()),
                         flip_rate=float((new.argmax(1) != old.argmax(1)).mean()),
                         worst_before=texts[worst], worst_after=swapped[worst]))
    return pd.DataFrame(rows)


def add_typos(text: str, rate: float, seed: int = 0) -> str:
    """Give each word of 4+ letters a typo with probability `rate`: swap two inner letters,
    drop one, or double one (the slips people make on keyboards)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate is a probability in [0, 1], got {rate}.")
    rng = random.Random(f"{seed}:{text}")
    out = []
    for word in text.split(" "):
        if len(word) >= 4 and word.isalpha() and rng.random() < rate:
            i = rng.randrange(1, len(word) - 2)
            edit = rng.choice(("swap", "drop", "double"))
            if edit == "swap":
                word = word[:i] + word[i + 1] + word[i] + word[i + 2:]
            elif edit == "drop":
                word = word[:i] + word[i + 1:]
            else:
                word = word[:i] + word[i] + word[i:]
        out.append(word)
    return " ".join(out)


def typo_probe(predict: PredictFn, texts: Sequence[str], labels: Sequence[int],
               rates: Sequence[float] = (0.0, 0.1, 0.2, 0.4), seed: int = 0):
    """Accuracy and label-flip rate (vs. the clean text) as the typo rate grows."""
    import pandas as pd

    texts, labels = list(texts), np.asarray(labels)
    clean = np.asarray(predict(texts)).argmax(1)
    rows = []
    for rate in rates:
        noisy = [add_typos(t, rate, seed) for t in texts] if rate else texts
        pred = np.asarray(predict(noisy)).argmax(1)
        rows.append(dict(typo_rate=rate, accuracy=float((pred == labels).mean()),
                         flip_rate=float((pred != clean).mean())))
    return pd.DataFrame(rows)
