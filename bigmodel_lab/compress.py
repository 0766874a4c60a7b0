"""Model compression, measured: size, sparsity, latency, pruning, int8 and ONNX Runtime.

Every compressed variant in notebooks 08-10 goes through the same three rulers:
`size_mb` (bytes on disk once serialized), `measure_latency` (warm-up, then median and p90
over repeats at a stated batch size, sequence length and thread count) and
`evaluate_predict` (accuracy and F1 of any `texts -> probabilities` function on a split).
"""

from __future__ import annotations

import io
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

PredictFn = Callable[[Sequence[str]], np.ndarray]  # texts -> (N, num_labels) probabilities

# ---------------------------------------------------------------------------------------
# The rulers: size, parameters, latency, accuracy
# ---------------------------------------------------------------------------------------


def size_mb(obj) -> float:
    """Serialized size in MB (10^6 bytes): a module's state_dict through torch.save, or a file."""
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: export or save the model first.")
        return path.stat().st_size / 1e6
    if not isinstance(obj, nn.Module):
        raise TypeError(f"size_mb takes an nn.Module or a file path, not {type(obj).__name__}.")
    buffer = io.BytesIO()
    torch.save(_plain_state_dict(obj), buffer)
    return buffer.getbuffer().nbytes / 1e6


def _plain_state_dict(module: nn.Module) -> dict:
    # torch.nn.utils.prune keeps weight_orig + weight_mask while pruning is active; what ships
    # is the pruned weight itself, so measure that.
    state = module.state_dict()
    for name in [k for k in state if k.endswith("_orig")]:
        base = name[: -len("_orig")]
        state[base] = state.pop(name) * state.pop(base + "_mask")
    return state


def _is_linear(module: nn.Module) -> bool:
    from torch.ao.nn.quantized import dynamic as qdynamic

    return isinstance(module, (nn.Linear, qdynamic.Linear))


def linear_size_mb(model: nn.Module) -> float:
    """Serialized size (MB) of the Linear layers only: the part int8 quantization shrinks.

    The classifier's embeddings and LayerNorms stay fp32 under dynamic quantization, so the
    int8 target is stated on the Linear weights (+ their biases and scales)."""
    total = 0
    for module in model.modules():
        if _is_linear(module):
            buffer = io.BytesIO()
            torch.save(module.state_dict(), buffer)
            total += buffer.getbuffer().nbytes
    if total == 0:
        raise ValueError("The model has no nn.Linear layers to measure.")
    return total / 1e6


def count_parameters(model: nn.Module, nonzero: bool = False) -> int:
    """Number of parameters (or of non-zero ones, counting pruned weights as pruned)."""
    state = _plain_state_dict(model)
    names = {n for n, _ in model.named_parameters()}
    names = {n[: -len("_orig")] if n.endswith("_orig") else n for n in names}
    tensors = [state[n] for n in names if n in state]
    if nonzero:
        return int(sum(int(torch.count_nonzero(t)) for t in tensors))
    return int(sum(t.numel() for t in tensors))


def embedding_parameters(model: nn.Module) -> int:
    """Parameters in nn.Embedding tables (word, position, token-type)."""
    return int(sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding)))


@dataclass(frozen=True)
class Latency:
    """Time of one batch: median and 90th percentile over `repeats` runs (see `clock`)."""

    median_ms: float
    p90_ms: float
    batch_size: int
    seq_len: int
    threads: int
    repeats: int
    clock: str = "wall"  # "wall", or "cpu": process CPU time on one pinned core

    def __str__(self) -> str:
        return (f"median {self.median_ms:.1f} ms, p90 {self.p90_ms:.1f} ms per batch of "
                f"{self.batch_size} x {self.seq_len} tokens, {self.threads} thread(s), "
                f"{self.repeats} repeats")

    def as_dict(self) -> dict:
        return asdict(self)


