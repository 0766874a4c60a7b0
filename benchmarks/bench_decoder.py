"""Decoding speed: the from-scratch Llama decoder vs `transformers`, and the bandwidth bound.

(a) `decoder.Decoder` with its preallocated KV cache vs `LlamaForCausalLM.generate` on the same
weights (the packaged SmolLM2-135M-Instruct), greedy, batch 1, `--new-tokens` new tokens after a
16-token prompt: tokens/s ratio, target >= 1.0x.
(b) the fraction of the memory-bandwidth bound reached at batch 1: every token reads every weight
once, so tokens/s <= (copy bandwidth measured in the same run) / (bytes of weights); target >= 0.5
in fp32, reached by `convert.read_order_layout` (every matrix stored transposed, the order a
batch-1 step reads fastest); the plain layout and PyTorch dynamic int8 reported beside it. All timings on `benchjson.CLOCK` (CPU time on
one pinned core). Saved under "decoder" in results/bench.json.

    /tmp/heavy old python benchmarks/bench_decoder.py
"""

from __future__ import annotations

import argparse
import copy
import os

import torch
from benchjson import best_ms, machine, merge

KEY = "decoder"


def _best_tps(fn, new_tokens: int, repeats: int) -> float:
    return new_tokens / (best_ms(fn, repeats, warmup=1) / 1e3)  # on benchjson.CLOCK


def run(new_tokens: int = 128, repeats: int = 3, bandwidth_mb: int = 256) -> dict:
    from bigmodel_lab import bandwidth, compress
    from bigmodel_lab.convert import read_order_layout
    from bigmodel_lab.generate import generate
    from bigmodel_lab.models import load_causal_lm
    from bigmodel_lab.transformer import decoder_from_pretrained

    hf, tokenizer, source = load_causal_lm()
    ours = decoder_from_pretrained(hf)
    text = ("The old lighthouse stood at the end of the harbour, and every evening the keeper "
            "climbed its stairs to light the lamp.")
    ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :16]
    config = copy.deepcopy(hf.generation_config)
    config.eos_token_id = None  # exactly new_tokens tokens, as ours (no stop token)
    config.do_sample = False
    config.max_new_tokens = new_tokens
    mask = torch.ones_like(ids)

    def hf_generate():
        out = hf.generate(ids, attention_mask=mask, generation_config=config)
        assert out.shape[1] == ids.shape[1] + new_tokens
        return out

    with torch.inference_mode():
        same = generate(ours, ids, new_tokens).tolist() == hf_generate().tolist()
        hf_tps = _best_tps(hf_generate, new_tokens, repeats)
        ours_tps = _best_tps(lambda: generate(ours, ids, new_tokens), new_tokens, repeats)
        src = torch.ones(bandwidth_mb * 2**20 // 4)
        dst = torch.empty_like(src)
        bw = 2 * src.nbytes / (best_ms(lambda: dst.copy_(src), 5) / 1e3) / 1e9  # read + write
        int8 = compress.quantize_dynamic_int8(ours)
        int8_tps = _best_tps(lambda: generate(int8, ids, new_tokens), new_tokens, repeats)
        int8_bytes = bandwidth.weight_bytes_per_token(int8)
        int8 = None  # freed before the layout change
        plain_bytes = bandwidth.weight_bytes_per_token(ours)
        reference = generate(ours, ids, new_tokens).tolist()
        fast = read_order_layout(ours)  # in place: the plain layout is measured above
        fast_same = generate(fast, ids, new_tokens).tolist() == reference
        fast_tps = _best_tps(lambda: generate(fast, ids, new_tokens), new_tokens, repeats)
    bound = {"fp32": bandwidth.decode_bound(fast_tps, bandwidth.weight_bytes_per_token(fast), bw),
             "fp32_plain_layout": bandwidth.decode_bound(ours_tps, plain_bytes, bw),
             "int8_dynamic": bandwidth.decode_bound(int8_tps, int8_bytes, bw)}
    return {"model": source.name, "source": str(source), "batch": 1, "prompt_tokens": ids.shape[1],
            "new_tokens": new_tokens, "greedy_tokens_identical": same,
            "read_order_tokens_identical": fast_same,
            "tokens_per_s": {"from_scratch_cache": ours_tps, "transformers_generate": hf_tps,
                             "from_scratch_read_order": fast_tps},
            "ratio_from_scratch_over_hf": ours_tps / hf_tps, "target_ratio": 1.0,
            "copy_bandwidth_gbs": bw, "bound": bound, "target_fraction_fp32": 0.5,
            "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bandwidth-mb", type=int, default=256)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    r = run(args.new_tokens, args.repeats, args.bandwidth_mb)
    t = r["tokens_per_s"]
    print(f"{r['model']}, batch 1, {r['prompt_tokens']} + {r['new_tokens']} tokens, "
          f"{r['machine']['threads']} thread(s); greedy tokens identical: {r['greedy_tokens_identical']} "
          f"(read-order layout: {r['read_order_tokens_identical']})")
    print(f"  from-scratch + cache {t['from_scratch_cache']:.1f} tok/s, transformers.generate "
          f"{t['transformers_generate']:.1f} tok/s: {r['ratio_from_scratch_over_hf']:.2f}x (target >= 1.0x)")
    print(f"  copy bandwidth {r['copy_bandwidth_gbs']:.1f} GB/s")
    for name, b in r["bound"].items():
        print(f"  {name:17s} {b['tokens_per_s']:6.1f} tok/s of a {b['bound_tokens_per_s']:.1f} tok/s bound "
              f"({b['weight_mb']:.0f} MB read per token): {b['fraction_of_bound']:.2f}")
    if not args.no_save:
        merge(KEY, r)


if __name__ == "__main__":
    main()
