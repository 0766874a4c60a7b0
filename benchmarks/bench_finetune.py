"""Fine-tuning throughput: padding to max_length vs dynamic padding vs length-grouped batches.

One AdamW training step (forward, backward, update) of the packaged all-MiniLM-L6-v2
classifier on the same real sentences (offline Rotten Tomatoes, the SST-2 stand-in), batched
three ways: every batch padded to `--max-length`; padded to its longest sentence in data
order; padded to its longest sentence after grouping similar lengths. Examples/s for each,
and the ratios to the fixed padding, saved under "finetune_throughput" in results/bench.json.

    flock /tmp/heavy.lock python benchmarks/bench_finetune.py
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from benchjson import machine, merge

KEY = "finetune_throughput"


def run(batch_size: int = 32, max_length: int = 128, steps: int = 6) -> dict:
    from bigmodel_lab.data import load_sentiment
    from bigmodel_lab.models import load_pretrained

    texts = list(load_sentiment("sst2", offline=True)["train"]["text"][: batch_size * steps])
    labels = torch.tensor([i % 2 for i in range(len(texts))])
    model, tokenizer, _ = load_pretrained("all-MiniLM-L6-v2")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    lengths = np.array([len(x) for x in tokenizer(texts, truncation=True,
                                                  max_length=max_length)["input_ids"]])
    orders = {"padded_to_max_length": np.arange(len(texts)),
              "dynamic_padding": np.arange(len(texts)),
              "length_grouped": np.argsort(lengths, kind="stable")}
    rows = {}
    for name, order in orders.items():
        padding = "max_length" if name == "padded_to_max_length" else "longest"
        batches = []
        for i in range(0, len(order), batch_size):
            idx = order[i: i + batch_size]
            enc = tokenizer([texts[j] for j in idx], padding=padding, truncation=True,
                            max_length=max_length, return_tensors="pt")
            batches.append((dict(enc), labels[idx]))
        tokens = sum(b["attention_mask"].numel() for b, _ in batches)
        model(**batches[0][0], labels=batches[0][1]).loss.backward()  # warm-up
        optimizer.zero_grad()
        start = time.perf_counter()
        for batch, y in batches:
            model(**batch, labels=y).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        seconds = time.perf_counter() - start
        rows[name] = {"examples_per_s": len(texts) / seconds,
                      "padding_share": 1 - lengths.sum() / tokens}
    base = rows["padded_to_max_length"]["examples_per_s"]
    for row in rows.values():
        row["speedup_vs_padded"] = row["examples_per_s"] / base
    return {"model": "all-MiniLM-L6-v2 classifier", "batch_size": batch_size,
            "max_length": max_length, "examples": len(texts), "rows": rows,
            "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(steps=args.steps)
    print(f"fine-tuning {result['model']}, batch {result['batch_size']}, max length "
          f"{result['max_length']}, {result['examples']} sentences, "
          f"{result['machine']['threads']} threads")
    for name, r in result["rows"].items():
        print(f"  {name:22s} {r['examples_per_s']:7.1f} examples/s  padding "
              f"{r['padding_share']:.0%}  {r['speedup_vs_padded']:.2f}x")
    if not args.no_save:
        merge(KEY, result)


if __name__ == "__main__":
    main()
