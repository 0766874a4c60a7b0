"""What a transformer costs: parameters, FLOPs, memory, GPU-hours and money, from its shape.

The rules of thumb (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", sec. 2.1):

    forward FLOPs  ~ 2 N per token          (one multiply + one add per weight)
    training FLOPs ~ 6 N per token          (backward costs about twice the forward)

where N is the parameter count. The refined forward count used here keeps only the weights that
take part in matrix multiplications (embedding look-ups are free) and adds the attention
scores, which grow with the sequence length T:

    forward FLOPs per sequence = 2 N_matmul T + 4 L T^2 d   (Q K^T and the weighted sum of V)

Training memory with Adam is weights + gradients + two moment tensors per weight + the
activations saved for the backward pass; per layer those are, in bytes (Korthikanti et al.
2022, "Reducing Activation Recomputation in Large Transformer Models", sec. 4.1, written for
p bytes per value and 1-byte dropout masks):

    activations per layer ~ p (16 s b h + 2 a s^2 b) + 2 s b h + a s^2 b

with s the sequence length, b the batch, h the hidden size, a the heads. Their 16-bit figure
34 s b h + 5 a s^2 b is this formula at p = 2.
"""

from __future__ import annotations

import gc
import math
import os
import sys
from dataclasses import dataclass, replace

FAMILIES = ("bert", "distilbert", "llama")


@dataclass(frozen=True)
class Architecture:
    """The shape of a transformer, enough to count its parameters, FLOPs and memory.

    family "bert": post-LayerNorm encoder with learned positions, token types and biases
    (BERT, MiniLM); "distilbert": the same without token types or pooler; "llama": pre-RMSNorm
    decoder with a gated (SwiGLU) MLP, rotary positions, no biases, untied output head.
    `num_labels` > 0 adds a classification head (encoders).
    """

    name: str
    family: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    num_kv_heads: int | None = None  # grouped-query attention (llama); None = num_heads
    num_labels: int = 0
    tied_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"Unknown family {self.family!r}. Use one of: {', '.join(FAMILIES)}.")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}: "
                "pick a head count that divides it."
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads


# Published shapes. BERT: Devlin et al. 2019 (Table/section 3); LLaMA: Touvron et al. 2023
# (Table 2); Llama 2: Touvron et al. 2023b (Table 1, config of meta-llama/Llama-2-70b-hf).
BERT_BASE = Architecture("BERT-base", "bert", 30522, 768, 12, 12, 3072)
BERT_LARGE = Architecture("BERT-large", "bert", 30522, 1024, 24, 16, 4096)
LLAMA_7B = Architecture("LLaMA-7B", "llama", 32000, 4096, 32, 32, 11008,
                        max_position_embeddings=2048, type_vocab_size=0, tied_embeddings=False)
LLAMA2_70B = Architecture("Llama-2-70B", "llama", 32000, 8192, 80, 64, 28672,
                          max_position_embeddings=4096, type_vocab_size=0, num_kv_heads=8,
                          tied_embeddings=False)


@dataclass(frozen=True)
class PublishedRun:
    """A published pre-training run: tokens seen and GPU-hours spent, with the citation."""

    model: str
    tokens: float
    gpu_hours: float | None
    gpu: str | None
    citation: str


PUBLISHED_RUNS = {
    "BERT-large": PublishedRun(
        "BERT-large", 1_000_000 * 256 * 512, None, None,
        "Devlin et al. 2019, BERT, sec. A.2: 1M steps of 256 sequences x 512 tokens "
        "(an upper bound: 90% of steps used 128 tokens); trained on 64 TPU chips for 4 days"),
    "LLaMA-7B": PublishedRun(
        "LLaMA-7B", 1.0e12, 82_432, "A100-80GB",
        "Touvron et al. 2023, LLaMA, Table 15 (GPU-hours) and sec. 2 (1.0T tokens)"),
    "Llama-2-70B": PublishedRun(
        "Llama-2-70B", 2.0e12, 1_720_320, "A100-80GB",
        "Touvron et al. 2023b, Llama 2, Table 2 (GPU-hours) and sec. 2.2 (2.0T tokens)"),
}

