"""The map of the book: one row per notebook (the README table and notebook 00 read it)."""

from __future__ import annotations

from dataclasses import dataclass

REPO = "bigmodel-lab/bigmodel-lab"
COLAB = "https://colab.research.google.com/github/{repo}/blob/main/notebooks/{file}"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


@dataclass(frozen=True)
class Chapter:
    id: str
    slug: str
    title: str
    learn: str
    budget: dict  # time budget per profile: smoke / cpu / gpu
    gpu: str  # "no", "optional" or "recommended"

    @property
    def file(self) -> str:
        return f"{self.id}_{self.slug}.ipynb"

    @property
    def colab_url(self) -> str:
        return COLAB.format(repo=REPO, file=self.file)


def _b(smoke: str, cpu: str, gpu: str) -> dict:
    return {"smoke": smoke, "cpu": cpu, "gpu": gpu}


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("00", "welcome", "Welcome and environment check",
            "what the book covers; profiles; a first real prediction", _b("<1 min", "1 min", "1 min"),
            "no"),
    Chapter("01", "neural_network_basics", "Neural-network basics",
            "neurons, activations, losses, gradient descent, backprop; errata of the sources",
            _b("<1 min", "<5 min", "<5 min"), "no"),
    Chapter("02", "attention_from_first_principles", "Attention from first principles",
            "scaled dot-product attention, why sqrt(d_k), masks, attention maps of a real model",
            _b("<1 min", "<5 min", "<5 min"), "no"),
    Chapter("03", "positional_encoding_and_multi_head", "Positional encoding and multi-head",
            "sinusoidal, learned and rotary positions; multi-head attention; the n^2 cost",
            _b("<1 min", "<5 min", "<5 min"), "no"),
    Chapter("04", "transformer_from_scratch", "A transformer from scratch",
            "encoder and decoder blocks; loading real BERT weights and matching Hugging Face",
            _b("<1 min", "<5 min", "<5 min"), "no"),
    Chapter("05", "pretraining_a_tiny_gpt", "Pretraining a tiny GPT",
            "BPE tokenization, next-token training, perplexity vs n-gram baselines, KV cache",
            _b("<1 min", "~10 min", "~30 min"), "optional"),
    Chapter("06", "finetuning_on_sst2", "Fine-tuning on SST-2",
            "Trainer vs our own loop, calibration, error analysis", _b("<1.5 min", "~10 min",
                                                                          "~15 min"), "optional"),
    Chapter("07", "imdb_from_baselines_to_transformers", "IMDb: baselines to transformers",
            "majority, TF-IDF, LSTM, transformer; long-text strategies", _b("<1.5 min", "~14 min",
                                                                            "~30 min"), "optional"),
    Chapter("08", "pruning", "Pruning", "unstructured vs structured (attention heads), measured",
            _b("<1.5 min", "~8 min", "<15 min"), "no"),
    Chapter("09", "quantization", "Quantization",
            "int8 scale/zero-point, dynamic int8, ONNX Runtime int8", _b("<1.5 min", "<15 min",
                                                                          "<15 min"), "no"),
    Chapter("10", "knowledge_distillation", "Knowledge distillation",
            "soft targets, a two-layer student, the accuracy-latency Pareto front",
            _b("<1.5 min", "<15 min", "<15 min"), "optional"),
    Chapter("11", "deployment_and_cost", "Deployment and cost",
            "inference engines, a web service, FLOPs/memory/money, data privacy",
            _b("<1.5 min", "<10 min", "<10 min"), "no"),
    Chapter("12", "interpretability_and_limits", "Interpretability and limits",
            "integrated gradients, attention vs attribution, failure probes",
            _b("<1.5 min", "<10 min", "<10 min"), "no"),
    Chapter("13", "results_dashboard", "Results dashboard",
            "this book's results beside published figures; an HTML report",
            _b("<1 min", "<1 min", "<1 min"), "no"),
    # Part VI: a real pretrained LLM (SmolLM2), rebuilt, decoded, measured and served.
    Chapter("14", "a_real_llm_from_scratch", "A real LLM from scratch",
            "Llama's RMSNorm, RoPE, SwiGLU and grouped-query attention on SmolLM2's weights; "
            "decoding knobs; the memory-bandwidth bound", _b("<1.5 min", "~3 min", "<15 min"),
            "optional"),
    Chapter("15", "tokens_perplexity_and_cost", "Tokens, perplexity and cost",
            "tokenizers on English and Chinese, bits per byte, 4-bit and int8 decoders, "
            "a streaming endpoint", _b("<1.5 min", "~2 min", "<15 min"), "optional"),
    # Part VII: adapting an LLM to a task.
    Chapter("16", "prompting_vs_finetuning_vs_lora", "Prompting vs fine-tuning vs LoRA",
            "zero/few-shot scoring, calibration, LoRA from scratch and with peft, what to ship",
            _b("<1.5 min", "~14 min", "<15 min"), "optional"),
    Chapter("17", "preference_tuning", "Preference tuning",
            "a reward model, preference pairs, the DPO loss, reward hacking",
            _b("<1.5 min", "~11 min", "<15 min"), "optional"),
)


def chapters():
    """The book map as a DataFrame (notebook 00 shows it)."""
    import pandas as pd

    return pd.DataFrame(
        [{"notebook": c.file, "title": c.title, "you learn": c.learn, **{
            f"{p} budget": t for p, t in c.budget.items()}, "GPU": c.gpu} for c in CHAPTERS]
    )


def readme_table() -> str:
    """The README's notebook table, with a Colab badge per notebook."""
    rows = ["| # | Notebook | You learn | cpu budget | GPU | Colab |", "|---|---|---|---|---|---|"]
    for c in CHAPTERS:
        badge = f"[![Open In Colab]({COLAB_BADGE})]({c.colab_url})"
        rows.append(f"| {c.id} | [{c.title}](notebooks/{c.file}) | {c.learn} | "
                    f"{c.budget['cpu']} | {c.gpu} | {badge} |")
    return "\n".join(rows)
