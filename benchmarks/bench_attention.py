"""Attention speed: the book's hand-written attention vs PyTorch's fused SDPA, same run.

`bigmodel_lab.attention.scaled_dot_product_attention` materialises the (T x T) weights, as
the maths is written; `torch.nn.functional.scaled_dot_product_attention` uses a fused kernel
that does not. Both run on the same random tensors, interleaved, best of `--repeats`; the
ratio hand-written / fused is printed per sequence length and saved under "attention" in
results/bench.json.

    flock /tmp/heavy.lock python benchmarks/bench_attention.py
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from benchjson import best_ms, machine, merge

from bigmodel_lab.attention import scaled_dot_product_attention

KEY = "attention"


def run(batch: int = 8, heads: int = 12, head_dim: int = 64, seq_lens=(128, 256, 512),
        repeats: int = 5) -> dict:
    rows = []
    for T in seq_lens:
        g = torch.Generator().manual_seed(T)
        q, k, v = (torch.randn(batch, heads, T, head_dim, generator=g) for _ in range(3))
        with torch.inference_mode():
            ours, _ = scaled_dot_product_attention(q, k, v)
            ref = F.scaled_dot_product_attention(q, k, v)
            diff = (ours - ref).abs().max().item()
            hand = best_ms(lambda q=q, k=k, v=v: scaled_dot_product_attention(q, k, v), repeats)
            fused = best_ms(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v), repeats)
        rows.append({"seq_len": T, "hand_written_ms": hand, "fused_sdpa_ms": fused,
                     "ratio_hand_over_fused": hand / fused, "max_abs_diff": diff})
    return {"shape": f"batch {batch} x {heads} heads x T x {head_dim}", "rows": rows,
            "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    result = run(repeats=args.repeats)
    print(f"attention, {result['shape']}, {result['machine']['threads']} threads")
    for r in result["rows"]:
        print(f"  T={r['seq_len']:5d}  hand-written {r['hand_written_ms']:8.2f} ms  fused SDPA "
              f"{r['fused_sdpa_ms']:8.2f} ms  ratio {r['ratio_hand_over_fused']:.2f}x  "
              f"max |diff| {r['max_abs_diff']:.1e}")
    if not args.no_save:
        merge(KEY, result)


if __name__ == "__main__":
    main()
