"""Figures and the interactive decoding panel of notebook 14.

`next_token_figure` draws the top next tokens before and after the knobs, with a sampled
continuation; `build_panel` wraps it in ipywidgets (prompt text box, temperature / top-k /
top-p sliders). The notebook draws `next_token_figure` once with the default values, so the
committed output shows a real figure where a reader without a kernel sees no widget.
"""

from __future__ import annotations

import torch

from .generate import generate_text, next_token_probs

DEFAULTS = dict(temperature=0.8, top_k=50, top_p=0.95)


def _token_label(tokenizer, token_id: int) -> str:
    text = tokenizer.decode([token_id])
    return repr(text)[1:-1] if text.strip() else repr(text)


def next_token_figure(model, tokenizer, prompt: str, temperature: float = 0.8,
                      top_k: int | None = 50, top_p: float = 0.95, n_show: int = 12,
                      max_new_tokens: int = 24, seed: int = 0):
    """Bars: probability of the `n_show` most likely next tokens, raw (T = 1, no filter) and
    after the knobs; below, one continuation sampled with the same knobs. Returns the figure."""
    import matplotlib.pyplot as plt

    top_k = top_k or None  # 0 from a slider means "off"
    raw = next_token_probs(model, tokenizer, prompt)
    knobbed = next_token_probs(model, tokenizer, prompt, temperature=temperature, top_k=top_k,
                               top_p=top_p)
    ids = torch.topk(raw, n_show).indices.tolist()
    labels = [_token_label(tokenizer, i) for i in ids]
    kept = int((knobbed > 0).sum())
    text = generate_text(model, tokenizer, prompt, max_new_tokens, seed=seed,
                         temperature=temperature, top_k=top_k, top_p=top_p)[0]
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=100)
    y = range(n_show)
    ax.barh([i + 0.2 for i in y], raw[ids].tolist(), height=0.4, color="0.7", label="raw (T = 1)")
    ax.barh([i - 0.2 for i in y], knobbed[ids].tolist(), height=0.4, color="tab:blue",
            label=f"T = {temperature:g}, top-k = {top_k or 'off'}, top-p = {top_p:g}")
    ax.set_yticks(list(y), labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("probability of the next token")
    ax.set_title(f"{kept} token(s) can be sampled; the top one has "
                 f"{float(knobbed.max()):.0%} after the knobs", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    shown = text.replace("\n", " ")
    fig.text(0.01, -0.02, "sampled: " + (shown[:110] + "..." if len(shown) > 110 else shown),
             fontsize=8, ha="left", va="top", wrap=True)
    fig.tight_layout()
    return fig


def build_panel(model, tokenizer, prompt: str = "Write one sentence about the sea.",
                max_new_tokens: int = 24):
    """An ipywidgets panel: prompt text, temperature / top-k / top-p sliders -> the bars of
    `next_token_figure` and a sampled continuation. Widget descriptions are stable ("prompt",
    "temperature", "top-k", "top-p") so a browser test can find them. Updates on release of a
    slider or Enter in the text box (each update runs the model)."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    style = {"description_width": "80px"}
    text = widgets.Text(value=prompt, description="prompt", continuous_update=False,
                        layout=widgets.Layout(width="520px"), style=style)
    temperature = widgets.FloatSlider(value=DEFAULTS["temperature"], min=0.05, max=2.0, step=0.05,
                                      description="temperature", continuous_update=False, style=style)
    top_k = widgets.IntSlider(value=DEFAULTS["top_k"], min=0, max=200, step=1,
                              description="top-k", continuous_update=False, style=style)
    top_p = widgets.FloatSlider(value=DEFAULTS["top_p"], min=0.05, max=1.0, step=0.05,
                                description="top-p", continuous_update=False, style=style)

    def show(prompt, temperature, top_k, top_p):
        next_token_figure(model, tokenizer, prompt, temperature, top_k, top_p,
                          max_new_tokens=max_new_tokens)
        plt.show()

    out = widgets.interactive_output(show, {"prompt": text, "temperature": temperature,
                                            "top_k": top_k, "top_p": top_p})
    note = widgets.HTML("top-k = 0 means off; each change runs the model once for the bars and "
                        f"{max_new_tokens} steps for the continuation.")
    return widgets.VBox([text, widgets.HBox([temperature, top_k, top_p]), note, out])


def knob_effects_figure(probs_by_knob: dict[str, dict[str, torch.Tensor]], labels: list[str],
                        ids: list[int]):
    """One panel per knob (temperature, top-k, top-p, repetition penalty): the probabilities of
    the same tokens `ids` under each setting. `probs_by_knob[knob][setting] = probs (V,)`."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(probs_by_knob), figsize=(3.2 * len(probs_by_knob), 3.4),
                             dpi=100, sharey=True)
    for ax, (knob, settings) in zip(axes, probs_by_knob.items()):
        width = 0.8 / len(settings)
        for j, (setting, probs) in enumerate(settings.items()):
            ax.bar([i + j * width for i in range(len(ids))], probs[ids].tolist(), width=width,
                   label=setting)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(ids))], labels, rotation=60,
                      fontsize=8)
        ax.set_title(knob, fontsize=10)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("probability of the next token")
    fig.tight_layout()
    return fig