def measure_latency(
    run: Callable[[], object],
    *,
    batch_size: int,
    seq_len: int,
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
) -> Latency:
    """Time `run()` (one forward pass on a fixed batch): `warmup` untimed calls, then
    `repeats` timed ones. `batch_size`/`seq_len` describe the batch `run` uses; `threads`
    sets torch's intra-op thread count for the measurement (default: unchanged).

    With one thread on a process pinned to one core (how the book's shared machine runs a
    notebook), the clock is the process's CPU time: wall time there also counts whatever else
    the kernel ran on that core, which made the same model 3x slower in one notebook than in
    the next. Otherwise it is wall-clock time (several threads work in parallel)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"Need repeats >= 1 and warmup >= 0 (got {repeats}, {warmup}).")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    cpu_clock = torch.get_num_threads() == 1 and _pinned_to_one_core()
    clock = time.process_time if cpu_clock else time.perf_counter
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                run()
            times = []
            for _ in range(repeats):
                start = clock()
                run()
                times.append((clock() - start) * 1e3)
    finally:
        torch.set_num_threads(previous)
    return Latency(
        median_ms=statistics.median(times),
        p90_ms=float(np.percentile(times, 90)),
        batch_size=batch_size,
        seq_len=seq_len,
        threads=threads or previous,
        repeats=repeats,
        clock="cpu" if cpu_clock else "wall",
    )


def _pinned_to_one_core() -> bool:
    try:
        return len(os.sched_getaffinity(0)) == 1
    except AttributeError:  # macOS: no affinity
        return False


def fixed_batch(tokenizer, texts: Sequence[str], batch_size: int, seq_len: int) -> dict:
    """A benchmark batch: `batch_size` texts (cycled if needed) padded/truncated to exactly
    `seq_len` tokens, as int64 torch tensors (input_ids, attention_mask)."""
    if not texts:
        raise ValueError("fixed_batch needs at least one text.")
    chosen = [texts[i % len(texts)] for i in range(batch_size)]
    enc = tokenizer(chosen, padding="max_length", truncation=True, max_length=seq_len,
                    return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def torch_latency(model: nn.Module, batch: dict, **kwargs) -> Latency:
    """Latency of `model(**batch)` in eval mode, on the model's device (see
    `measure_latency` for the kwargs)."""
    model.eval()
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    batch_size, seq_len = batch["input_ids"].shape

    def run():
        model(**batch)
        if device.type == "cuda":  # CUDA runs asynchronously: wait for the kernels
            torch.cuda.synchronize(device)

    return measure_latency(run, batch_size=batch_size, seq_len=seq_len, **kwargs)


def torch_predict_fn(model: nn.Module, tokenizer, max_length: int, batch_size: int = 32
                     ) -> PredictFn:
    """texts -> softmax probabilities (N, num_labels) for a Hugging Face classifier."""

    def predict(texts: Sequence[str]) -> np.ndarray:
        model.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = tokenizer(list(texts[i: i + batch_size]), padding=True, truncation=True,
                                max_length=max_length, return_tensors="pt")
                logits = model(input_ids=enc["input_ids"],
                               attention_mask=enc["attention_mask"]).logits
                out.append(torch.softmax(logits.float(), dim=-1).numpy())
        return np.concatenate(out)

    return predict


def evaluate_predict(predict: PredictFn, split) -> dict:
    """Accuracy and macro-F1 of `predict` on a dataset split with `text` and `label` columns."""
    from sklearn.metrics import accuracy_score, f1_score

    for column in ("text", "label"):
        if column not in split.column_names:
            raise ValueError(f"The split needs a {column!r} column; it has {split.column_names}.")
    probs = predict(list(split["text"]))
    labels = np.asarray(split["label"])
    preds = probs.argmax(axis=-1)
    return {"accuracy": float(accuracy_score(labels, preds)),
            "f1": float(f1_score(labels, preds, average="macro"))}


def accuracy(model: nn.Module, tokenizer, split, max_length: int, batch_size: int = 32
             ) -> float:
    """Test accuracy of a Hugging Face classifier on a split (`evaluate_predict` on the model,
    batches formed by length as in `finetune.predict_proba`)."""
    from .finetune import predict_proba

    def predict(texts: Sequence[str]) -> np.ndarray:
        return predict_proba(model, tokenizer, texts, max_length, batch_size)

    return evaluate_predict(predict, split)["accuracy"]


def latency_ms(model: nn.Module, batch: dict, **kwargs) -> float:
    """Median latency (ms) of one forward pass on `batch` (see `torch_latency`)."""
    return torch_latency(model, batch, **kwargs).median_ms


def compressed_mb(model: nn.Module, level: int = 1) -> float:
    """Size (MB) of the serialized weights after zlib at `level`: what a general-purpose
    compressor makes of them. Zeros compress well; a dense float32 array barely does."""
    import zlib

    buffer = io.BytesIO()
    torch.save(_plain_state_dict(model), buffer)
    return len(zlib.compress(buffer.getvalue(), level)) / 1e6


def recover(model: nn.Module, tokenizer, dsd, steps: int, max_length: int, batch_size: int,
            lr: float = 5e-5, seed: int = 0) -> nn.Module:
    """A short recovery fine-tune: `steps` optimizer steps on dsd["train"] (the book's
    training loop, no evaluation). Pruning masks stay attached, so pruned weights stay zero."""
    if steps < 1:
        raise ValueError(f"steps is the number of optimizer steps, at least 1; got {steps}.")
    from . import finetune

    config = finetune.finetune_config(max_steps=steps, lr=lr, seed=seed, progress=False)
    finetune.finetune(model, tokenizer, dsd, config, max_length, batch_size, eval_split=None)
    return model.cpu().eval()


# ---------------------------------------------------------------------------------------
# Unstructured magnitude pruning (torch.nn.utils.prune)
# ---------------------------------------------------------------------------------------


def encoder_linears(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "weight") for every Linear inside the transformer layers (not the classifier
    head): what pruning and quantization act on."""
    pairs = [(m, "weight") for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and ".layer." in f".{name}."]
    if not pairs:
        raise ValueError("No Linear layers found under '*.layer.*': is this a BERT-like model?")
    return pairs