# Peak dense tensor-core throughput in FLOP/s (vendor datasheets, without sparsity).
GPU_PEAK_FLOPS = {
    "T4 (fp16)": 65e12,
    "A100 (bf16)": 312e12,
    "H100 SXM (bf16)": 989e12,
}


def from_config(config, name: str | None = None, num_labels: int | None = None) -> Architecture:
    """An `Architecture` from a Hugging Face config (bert, distilbert or llama-like)."""
    model_type = getattr(config, "model_type", "")
    labels = num_labels if num_labels is not None else 0
    if model_type == "bert":
        return Architecture(
            name or config.name_or_path or "bert", "bert", config.vocab_size, config.hidden_size,
            config.num_hidden_layers, config.num_attention_heads, config.intermediate_size,
            config.max_position_embeddings, config.type_vocab_size, num_labels=labels)
    if model_type == "distilbert":
        return Architecture(
            name or "distilbert", "distilbert", config.vocab_size, config.dim, config.n_layers,
            config.n_heads, config.hidden_dim, config.max_position_embeddings, 0,
            num_labels=labels)
    if model_type in ("llama", "mistral", "qwen2"):
        return Architecture(
            name or model_type, "llama", config.vocab_size, config.hidden_size,
            config.num_hidden_layers, config.num_attention_heads, config.intermediate_size,
            config.max_position_embeddings, 0, config.num_key_value_heads,
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)))
    raise ValueError(
        f"No parameter formula for model_type {model_type!r}; supported: bert, distilbert, "
        "llama (and llama-like mistral, qwen2). Build an Architecture by hand instead."
    )


def parameter_breakdown(arch: Architecture) -> dict[str, int]:
    """Exact parameter counts by part: embedding, attention, mlp, norm, head, and total."""
    d, i, layers = arch.hidden_size, arch.intermediate_size, arch.num_layers
    if arch.family in ("bert", "distilbert"):
        embedding = (arch.vocab_size + arch.max_position_embeddings + arch.type_vocab_size) * d
        attention = layers * 4 * (d * d + d)  # q, k, v, output projections with biases
        mlp = layers * (2 * d * i + i + d)
        norm = layers * 2 * 2 * d + 2 * d  # two LayerNorms per layer + the embedding one
        head = 0
        if arch.num_labels:
            # bert: pooler (d x d) then classifier; distilbert: pre_classifier then classifier
            head = d * d + d + d * arch.num_labels + arch.num_labels
    else:
        kv = arch.kv_heads * arch.head_dim
        embedding = arch.vocab_size * d
        attention = layers * (2 * d * d + 2 * d * kv)  # q, o: d x d; k, v: d x kv (no biases)
        mlp = layers * 3 * d * i  # gate, up, down
        norm = layers * 2 * d + d  # two RMSNorms per layer + the final one
        head = 0 if arch.tied_embeddings else arch.vocab_size * d
    total = embedding + attention + mlp + norm + head
    return dict(embedding=embedding, attention=attention, mlp=mlp, norm=norm, head=head,
                total=total)


def count_parameters(arch: Architecture) -> int:
    """Total parameter count N."""
    return parameter_breakdown(arch)["total"]


def matmul_parameters(arch: Architecture) -> int:
    """Weights used in matrix multiplications for every token (no embeddings, biases, norms)."""
    d, i, layers = arch.hidden_size, arch.intermediate_size, arch.num_layers
    if arch.family in ("bert", "distilbert"):
        return layers * (4 * d * d + 2 * d * i)
    kv = arch.kv_heads * arch.head_dim
    out_head = arch.vocab_size * d  # a decoder's output projection runs for every token
    return layers * (2 * d * d + 2 * d * kv + 3 * d * i) + out_head


