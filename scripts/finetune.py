"""Fine-tune a sentiment classifier from the command line: one process, or DDP on many.

Same code path as notebooks 06/07 (`bigmodel_lab.finetune.finetune` -> `train.fit`).

    # one process (GPU if there is one)
    python scripts/finetune.py --dataset sst2 --model distilbert-base-uncased --epochs 3
    # 4 GPUs on one machine (DDP; --batch-size stays the global batch)
    torchrun --nproc_per_node 4 scripts/finetune.py --dataset imdb --max-length 512
    accelerate launch --num_processes 4 scripts/finetune.py --dataset imdb --max-length 512
    # 2 machines x 8 GPUs
    torchrun --nnodes 2 --node_rank $RANK --nproc_per_node 8 --rdzv_backend c10d \
        --rdzv_endpoint $HEAD_NODE:29500 scripts/finetune.py --dataset imdb

Under DDP every process reads the same global batches (length-grouped) and keeps its share
of the rows, so N processes take the same optimizer steps as one process with the same
`--batch-size`. Each process checkpoints to its own `<checkpoint-dir>/rank<r>`; rerunning the
same command resumes. Rank 0 evaluates on the test split and saves the model.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="sst2", choices=["sst2", "imdb", "rotten_tomatoes"])
    p.add_argument("--model", default="distilbert-base-uncased",
                   help="hub name, a saved folder, or 'minilm' for the packaged offline model")
    p.add_argument("--tiny", action="store_true",
                   help="a tiny randomly initialised BERT (tests; no pretrained weights)")
    p.add_argument("--n-train", type=int, default=None, help="training subset (default: all)")
    p.add_argument("--n-eval", type=int, default=None, help="validation/test subset size")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--strategy", default="head", choices=["head", "head+tail"],
                   help="how texts longer than --max-length are cut")
    p.add_argument("--batch-size", type=int, default=32, help="global batch (all processes)")
    p.add_argument("--grad-accum", type=int, default=1,
                   help="micro-batches per optimizer step (the batch size stays --batch-size)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps")
    p.add_argument("--eval-every", type=int, default=None, help="steps (default: each epoch)")
    p.add_argument("--no-eval", action="store_true", help="skip validation and test")
    p.add_argument("--patience", type=int, default=None, help="early stopping, in evaluations")
    p.add_argument("--mixed-precision", default="auto", choices=["auto", "bf16", "fp16", "no"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", default=None, help="resumable training state")
    p.add_argument("--output", default=None, help="save the final model here (rank 0)")
    p.add_argument("--record", action="store_true", help="append the run to the results ledger")
    return p.parse_args(argv)


def distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun / accelerate launch; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    dist.init_process_group(backend)
    return rank, world, local


def tiny_model(tokenizer, seed: int):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=256,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2)
    return BertForSequenceClassification(config)


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rank, world, local = distributed()
    torch.manual_seed(args.seed)
    from transformers import AutoTokenizer

    from bigmodel_lab import finetune as ft
    from bigmodel_lab.data import load_sentiment
    from bigmodel_lab.models import load_pretrained, packaged_model_path
    from bigmodel_lab.runtime import _quiet_libraries

    _quiet_libraries()
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    dsd = load_sentiment(args.dataset, n_train=args.n_train, n_eval=args.n_eval, seed=args.seed)
    if args.tiny:
        tokenizer = AutoTokenizer.from_pretrained(packaged_model_path(), local_files_only=True)
        model, model_name = tiny_model(tokenizer, args.seed), "tiny-bert (random init)"
    else:
        model, tokenizer, source = load_pretrained(args.model)
        model_name = str(source)
    model.to(device)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local] if device.type == "cuda" else None)
    steps = ft.steps_per_epoch(len(dsd["train"]), args.batch_size, args.grad_accum)
    ckpt = args.checkpoint_dir and str(Path(args.checkpoint_dir) / f"rank{rank}")
    config = ft.finetune_config(
        epochs=args.epochs, lr=args.lr, warmup_steps=args.warmup,
        grad_accum_steps=args.grad_accum, eval_every=args.eval_every or steps,
        early_stopping_patience=args.patience, mixed_precision=args.mixed_precision,
        checkpoint_dir=ckpt, seed=args.seed, progress=rank == 0)
    # Each process gets its share of every global batch.
    history = ft.finetune(model, tokenizer, dsd, config, args.max_length, args.batch_size,
                          args.strategy,
                          eval_split=None if args.no_eval else "validation",
                          rank=rank, world_size=world)
    core = getattr(model, "module", model)
    result = {"rank": rank, "world_size": world, "steps": history.steps,
              "train_seconds": round(history.train_seconds, 2),
              "examples_per_s": round(history.examples_per_s * world, 1),
              "peak_memory_mb": round(history.peak_memory_mb, 1),
              "data_source": str(dsd.source), "model": model_name}
    if rank == 0:
        if not args.no_eval:
            start = time.perf_counter()
            scores = ft.evaluate(core, tokenizer, dsd["test"], args.max_length,
                                 2 * args.batch_size, args.strategy)
            result.update(test_accuracy=round(scores["accuracy"], 4),
                          test_f1=round(scores["f1"], 4),
                          eval_seconds=round(time.perf_counter() - start, 1))
        if args.output:
            ft.save_finetuned(core, tokenizer, args.output,
                              {**result, "base_model": model_name.split(" ")[0],
                               "dataset": args.dataset, "origin": "scripts/finetune.py",
                               "profile": "gpu" if device.type ==
                               "cuda" else "cpu", "epochs": args.epochs,
                               "max_length": args.max_length})
        if args.record and not args.no_eval:
            record(args, device, result)
        print(json.dumps(result))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def record(args, device, result) -> None:
    from types import MappingProxyType

    from bigmodel_lab.results import record as write
    from bigmodel_lab.runtime import Config

    cfg = Config(notebook="scripts/finetune.py", profile="gpu" if device.type == "cuda" else
                 "cpu", device=device.type, seed=args.seed, settings=MappingProxyType({}))
    write(cfg, task=args.dataset, model=result["model"],
          metrics={"accuracy": result["test_accuracy"], "f1": result["test_f1"]},
          data_source=result["data_source"], train_seconds=result["train_seconds"],
          peak_memory_mb=result["peak_memory_mb"],
          extra={"world_size": result["world_size"], "epochs": args.epochs,
                 "max_length": args.max_length, "batch_size": args.batch_size, "lr": args.lr})


if __name__ == "__main__":
    main()
