"""Forward time of the from-scratch Encoder vs transformers.BertModel, same weights, same run.

Target (issue 16): the from-scratch encoder at least as fast as BertModel (time ratio
<= 1.0) on CPU, batch 32, length 128, fp32, all-MiniLM-L6-v2 weights (packaged offline), a
quarter of half the batch padded. Both models run in the same process, interleaved (order
reversed every round), best of `--repeats`, on `benchjson.CLOCK`. Run it alone on its core:

    /tmp/heavy old python benchmarks/bench_encoder.py

The result is merged into results/bench.json under the key "encoder_forward".
"""

from __future__ import annotations

import argparse
import os

import torch
from benchjson import BENCH_JSON, best_of_interleaved, machine, merge

from bigmodel_lab.models import packaged_model_path
from bigmodel_lab.transformer import encoder_from_pretrained

KEY = "encoder_forward"
TARGET = 1.0


def run(batch: int = 32, length: int = 128, repeats: int = 10, threads: int | None = None) -> dict:
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
        # Ablations, each one switch away from the fused encoder: the hand-written attention
        # (materialises the T x T weights), and GPT-2's tanh GELU instead of BERT's exact one.
        lab = encoder_from_pretrained(path, attention_backend="lab").eval()
        tanh = encoder_from_pretrained(path, attention_backend="fused", activation="gelu_tanh").eval()
        tanh_diff = (tanh(input_ids, attention_mask).last_hidden_state - ref).abs().max().item()
        ms = best_of_interleaved({
            "hf": lambda: hf(input_ids=input_ids, attention_mask=attention_mask),
            "ours": lambda: ours(input_ids, attention_mask),
            "lab_attention": lambda: lab(input_ids, attention_mask),
            "gelu_tanh": lambda: tanh(input_ids, attention_mask)}, repeats)
    hf_s, ours_s = ms["hf"] / 1e3, ms["ours"] / 1e3
    ablations = {"hand-written attention (lab backend)": ms["lab_attention"] / ms["hf"],
                 "tanh GELU instead of exact": ms["gelu_tanh"] / ms["hf"]}
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
        "target_ratio": TARGET,
        "max_abs_diff": max_diff,
        "ablations_time_over_hf": ablations,
        "gelu_tanh_max_abs_diff": tanh_diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args.batch, args.length, args.repeats, args.threads)
    print(f"BertModel     {result['transformers_bert_ms']:8.1f} ms")
    print(f"from scratch  {result['from_scratch_ms']:8.1f} ms")
    verdict = "meets" if result["ratio_from_scratch_over_hf"] <= TARGET else "misses"
    print(f"time ratio    {result['ratio_from_scratch_over_hf']:8.3f}x ({verdict} the <= {TARGET}x"
          " target)"
          f" | max |diff| {result['max_abs_diff']:.1e} | {result['threads']} threads")
    for name, ratio in result["ablations_time_over_hf"].items():
        print(f"  ablation: {name:38s} {ratio:.3f}x BertModel's time")
    if not args.no_save:
        merge(KEY, result)
        print(f"saved under {KEY!r} in {BENCH_JSON}")


if __name__ == "__main__":
    main()
