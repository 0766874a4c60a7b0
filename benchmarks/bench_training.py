"""Training loop: the book's `train.fit` vs Hugging Face `Trainer`, and the fine-tune's MFU.

Both fine-tune the packaged all-MiniLM-L6-v2 classifier from the same weights on the same
real sentences (offline Rotten Tomatoes, the SST-2 stand-in), with the same batch size,
maximum length, length-grouped batches padded per batch, learning rate and schedule, AdamW,
gradient clipping and precision (fp32 on a CPU; fp16 on a GPU, Trainer's choice), and no
evaluation during training. `finetune.finetune` (which calls `fit`) and
`finetune.finetune_with_trainer` are the functions the book uses. Each is run `--repeats`
times, interleaved; throughput is examples / seconds of the whole call on `benchjson.CLOCK`
(the best run). The final models are scored on the validation split: mean cross-entropy with its
standard error, and the paired difference, so "the same final loss" is judged against noise.

The same runs give the model-FLOPs utilization (MFU) of the book's fine-tune: 6 x N_matmul x
tokens computed (padding included) / seconds, over the matmul peak measured in this run
(`cost.matmul_peak_flops`, fp32 on a CPU, bf16 on a GPU). Saved under "training_loop" and
"training_mfu" in results/bench.json.

    /tmp/heavy old python benchmarks/bench_training.py
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
import torch
from benchjson import CLOCK, machine, merge

KEY, MFU_KEY = "training_loop", "training_mfu"


def validation_losses(model, tokenizer, split, max_length: int) -> np.ndarray:
    """Per-sentence cross-entropy of `model` on `split` (eval mode)."""
    from bigmodel_lab.finetune import predict_proba

    probs = predict_proba(model, tokenizer, list(split["text"]), max_length, 64)
    labels = np.asarray(split["label"])
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))


def run(n_train: int = 768, batch_size: int = 32, max_length: int = 128, repeats: int = 2,
        lr: float = 2e-4) -> tuple[dict, dict]:
    from bigmodel_lab import cost, finetune
    from bigmodel_lab.data import load_sentiment
    from bigmodel_lab.models import load_pretrained

    cuda = torch.cuda.is_available()
    dsd = load_sentiment("sst2", n_train=n_train, n_eval=None, seed=0, offline=True)
    runs = {"trainer": [], "fit": []}
    final = {}
    for r in range(repeats):
        for name in (("trainer", "fit") if r % 2 == 0 else ("fit", "trainer")):
            model, tokenizer, _ = load_pretrained("all-MiniLM-L6-v2")
            model.to("cuda" if cuda else "cpu")
            torch.manual_seed(0)
            start = CLOCK()
            if name == "trainer":
                trainer = finetune.finetune_with_trainer(
                    model, tokenizer, dsd, max_length, batch_size, epochs=1, lr=lr,
                    warmup=0.1, seed=0, evaluate=False)
                loss = trainer.state.log_history[-1].get("train_loss")
                tokens, loop_seconds = None, None
            else:
                config = finetune.finetune_config(lr=lr, progress=False, seed=0,
                                                  mixed_precision="fp16" if cuda else "no")
                hist = finetune.finetune(model, tokenizer, dsd, config, max_length,
                                         batch_size, eval_split=None)
                loss = float(np.mean([row["loss"] for row in hist.train]))
                loop_seconds = hist.train_seconds  # optimisation only, as fit measures it
            if cuda:
                torch.cuda.synchronize()
            seconds = CLOCK() - start
            if name == "fit":  # counted outside the timed call
                tokens = hist_tokens(dsd["train"], tokenizer, max_length, batch_size)
            runs[name].append({"seconds": seconds, "examples_per_s": len(dsd["train"]) / seconds,
                               "mean_train_loss": loss, "tokens_computed": tokens,
                               "loop_seconds": loop_seconds})
            final[name] = validation_losses(model, tokenizer, dsd["validation"], max_length)
            del model
    best = {k: max(v, key=lambda row: row["examples_per_s"]) for k, v in runs.items()}
    diff = final["fit"] - final["trainer"]
    loop = {
        "model": "all-MiniLM-L6-v2 classifier", "examples": len(dsd["train"]),
        "batch_size": batch_size, "max_length": max_length, "lr": lr, "repeats": repeats,
        "precision": "fp16 autocast" if cuda else "fp32", "runs": runs,
        "trainer_examples_per_s": best["trainer"]["examples_per_s"],
        "fit_examples_per_s": best["fit"]["examples_per_s"],
        "ratio_fit_over_trainer": best["fit"]["examples_per_s"]
        / best["trainer"]["examples_per_s"],
        "target_ratio": 1.0,
        "validation_loss": {k: float(v.mean()) for k, v in final.items()},
        "validation_loss_se": {k: float(v.std(ddof=1) / math.sqrt(len(v))) for k, v in final.items()},
        "loss_diff_fit_minus_trainer": float(diff.mean()),
        "loss_diff_se": float(diff.std(ddof=1) / math.sqrt(len(diff))),
        "validation_sentences": len(diff),
        "machine": machine(),
    }
    loop["loss_same_within_noise"] = abs(loop["loss_diff_fit_minus_trainer"]) <= 2 * loop["loss_diff_se"]

    arch = cost.from_config(load_pretrained("all-MiniLM-L6-v2")[0].config, num_labels=2)
    n_matmul = cost.matmul_parameters(arch)
    fit_best = best["fit"]
    peak_dtype = torch.bfloat16 if cuda else torch.float32
    peak = cost.matmul_peak_flops(4096 if cuda else 2048, dtype=peak_dtype,
                                  device="cuda" if cuda else "cpu")
    mfu = {
        "model": loop["model"], "n_matmul_params": n_matmul,
        "tokens_computed": fit_best["tokens_computed"], "seconds": fit_best["loop_seconds"],
        "achieved_flops": 6 * n_matmul * fit_best["tokens_computed"] / fit_best["loop_seconds"],
        "peak_flops": peak, "peak": f"{'bf16' if cuda else 'fp32'} torch.mm, same run",
        "mfu": cost.model_flops_utilization(n_matmul, fit_best["tokens_computed"],
                                            fit_best["loop_seconds"], peak),
        "target_mfu": 0.5, "device": "cuda" if cuda else "cpu",
        "note": "seconds: fit's optimisation time (History.train_seconds); N: matmul weights only "
                "(the embedding lookups do no multiplications)",
        "machine": machine(),
    }
    return loop, mfu


def hist_tokens(split, tokenizer, max_length: int, batch_size: int) -> int:
    """Token positions the fine-tune computed: each length-grouped batch padded to its longest."""
    from bigmodel_lab.finetune import make_loader, tokenize_split

    loader = make_loader(tokenize_split(split, tokenizer, max_length), tokenizer, batch_size)
    return int(sum(b["input_ids"].numel() for b in loader))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    loop, mfu = run(args.n_train, repeats=args.repeats)
    print(f"{loop['model']}, {loop['examples']} sentences, batch {loop['batch_size']}, max length "
          f"{loop['max_length']}, {loop['precision']}, {loop['machine']['threads']} threads")
    print(f"  Trainer   {loop['trainer_examples_per_s']:7.1f} examples/s")
    print(f"  train.fit {loop['fit_examples_per_s']:7.1f} examples/s  ratio "
          f"{loop['ratio_fit_over_trainer']:.2f}x (target >= 1.0)")
    print(f"  validation loss fit {loop['validation_loss']['fit']:.4f} vs Trainer "
          f"{loop['validation_loss']['trainer']:.4f}: difference "
          f"{loop['loss_diff_fit_minus_trainer']:+.4f} +- {loop['loss_diff_se']:.4f} (SE) -> "
          f"{'same within noise' if loop['loss_same_within_noise'] else 'differs'}")
    print(f"  MFU {mfu['mfu']:.2f} ({mfu['achieved_flops'] / 1e9:.1f} GFLOP/s of a measured "
          f"{mfu['peak_flops'] / 1e9:.1f} GFLOP/s {mfu['peak']}; target >= 0.5)")
    if not args.no_save:
        merge(KEY, loop)
        merge(MFU_KEY, mfu)


if __name__ == "__main__":
    main()
