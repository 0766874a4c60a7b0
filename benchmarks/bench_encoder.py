"""Forward time of the from-scratch Encoder vs transformers.BertModel, same weights, same run.

Target (issue 5): the from-scratch encoder within 1.2x of BertModel on CPU, batch 32,
length 128, all-MiniLM-L6-v2 weights (packaged offline). Both models run in the same process,
interleaved, best of `--repeats`. Run under the heavy-work lock so timings are honest:

    flock /tmp/heavy.lock python benchmarks/bench_encoder.py

The result is merged into results/bench.json under the key "encoder_forward".
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from benchjson import BENCH_JSON, machine, merge

from bigmodel_lab.models import packaged_model_path
from bigmodel_lab.transformer import encoder_from_pretrained

KEY = "encoder_forward"


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(batch: int = 32, length: int = 128, repeats: int = 5, threads: int | None = None) -> dict:
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    path = packaged_model_path()
    hf = BertModel.from_pretrained(path, attn_implementation="sdpa").eval()
    ours = encoder_from_pretrained(path, attention_backend="fused").eval()
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, hf.config.vocab_size, (batch, length), generator=g)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[batch // 2 :, length * 3 // 4 :] = 0  # half the batch padded, like real text
    with torch.inference_mode():
        ref = hf(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        out = ours(input_ids, attention_mask).last_hidden_state
        max_diff = (ref - out).abs().max().item()
        hf_s, ours_s = float("inf"), float("inf")
        for _ in range(2):  # warm up both
            hf(input_ids=input_ids, attention_mask=attention_mask)
            ours(input_ids, attention_mask)
        for _ in range(repeats):  # interleave so background load hits both alike
            hf_s = min(hf_s, best_time(lambda: hf(input_ids=input_ids, attention_mask=attention_mask), 1))
            ours_s = min(ours_s, best_time(lambda: ours(input_ids, attention_mask), 1))
    return {
        "model": "all-MiniLM-L6-v2 (packaged)",
        "batch": batch,
        "length": length,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "machine": machine(),
        "transformers_bert_ms": 1000 * hf_s,
        "from_scratch_ms": 1000 * ours_s,
        "ratio_from_scratch_over_hf": ours_s / hf_s,
        "target_ratio": 1.2,
        "max_abs_diff": max_diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args.batch, args.length, args.repeats, args.threads)
    print(f"BertModel     {result['transformers_bert_ms']:8.1f} ms")
    print(f"from scratch  {result['from_scratch_ms']:8.1f} ms")
    verdict = "meets" if result["ratio_from_scratch_over_hf"] <= 1.2 else "misses"
    print(f"ratio         {result['ratio_from_scratch_over_hf']:8.2f}x ({verdict} the 1.2x target)"
          f" | max |diff| {result['max_abs_diff']:.1e} | {result['threads']} threads")
    if not args.no_save:
        merge(KEY, result)
        print(f"saved under {KEY!r} in {BENCH_JSON}")


if __name__ == "__main__":
    main()
