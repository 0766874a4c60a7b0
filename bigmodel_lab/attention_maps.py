"""Attention maps to look at: a pretrained model's weights for a sentence, and a toy
attention whose d_k and temperature a reader can turn (the logic behind notebook 02's
ipywidgets explorer; tests call it headless).
"""

from __future__ import annotations

import math
import zlib

import torch


def model_attention(model, tokenizer, sentence: str, max_length: int = 64) -> tuple[list[str], torch.Tensor]:
    """Tokens and attention weights (layers, heads, T, T) of a Hugging Face encoder.

    The model must be loaded with attn_implementation="eager": fused kernels return no weights.
    """
    from .checks import check_max_length

    max_length = check_max_length(model, max_length)
    enc = tokenizer(sentence, return_tensors="pt", truncation=True, max_length=max_length)
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise ValueError(
            "The model returned no attention weights. Load it with attn_implementation='eager' "
            "(e.g. models.load_pretrained(..., attn_implementation='eager')) or call "
            "model.set_attn_implementation('eager')."
        )
    weights = torch.stack(out.attentions).squeeze(1)  # (L, H, T, T)
    return tokenizer.convert_ids_to_tokens(enc["input_ids"][0]), weights


def _word_vector(word: str, d_k: int, role: str) -> torch.Tensor:
    # the same word always gets the same random vector (seeded by its text), unit variance
    g = torch.Generator().manual_seed(zlib.crc32(f"{role}:{word.lower()}".encode()))
    return torch.randn(d_k, generator=g)


def toy_attention(sentence: str, d_k: int = 64, temperature: float = 1.0, scaled: bool = True):
    """Self-attention weights (T, T) over the words of `sentence`, with random unit-variance
    query/key vectors of size d_k per word: softmax(q k^T / (sqrt(d_k) * temperature)).

    With scaled=False the sqrt(d_k) is left out, so a larger d_k sharpens every row.
    """
    words = sentence.split()
    if not words:
        raise ValueError("Type a sentence with at least one word.")
    if d_k < 1 or temperature <= 0:
        raise ValueError(f"d_k must be >= 1 and temperature > 0, got d_k={d_k}, temperature={temperature}.")
    q = torch.stack([_word_vector(w, d_k, "q") for w in words])  # (T, d_k)
    k = torch.stack([_word_vector(w, d_k, "k") for w in words])  # (T, d_k)
    scores = q @ k.T / ((math.sqrt(d_k) if scaled else 1.0) * temperature)
    return words, torch.softmax(scores, -1)


def row_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each attention row: log(T) for uniform, 0 for one-hot."""
    return -(weights * weights.clamp_min(1e-12).log()).sum(-1)


def plot_toy_attention(sentence: str, d_k: int = 64, temperature: float = 1.0,
                       scaled: bool = True, ax=None):
    """The explorer's heatmap as a plain figure (what a static copy of the notebook shows)."""
    import matplotlib.pyplot as plt

    words, w = toy_attention(sentence, d_k, temperature, scaled)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(w, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(words)), words, rotation=90)
    ax.set_yticks(range(len(words)), words)
    ax.set(xlabel="key", ylabel="query")
    ax.set_title(f"d_k = {d_k}, {'scaled' if scaled else 'unscaled'}, T = {temperature:g}: "
                 f"mean row entropy {row_entropy(w).mean():.2f} nats", fontsize=9)
    return ax


def build_explorer(sentence: str = "the cat sat on the mat because it was tired"):
    """An ipywidgets explorer over `toy_attention`: d_k and temperature sliders, a text box,
    a scaled/unscaled toggle. Returns the widget (display it in a notebook); outside a live
    notebook it reads as one line naming its sentence, and `plot_toy_attention` draws the
    same heatmap as a static figure."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    class Explorer(widgets.VBox):
        def __repr__(self) -> str:  # what a static copy shows instead of VBox(children=...)
            return (f"Attention explorer for {text.value!r} (sliders in a running notebook; "
                    "plot_toy_attention draws its heatmap)")

    text = widgets.Text(value=sentence, description="sentence")
    d_k = widgets.IntSlider(value=64, min=1, max=1024, step=1, description="d_k")
    temp = widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=1, description="temperature")
    scaled = widgets.Checkbox(value=True, description="divide by sqrt(d_k)")

    def show(sentence, d_k, temperature, scaled):
        plot_toy_attention(sentence, d_k, temperature, scaled)
        plt.show()

    out = widgets.interactive_output(show, {"sentence": text, "d_k": d_k, "temperature": temp, "scaled": scaled})
    return Explorer([text, widgets.HBox([d_k, temp, scaled]), out])