def architecture_figure():
    """Three blocks side by side: the 2017 Transformer (post-LN), GPT-2 (pre-LN), Llama."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    columns = {
        "Transformer (2017)": ["x + sinusoid(pos)", "multi-head attention", "add, then LayerNorm",
                               "Linear-ReLU-Linear", "add, then LayerNorm"],
        "GPT-2 (2019)": ["x + learned(pos)", "LayerNorm", "multi-head attention, add",
                         "LayerNorm", "Linear-GELU-Linear, add"],
        "Llama / SmolLM2": ["x (no position added)", "RMSNorm", "grouped-query attn + RoPE on q, k, add",
                            "RMSNorm", "SwiGLU, add"],
    }
    changed = {("GPT-2 (2019)", 1), ("GPT-2 (2019)", 3), ("GPT-2 (2019)", 0),
               ("Llama / SmolLM2", 0), ("Llama / SmolLM2", 1), ("Llama / SmolLM2", 2),
               ("Llama / SmolLM2", 3), ("Llama / SmolLM2", 4), ("GPT-2 (2019)", 4)}
    fig, ax = plt.subplots(figsize=(9.5, 3.8), dpi=100)
    for c, (name, boxes) in enumerate(columns.items()):
        x = c * 3.3
        ax.text(x + 1.4, 5.6, name, ha="center", fontsize=10, weight="bold")
        for r, label in enumerate(boxes):
            y = 4.6 - r * 1.0
            color = "#cfe2f3" if (name, r) in changed else "#eeeeee"
            ax.add_patch(FancyBboxPatch((x, y), 2.8, 0.7, boxstyle="round,pad=0.05", fc=color, ec="0.4"))
            ax.text(x + 1.4, y + 0.35, label, ha="center", va="center", fontsize=8)
            if r:
                ax.annotate("", (x + 1.4, y + 0.72), (x + 1.4, y + 1.0),
                            arrowprops=dict(arrowstyle="->", color="0.4"))
    ax.text(0, -0.2, "blue: changed from the column on the left. Each block repeats N times; "
            "GPT-2 and Llama end with a final norm and an output layer tied to the embeddings.",
            fontsize=8)
    ax.set(xlim=(-0.2, 9.6), ylim=(-0.4, 6.0))
    ax.axis("off")
    ax.set_title("One decoder layer, 2017 -> 2019 -> 2023: where the norm sits, which norm, "
                 "which activation, how positions enter", fontsize=10)
    return fig


def show_panel(panel) -> None:
    """Display an ipywidgets panel whose plain-text fallback is a sentence, not
    "VBox(children=...)": a static copy of the notebook shows the figure drawn after it."""
    from IPython.display import display

    bundle = panel._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else dict(bundle)
    bundle["text/plain"] = ("Interactive panel (prompt, temperature, top-k, top-p): run the notebook "
                            "to use it. The figure below shows the default values.")
    display(bundle, raw=True)