def forward_flops(arch: Architecture, batch: int, seq_len: int) -> dict[str, float]:
    """Forward-pass FLOPs for `batch` sequences of `seq_len` tokens.

    "rule_of_thumb" is 2 N per token; "refined" is 2 N_matmul per token plus the attention
    score and value products 4 L T^2 d per sequence (what a FLOP counter sees).
    """
    tokens = batch * seq_len
    attention = 4 * arch.num_layers * batch * seq_len**2 * arch.hidden_size
    return dict(
        rule_of_thumb=2.0 * count_parameters(arch) * tokens,
        refined=2.0 * matmul_parameters(arch) * tokens + attention,
        attention_share=attention / (2.0 * matmul_parameters(arch) * tokens + attention),
    )


def training_flops(arch: Architecture, tokens: float) -> float:
    """About 6 N FLOPs per training token: forward (2N) plus backward (4N)."""
    return 6.0 * count_parameters(arch) * tokens


def activation_bytes(arch: Architecture, batch: int, seq_len: int, bytes_per_value: int = 4,
                     dropout: bool = True, attention_scores_saved: bool = True) -> float:
    """Activations saved for backward, all layers (Korthikanti et al. 2022, sec. 4.1).

    `attention_scores_saved=False` models fused attention kernels (flash / memory-efficient
    attention) that recompute the T x T scores in the backward pass instead of storing them.
    `dropout=False` drops the 1-byte masks (models without dropout, e.g. LLaMA).
    """
    s, b, h, a, p = seq_len, batch, arch.hidden_size, arch.num_heads, bytes_per_value
    per_layer = p * 16 * s * b * h + (2 * s * b * h if dropout else 0)
    if attention_scores_saved:
        per_layer += p * 2 * a * s * s * b + (a * s * s * b if dropout else 0)
    return float(arch.num_layers * per_layer)


def training_memory(arch: Architecture, batch: int, seq_len: int, mixed_precision: bool = False,
                    attention_scores_saved: bool = True) -> dict[str, float]:
    """Bytes to train with Adam: weights, gradients, optimizer states, activations, total.

    fp32: 4 + 4 + 8 bytes per parameter. Mixed precision (Rajbhandari et al. 2020, ZeRO,
    sec. 3.1): 2-byte weights and gradients plus 12 bytes of fp32 master weights and moments,
    with 2-byte activations. The same 16 bytes per parameter either way.
    """
    n = count_parameters(arch)
    if mixed_precision:
        weights, grads, optimizer, p = 2 * n, 2 * n, 12 * n, 2
    else:
        weights, grads, optimizer, p = 4 * n, 4 * n, 8 * n, 4
    acts = activation_bytes(arch, batch, seq_len, p, dropout=arch.family != "llama",
                            attention_scores_saved=attention_scores_saved)
    out = dict(weights=float(weights), gradients=float(grads), optimizer=float(optimizer),
               activations=acts)
    out["total"] = sum(out.values())
    return out


def inference_memory(arch: Architecture, batch: int, seq_len: int,
                     bytes_per_value: int = 2) -> dict[str, float]:
    """Bytes to serve: weights, KV cache (decoders keep keys and values of every token),
    and the largest transient activation (one layer's MLP or attention scores)."""
    p = bytes_per_value
    weights = float(count_parameters(arch) * p)
    kv_cache = 0.0
    if arch.family == "llama":
        kv_cache = float(2 * arch.num_layers * batch * seq_len * arch.kv_heads * arch.head_dim * p)
    transient = float(p * batch * seq_len * max(arch.intermediate_size * 2,
                                                arch.num_heads * seq_len, 3 * arch.hidden_size))
    return dict(weights=weights, kv_cache=kv_cache, activations=transient,
                total=weights + kv_cache + transient)


def gpu_hours(flops: float, peak_flops: float, utilization: float = 0.4) -> float:
    """Hours on one GPU that sustains `utilization` (model FLOPs utilization) of its peak."""
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], got {utilization}: 0.3-0.5 is typical.")
    return flops / (peak_flops * utilization) / 3600.0