def magnitude_prune(model: nn.Module, amount: float) -> nn.Module:
    """Zero the `amount` fraction of smallest-magnitude weights across all encoder Linears
    (global L1 unstructured pruning). The mask stays attached, so fine-tuning afterwards keeps
    pruned weights at zero; call `make_pruning_permanent` before saving."""
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount is the fraction of weights to prune, in [0, 1); got {amount}.")
    from torch.nn.utils import prune

    prune.global_unstructured(encoder_linears(model), pruning_method=prune.L1Unstructured,
                              amount=amount)
    return model


def make_pruning_permanent(model: nn.Module) -> nn.Module:
    """Fold the pruning masks into the weights (weight = weight_orig * mask)."""
    from torch.nn.utils import prune

    for module in model.modules():
        if hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over the encoder Linear layers."""
    weights = [getattr(m, name) for m, name in encoder_linears(model)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / sum(w.numel() for w in weights)


# ---------------------------------------------------------------------------------------
# Structured pruning: attention heads (Michel et al. 2019) and whole layers
# ---------------------------------------------------------------------------------------


def _layers(model: nn.Module) -> nn.ModuleList:
    base = getattr(model, model.base_model_prefix, model)
    try:
        return base.encoder.layer
    except AttributeError as err:
        raise ValueError("Expected a BERT-like model with .encoder.layer (BertModel, "
                         "BertForSequenceClassification).") from err


def head_importance(model: nn.Module, batches: Sequence[dict]) -> torch.Tensor:
    """Importance of every attention head, shape (num_layers, num_heads).

    Michel et al. (2019): put a gate xi_h = 1 on each head's output and score
    I_h = E_x | dL(x)/dxi_h |, the expected first-order change in loss if the head were
    removed. The absolute value is taken per batch before averaging (as in the paper's code),
    so gradients of opposite sign on different batches do not cancel. Each batch is a dict
    with input_ids, attention_mask and labels. Scores are normalised per layer (L2), as in
    the paper."""
    layers = _layers(model)
    num_heads = model.config.num_attention_heads
    gates = torch.ones(len(layers), num_heads, requires_grad=True)
    hooks = []
    for i, layer in enumerate(layers):
        attention = layer.attention.self

        def gate_heads(module, args, output, i=i):
            context = output[0]  # (B, T, nh * hs)
            shape = context.shape
            gated = context.view(*shape[:-1], -1, module.attention_head_size) * gates[i][:, None]
            return (gated.view(shape), *output[1:])

        hooks.append(attention.register_forward_hook(gate_heads))
    was_training = model.training
    model.eval()  # no dropout while scoring
    scores = torch.zeros(len(layers), num_heads)
    try:
        for batch in batches:
            model(**batch).loss.backward()
            scores += gates.grad.abs()
            gates.grad = None
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return scores / scores.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _keep_rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = nn.Linear(linear.in_features, len(index), bias=linear.bias is not None)
    new.weight.data = linear.weight.data[index].clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data[index].clone()
    return new


def _keep_columns(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(index), linear.out_features, bias=linear.bias is not None)
    new.weight.data = linear.weight.data[:, index].clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data.clone()
    return new


def remove_heads(model: nn.Module, heads: dict[int, Sequence[int]]) -> nn.Module:
    """Remove attention heads in place: {layer index: [head indices]}.

    transformers v5 dropped `PreTrainedModel.prune_heads`, so this does what it did: keep
    only the rows of the query/key/value projections that belong to surviving heads, and the
    matching input columns of the attention output projection. The matrices really shrink,
    so the model gets smaller and faster. At least one head per layer must survive (remove
    the layer with `keep_layers` instead)."""
    layers = _layers(model)
    for layer_index, removed in heads.items():
        if not 0 <= layer_index < len(layers):
            raise ValueError(f"Layer {layer_index} does not exist (model has {len(layers)}).")
        attention = layers[layer_index].attention
        self_attn = attention.self
        n_heads, size = self_attn.num_attention_heads, self_attn.attention_head_size
        # remember original head ids so a second call can name heads by their original index
        alive = getattr(self_attn, "head_ids", list(range(n_heads)))
        removed = set(removed)
        if bad := removed - set(alive):
            raise ValueError(f"Layer {layer_index} has no (remaining) heads {sorted(bad)}; "
                             f"alive: {alive}.")
        keep = [pos for pos, h in enumerate(alive) if h not in removed]
        if not keep:
            raise ValueError(f"Removing every head of layer {layer_index} leaves nothing: keep "
                             "one, or drop the whole layer with keep_layers().")
        index = torch.cat([torch.arange(p * size, (p + 1) * size) for p in keep])
        for name in ("query", "key", "value"):
            setattr(self_attn, name, _keep_rows(getattr(self_attn, name), index))
        attention.output.dense = _keep_columns(attention.output.dense, index)
        self_attn.num_attention_heads = len(keep)
        self_attn.all_head_size = len(keep) * size
        self_attn.head_ids = [alive[p] for p in keep]
    return model


def least_important_heads(scores: torch.Tensor, n: int) -> dict[int, list[int]]:
    """The `n` lowest-scoring heads as {layer: [heads]}, never emptying a layer."""
    order = torch.argsort(scores.flatten()).tolist()
    num_heads = scores.shape[1]
    chosen: dict[int, list[int]] = {}
    for flat in order:
        if sum(len(v) for v in chosen.values()) == n:
            break
        layer, head = divmod(flat, num_heads)
        if len(chosen.get(layer, [])) < num_heads - 1:
            chosen.setdefault(layer, []).append(head)
    return chosen


def keep_layers(model: nn.Module, keep: Sequence[int]) -> nn.Module:
    """Keep only the transformer layers listed in `keep` (in that order), in place."""
    layers = _layers(model)
    if not keep or any(not 0 <= i < len(layers) for i in keep):
        raise ValueError(f"keep must list layer indices in [0, {len(layers)}); got {list(keep)}.")
    kept = nn.ModuleList([layers[i] for i in keep])
    for new_index, layer in enumerate(kept):
        if hasattr(layer.attention.self, "layer_idx"):
            layer.attention.self.layer_idx = new_index
    base = getattr(model, model.base_model_prefix, model)
    base.encoder.layer = kept
    model.config.num_hidden_layers = len(kept)
    return model


class TrimmedEmbedding(nn.Module):
    """A word-embedding table that keeps only the rows of tokens a corpus uses.

    `index` maps every original token id to its row in the smaller table; ids that were
    dropped map to the [UNK] row. The tokenizer is unchanged."""

    def __init__(self, full: nn.Embedding, keep_ids: torch.Tensor, unk_id: int):
        super().__init__()
        keep_ids = torch.unique(torch.cat([keep_ids.long(), torch.tensor([unk_id])]))
        index = torch.empty(full.num_embeddings, dtype=torch.long)
        index[:] = int((keep_ids == unk_id).nonzero())
        index[keep_ids] = torch.arange(len(keep_ids))
        self.register_buffer("index", index)
        self.embedding = nn.Embedding.from_pretrained(full.weight.detach()[keep_ids].clone(),
                                                      freeze=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.index[input_ids])  # (B, T, hidden)


def trim_vocabulary(model: nn.Module, tokenizer, texts: Sequence[str]) -> float:
    """Keep only the word embeddings of tokens that occur in `texts` (plus special tokens),
    in place; returns the share of the vocabulary kept.

    A 30,522 x 384 table is half of MiniLM's parameters, and a sentiment corpus uses a
    fraction of it. Tokens never seen in `texts` are read as [UNK] afterwards, so trim with
    the training text and check accuracy on held-out text."""
    base = getattr(model, model.base_model_prefix, model)
    full = base.embeddings.word_embeddings
    if isinstance(full, TrimmedEmbedding):
        raise ValueError("This model's vocabulary is already trimmed; trim the original once.")
    ids = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    used = {i for row in ids for i in row} | set(tokenizer.all_special_ids)
    keep = torch.tensor(sorted(used))
    base.embeddings.word_embeddings = TrimmedEmbedding(full, keep, tokenizer.unk_token_id)
    return len(keep) / full.num_embeddings


# ---------------------------------------------------------------------------------------
# int8: scale and zero-point, and PyTorch dynamic quantization
# ---------------------------------------------------------------------------------------


def int8_params(x: torch.Tensor, symmetric: bool = False) -> tuple[float, int]:
    """Scale and zero-point mapping the range of `x` onto int8.

    Affine (asymmetric): the range [min(x, 0), max(x, 0)] maps onto [-128, 127]:
        scale = (max - min) / 255,   zero_point = round(-128 - min / scale)
    Symmetric: [-max|x|, max|x|] onto [-127, 127], zero_point = 0. Zero is always exactly
    representable, so padding and ReLU zeros survive quantization."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    if symmetric:
        bound = max(abs(lo), abs(hi))
        return (bound / 127 if bound > 0 else 1.0), 0
    scale = (hi - lo) / 255 if hi > lo else 1.0
    zero_point = int(round(-128 - lo / scale))
    return scale, max(-128, min(127, zero_point))


def quantize_int8(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """q = clamp(round(x / scale) + zero_point, -128, 127), as int8."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}.")
    return torch.clamp(torch.round(x / scale) + zero_point, -128, 127).to(torch.int8)


def dequantize_int8(q: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """x_hat = scale * (q - zero_point)."""
    return scale * (q.to(torch.float32) - zero_point)


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` with every nn.Linear replaced by a dynamically quantized int8 Linear
    (weights int8 per tensor; activations quantized on the fly per batch).

    Uses `torch.ao.quantization.quantize_dynamic`, which PyTorch has deprecated: its
    replacement is torchao (`torchao.quantization.quantize_` with an int8 dynamic-activation
    config). It is kept here because it runs on every CPU build of torch and gives the CPU
    speed-up; the deprecation warnings are silenced."""
    import copy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8
        )


# ---------------------------------------------------------------------------------------
# ONNX export and ONNX Runtime
# ---------------------------------------------------------------------------------------

ONNX_INPUTS = ("input_ids", "attention_mask")


def export_onnx(model: nn.Module, tokenizer, path: str | os.PathLike, max_length: int = 128
                ) -> Path:
    """Export a Hugging Face sequence classifier to ONNX with dynamic batch and sequence axes.

    Writes `path` (the graph) and, in the same folder, the tokenizer files and
    `onnx_meta.json` (max_length, labels), so `OnnxClassifier(path)` needs nothing else.
    Uses the TorchScript exporter (`dynamo=False`): quick and quiet for BERT-like models."""
    from .checks import check_max_length

    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"Give the ONNX file a .onnx name, e.g. model.onnx (got {path.name}).")
    max_length = check_max_length(model, max_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = tokenizer(["an example sentence", "another"], padding="max_length",
                        truncation=True, max_length=min(16, max_length), return_tensors="pt")
    dynamic = {"input_ids": {0: "batch", 1: "sequence"},
               "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example["input_ids"], example["attention_mask"]), str(path),
                          input_names=list(ONNX_INPUTS), output_names=["logits"],
                          dynamic_axes=dynamic, opset_version=17, dynamo=False)
    tokenizer.save_pretrained(path.parent)
    labels = getattr(model.config, "id2label", None) or {0: "negative", 1: "positive"}
    meta = {"max_length": max_length, "id2label": {int(k): v for k, v in labels.items()},
            **export_provenance(model)}
    (path.parent / "onnx_meta.json").write_text(json.dumps(meta, indent=1))
    return path


def export_provenance(model: nn.Module) -> dict:
    """What made an export: the profile and notebook of the running `lab.setup` (else
    "python"), the model it came from and when, written into onnx_meta.json."""
    import datetime as dt

    from .runtime import CURRENT

    cfg = CURRENT.get("cfg")
    config = getattr(model, "config", None)
    return {"profile": cfg.profile if cfg else None,
            "origin": f"notebook {cfg.notebook}" if cfg else "python",
            "model": str(getattr(config, "_name_or_path", "") or type(model).__name__),
            "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def onnx_info(path: str | os.PathLike) -> dict:
    """The onnx_meta.json beside an exported graph ({} when there is none): max_length,
    labels, and the profile / origin / model that made it."""
    meta_file = Path(path).parent / "onnx_meta.json"
    try:
        return json.loads(meta_file.read_text()) if meta_file.exists() else {}
    except ValueError as err:
        raise ValueError(f"{meta_file} is not valid JSON (corrupt or truncated). Delete the "
                         "export folder and export again with compress.export_onnx.") from err


def _corrupt_onnx(path: Path, err: Exception) -> ValueError:
    return ValueError(
        f"{path} is not a readable ONNX graph (corrupt or truncated, e.g. an export that was "
        f"stopped: {str(err)[:100]}). Delete it and export again with compress.export_onnx "
        "(then compress.quantize_onnx for the int8 copy)."
    )


def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike,
                  op_types: Sequence[str] | None = ("MatMul", "Gemm")) -> Path:
    """Dynamic int8 quantization of an ONNX graph with `onnxruntime.quantization`
    (weights of `op_types` stored int8, activations quantized at run time).

    The default quantizes the matrix multiplies only, like `quantize_dynamic_int8` does in
    PyTorch, and keeps the word-embedding table (a Gather) in fp32: on the fine-tuned MiniLM,
    quantizing the Gather too shrinks the file 2.5x more but cost 1.5 accuracy points on the
    offline SST-2 stand-in, against 0.8 for MatMul only. `op_types=None` quantizes everything
    ONNX Runtime can."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist: run export_onnx first.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"op_types_to_quantize": list(op_types)} if op_types else {}
    # Types ONNX shape inference cannot work out (outputs of ORT's fused contrib operators,
    # see optimize_onnx) are fp32.
    kwargs["extra_options"] = {"DefaultTensorType": 1}  # onnx.TensorProto.FLOAT
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # ORT's "consider pre-processing" hint is advice, not a fault
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, **kwargs)
    except Exception as err:
        if "proto" in str(err).lower() or "parse" in str(err).lower():
            raise _corrupt_onnx(src, err) from err
        raise
    finally:
        logging.disable(previous)
    if dst.parent != src.parent:  # keep tokenizer + meta beside the quantized graph too
        import shutil

        for f in src.parent.iterdir():
            if f.suffix != ".onnx" and f.is_file():
                shutil.copy(f, dst.parent / f.name)
    return dst


def optimize_onnx(src: str | os.PathLike, dst: str | os.PathLike, num_heads: int,
                  hidden_size: int) -> Path:
    """ONNX Runtime's transformer graph fusions on an exported BERT-like graph.

    `onnxruntime.transformers.optimizer.optimize_model(model_type="bert")` rewrites the
    dozens of small nodes of each layer into a few fused ones: one `Attention` (the Q/K/V
    projections, the scaled dot product, the mask and the softmax), `SkipLayerNormalization`
    (residual add + LayerNorm), `BiasGelu` and `EmbedLayerNormalization`. Fewer nodes means
    fewer passes over memory; quantizing *after* fusing also turns the fused attention into
    ORT's int8 `QAttention` (see `quantize_onnx`). Returns `dst`, with the tokenizer and
    onnx_meta.json copied beside it."""
    from onnxruntime.transformers import optimizer

    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist: run export_onnx first.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        fused = optimizer.optimize_model(str(src), model_type="bert", num_heads=num_heads,
                                         hidden_size=hidden_size)
    finally:
        logging.disable(previous)
    fused.save_model_to_file(str(dst))
    _copy_sidecars(src, dst)
    return dst


def fused_operators(path: str | os.PathLike) -> dict[str, int]:
    """How many nodes of each fused type an ONNX graph holds (Attention, SkipLayerNorm...)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    fused = ("Attention", "QAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
             "BiasGelu", "FastGelu", "Gelu", "MatMulInteger", "DynamicQuantizeMatMul")
    return {k: counts[k] for k in fused if k in counts}


DEPLOYED_VARIANT = "ONNX Runtime int8 (fused graph)"


def export_int8(model: nn.Module, tokenizer, folder: str | os.PathLike, max_length: int = 128
                ) -> dict[str, Path]:
    """The book's deployed classifier, one recipe for notebooks 09, 11, the service and the
    benchmark: export to ONNX (fp32), fuse with ONNX Runtime's transformer optimizer, then
    dynamic int8 quantization of the fused graph (MatMul, Gemm and the fused Attention).

    The graph is exported from a copy of `model` with the eager attention implementation:
    ORT's fusion recognises the attention pattern of the explicit softmax(QK^T)V graph, not the
    exported SDPA one (there it fuses only LayerNorm and GELU, and the speed-up stays smaller).

    Returns {"fp32": model.onnx, "fused": model-fused.onnx, "int8": model-int8.onnx} in
    `folder`; `OnnxClassifier(paths["int8"])` runs the deployed variant."""
    import copy

    folder = Path(folder)
    config = model.config
    eager = copy.deepcopy(model).cpu().eval()
    eager.set_attn_implementation("eager")
    fp32 = export_onnx(eager, tokenizer, folder / "model.onnx", max_length)
    del eager
    fused = optimize_onnx(fp32, folder / "model-fused.onnx", config.num_attention_heads,
                          config.hidden_size)
    int8 = quantize_onnx(fused, folder / "model-int8.onnx",
                         op_types=("MatMul", "Gemm", "Attention"))
    return {"fp32": fp32, "fused": fused, "int8": int8}


def _copy_sidecars(src: Path, dst: Path) -> None:
    """Copy the tokenizer files and onnx_meta.json beside `dst` when it is in another folder."""
    if dst.parent != src.parent:
        import shutil

        for f in src.parent.iterdir():
            if f.suffix != ".onnx" and f.is_file():
                shutil.copy(f, dst.parent / f.name)


class OnnxClassifier:
    """An ONNX Runtime session behind `predict_proba(texts)`.

    `OnnxClassifier("exports/model-int8.onnx")` loads the tokenizer and max_length saved
    beside the graph by `export_onnx`; pass `tokenizer=` / `max_length=` to override.
    `threads` sets ONNX Runtime's intra-op threads (default: its own choice)."""

    def __init__(self, path: str | os.PathLike, tokenizer=None, max_length: int | None = None,
                 threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} does not exist: run export_onnx first.")
        meta = self.info = onnx_info(self.path)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.path.parent)
        self.tokenizer = tokenizer
        self.max_length = max_length or meta.get("max_length", 128)
        self.id2label = {int(k): v for k, v in meta.get("id2label", {}).items()}
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT raises InvalidProtobuf / Fail, both plain Exceptions
            raise _corrupt_onnx(self.path, err) from err

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Raw logits (B, num_labels) for already tokenized int64 arrays."""
        feed = {"input_ids": np.asarray(input_ids, dtype=np.int64),
                "attention_mask": np.asarray(attention_mask, dtype=np.int64)}
        return self.session.run(["logits"], feed)[0]

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Softmax probabilities, shape (len(texts), num_labels)."""
        if isinstance(texts, str):
            texts = [texts]
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenizer(list(texts[i: i + batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            logits = self.logits(enc["input_ids"], enc["attention_mask"])
            z = np.exp(logits - logits.max(axis=-1, keepdims=True))
            out.append(z / z.sum(axis=-1, keepdims=True))
        return np.concatenate(out) if out else np.zeros((0, max(len(self.id2label), 2)))

    def latency(self, batch: dict, **kwargs) -> Latency:
        """Latency of one session run on a `fixed_batch` (kwargs as in `measure_latency`;
        `threads` here is only reported: set it when building the session)."""
        ids, mask = batch["input_ids"].numpy(), batch["attention_mask"].numpy()
        kwargs.setdefault("threads", self.session.get_session_options().intra_op_num_threads
                          or torch.get_num_threads())
        threads = kwargs.pop("threads")
        result = measure_latency(lambda: self.logits(ids, mask), batch_size=ids.shape[0],
                                 seq_len=ids.shape[1], **kwargs)
        return Latency(result.median_ms, result.p90_ms, result.batch_size, result.seq_len,
                       threads, result.repeats)


# ---------------------------------------------------------------------------------------
# One row of a variant table
# ---------------------------------------------------------------------------------------


def variant_row(name: str, predict: PredictFn, split, latency: Latency, size: float,
                **extra) -> dict:
    """Accuracy/F1 of `predict` on `split`, with the size (MB) and latency measured for it:
    one row of the size / latency / accuracy tables of notebooks 08-10."""
    scores = evaluate_predict(predict, split)
    return {"variant": name, **scores, "size_mb": size, "latency_ms": latency.median_ms,
            "latency_p90_ms": latency.p90_ms, **extra}