def money(hours: float, price_per_hour: float) -> float:
    """Hours times the price you pay per GPU-hour (set your own: it varies by cloud and year)."""
    if price_per_hour < 0:
        raise ValueError(f"price_per_hour must be >= 0, got {price_per_hour}.")
    return hours * price_per_hour


def implied_utilization(arch: Architecture, run: PublishedRun, peak_flops: float) -> float:
    """The utilization a published run must have reached, given 6 N D and its GPU-hours."""
    if run.gpu_hours is None:
        raise ValueError(f"{run.model} has no published GPU-hours.")
    return training_flops(arch, run.tokens) / (run.gpu_hours * 3600.0 * peak_flops)


def scale_table(archs: list[Architecture], tokens: dict[str, float], batch: int, seq_len: int,
                peak_flops: float, price_per_hour: float, utilization: float = 0.4,
                mixed_precision: bool = True, gpu_memory_gb: float = 80.0):
    """One row per architecture: parameters, training FLOPs for `tokens[name]`, GPU-hours,
    money, training memory (batch x seq_len), the GPUs of `gpu_memory_gb` needed just to hold
    it (`min_gpus`), and inference memory (16-bit, batch 1)."""
    import pandas as pd

    rows = []
    for arch in archs:
        arch = replace(arch, num_labels=0) if arch.family != "llama" else arch
        flops = training_flops(arch, tokens[arch.name])
        hours = gpu_hours(flops, peak_flops, utilization)
        train_mem = training_memory(arch, batch, seq_len, mixed_precision=mixed_precision,
                                    attention_scores_saved=False)
        rows.append(dict(
            model=arch.name, parameters=count_parameters(arch), tokens=tokens[arch.name],
            train_flops=flops, gpu_hours=hours, cost=money(hours, price_per_hour),
            train_memory_gb=train_mem["total"] / 1e9,
            min_gpus=math.ceil(train_mem["total"] / (gpu_memory_gb * 1e9)),
            inference_memory_gb=inference_memory(arch, 1, seq_len)["total"] / 1e9,
        ))
    return pd.DataFrame(rows)


def add_published(runs, archs: list[Architecture], peak_flops: float):
    """`scale_table` rows plus the published GPU-hours of each model (NaN where none) and the
    utilization those runs must have reached (`implied_utilization`)."""
    runs = runs.copy()
    published = {a.name: PUBLISHED_RUNS.get(a.name) for a in archs}
    hours = [getattr(published.get(m), "gpu_hours", None) for m in runs["model"]]
    runs["published_gpu_hours"] = [float("nan") if h is None else h for h in hours]
    runs["implied_utilization"] = [
        implied_utilization(a, published[a.name], peak_flops)
        if published[a.name] and published[a.name].gpu_hours else float("nan") for a in archs]
    return runs


def format_scale_table(runs):
    """The cost columns of `add_published(scale_table(...))` as short readable strings."""
    def amount(v: float) -> str:
        return "-" if math.isnan(v) else f"{v:,.3g}" if v < 100 else f"{v:,.0f}"

    shown = runs[["model", "parameters", "tokens", "train_flops", "gpu_hours", "cost",
                  "published_gpu_hours", "implied_utilization"]].copy()
    for column in ["parameters", "tokens", "train_flops"]:
        shown[column] = shown[column].map("{:.3g}".format)
    for column in ["gpu_hours", "cost", "published_gpu_hours"]:
        shown[column] = shown[column].map(amount)
    shown["implied_utilization"] = shown["implied_utilization"].map(
        lambda v: "-" if math.isnan(v) else f"{v:.2f}")
    return shown


def saved_activation_bytes(model, forward) -> tuple[int, object]:
    """Bytes autograd saves for the backward pass while `forward()` runs; returns (bytes, out).

    Uses `torch.autograd.graph.saved_tensors_hooks`. A storage saved twice (one tensor used by
    two ops) is counted once, and the model's own parameters are excluded: they are weights,
    not activations.
    """
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in params:
            seen[key] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    return sum(seen.values()), out


def peak_memory_during(fn, device: str = "cpu", interval_s: float = 0.002) -> tuple[float, object]:
    """(peak extra bytes while `fn()` runs, its result).

    CUDA: `torch.cuda.max_memory_allocated` above the starting allocation (exact). CPU: the
    process resident set size sampled every `interval_s` by a thread, above its value at the
    start (approximate: the allocator may reuse memory freed earlier, or keep some)."""
    import threading

    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base), out
    import psutil

    process = psutil.Process()
    base = process.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = fn()
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    return float(peak[0] - base), out


def measured_training_memory(model, batch: dict, lr: float = 1e-5,
                             restore: bool = True) -> dict[str, float]:
    """Bytes actually held during one AdamW training step on `batch` (with labels):
    weights, gradients and optimizer states summed over their tensors, activations saved for
    backward (`saved_activation_bytes`), and the peak extra memory the step needed
    (`peak_memory_during`). With `restore` the step is undone afterwards (at the cost of one
    copy of the weights); pass False for a throw-away copy of the model."""
    import copy

    import torch

    device = next(model.parameters()).device.type
    model.zero_grad(set_to_none=True)
    state = copy.deepcopy(model.state_dict()) if restore else None
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    activations = [0]

    def step() -> None:
        saved, out = saved_activation_bytes(model, lambda: model(**batch))
        activations[0] = saved
        out.loss.backward()
        optimizer.step()

    peak, _ = peak_memory_during(step, device)
    nbytes = lambda tensors: float(sum(t.numel() * t.element_size() for t in tensors))  # noqa: E731
    result = dict(
        weights=nbytes(model.parameters()),
        gradients=nbytes(p.grad for p in model.parameters() if p.grad is not None),
        optimizer=nbytes(t for s in optimizer.state.values() for t in s.values()
                         if torch.is_tensor(t) and t.dim() > 0),
        activations=float(activations[0]),
        peak_step=peak,
    )
    model.zero_grad(set_to_none=True)
    optimizer.state.clear()
    if state is not None:
        model.load_state_dict(state)
    model.eval()
    return result


# ------------------------------------------------------------------ hardware utilization
def matmul_peak_flops(n: int = 2048, dtype=None, device: str = "cpu", repeats: int = 5) -> float:
    """The machine's achievable matmul rate in FLOP/s: the best of `repeats` (n x n) @ (n x n).

    A square matmul does 2 n^3 floating-point operations. This is the denominator of the
    model-FLOPs utilization below; measure it in the same run as the training it judges.
    """
    import time

    import torch

    dtype = dtype or torch.float32
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    a @ b  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def model_flops_utilization(n_params: int, tokens: float, seconds: float,
                            peak_flops: float) -> float:
    """MFU: achieved training FLOP/s (6 x parameters x tokens / seconds) over the peak.

    6ND counts the forward (2 FLOPs per parameter per token) and the backward (4); it leaves
    out attention's own T^2 work, so it slightly under-counts for long sequences.
    """
    if seconds <= 0 or peak_flops <= 0:
        raise ValueError(f"seconds and peak_flops must be positive, got {seconds}, {peak_flops}.")
    return 6 * n_params * tokens / seconds / peak_flops


def operator_times(model, repeats: int = 1, **inputs) -> dict[str, float]:
    """Self CPU time (ms) of each PyTorch operator in `repeats` forward passes of `model`
    (after one warm-up call), from `torch.profiler`: where a forward pass spends its time.

    The profiler's own start/stop log lines (written by its C++ side to stderr) are kept out
    of the notebook."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from .runtime import trim_freed_memory

    with torch.no_grad():
        model(**inputs)
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(repeats):
                    model(**inputs)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    times = {e.key: e.self_cpu_time_total / 1e3 / repeats for e in prof.key_averages()}
    # The profiler's events hold reference cycles: left to the next automatic collection they
    # kept 300-900 MB alive in notebook 14 (SmolLM2, 32 decoding steps), which pushed it over 2 GB.
    del prof
    gc.collect()
    trim_freed_memory()  # and glibc keeps what they freed unless asked to give it back
    return times
