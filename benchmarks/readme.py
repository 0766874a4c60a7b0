"""Render results/bench.json as the README's benchmark section (`make bench` updates it).

The README holds the section between two marker lines; `python benchmarks/readme.py` rewrites
it from bench.json, so the figures shown are always the last measured ones, with the machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def render(bench: dict) -> str:
    rows = ["| benchmark | what is compared | ratio | target |", "|---|---|---|---|"]
    if enc := bench.get("encoder_forward"):
        rows.append(f"| encoder forward, batch {enc['batch']} x {enc['length']}, fp32 | from-scratch "
                    f"encoder / `transformers.BertModel` (same weights) | "
                    f"{enc['ratio_from_scratch_over_hf']:.2f}x time | <= {enc['target_ratio']}x |")
    for row in bench.get("attention", {}).get("rows", []):
        rows.append(f"| attention, T = {row['seq_len']} | hand-written / fused SDPA | "
                    f"{row['ratio_hand_over_fused']:.2f}x time | (teaching code) |")
    for name, row in bench.get("finetune_throughput", {}).get("rows", {}).items():
        if name != "padded_to_max_length":
            rows.append(f"| fine-tuning throughput | {name.replace('_', ' ')} / padded to max "
                        f"length | {row['speedup_vs_padded']:.2f}x faster | - |")
    q = bench.get("quantized_latency", {})
    deployed = q.get("deployed")
    for name, row in q.get("rows", {}).items():
        if name != "pytorch_eager_fp32":
            goal = (f">= {q['target_speedup_int8']}x (deployed)" if name == deployed
                    else ">= 2x" if name == "pytorch_dynamic_int8" else "-")
            rows.append(f"| classifier throughput, batch {q['batch']} x {q['length']} | "
                        f"{name.replace('_', ' ')} / PyTorch eager fp32 | "
                        f"{row['speedup_vs_eager_fp32']:.2f}x faster | {goal} |")
    if acc := q.get("accuracy"):
        rows.append(f"| deployed int8 accuracy, {acc['test_sentences']} test sentences | "
                    f"int8 - fp32 ({acc['int8_fused']:.3f} vs {acc['fp32']:.3f}), McNemar p = "
                    f"{acc['mcnemar_p']:.2f} | {100 * acc['diff_int8_minus_fp32']:+.1f} points: "
                    f"{acc['within_one_se_of_fp32']} | within 1 SE "
                    f"({100 * acc['fp32_se']:.1f} points) |")
    if loop := bench.get("training_loop"):
        rows.append(f"| training loop, batch {loop['batch_size']}, max length "
                    f"{loop['max_length']}, {loop['precision']} | `train.fit` / `Trainer` "
                    f"examples/s (validation loss {loop['loss_diff_fit_minus_trainer']:+.3f} +- "
                    f"{loop['loss_diff_se']:.3f}) | {loop['ratio_fit_over_trainer']:.2f}x | "
                    f">= {loop['target_ratio']}x, same loss |")
    if mfu := bench.get("training_mfu"):
        rows.append(f"| fine-tune MFU ({mfu['device']}) | 6 N tokens / s over the measured "
                    f"{mfu['peak']} peak ({mfu['peak_flops'] / 1e9:.0f} GFLOP/s) | "
                    f"{mfu['mfu']:.2f} | >= {mfu['target_mfu']} |")
    for row in bench.get("serving", {}).get("rows", []):
        rows.append(f"| web service, {row['concurrency']} client(s) | p50 / p95 / p99 latency, "
                    f"requests/s | {row['p50_ms']:.1f} / {row['p95_ms']:.1f} / "
                    f"{row['p99_ms']:.1f} ms, {row['requests_per_s']:.0f} req/s | - |")
    if llm := bench.get("serving", {}).get("llm"):
        for row in llm["rows"]:
            rows.append(f"| LLM streaming `/generate` ({llm['model']}), {row['concurrency']} "
                        f"client(s) | time to first token p50 / p95, tokens/s per client and "
                        f"total | {row['ttft_p50_ms']:.0f} / {row['ttft_p95_ms']:.0f} ms, "
                        f"{row['tokens_per_s_per_request']:.1f} and {row['tokens_per_s_total']:.1f} "
                        f"tok/s | - |")
    if dec := bench.get("decoder"):
        rows.append(f"| LLM decoding, batch 1, {dec['new_tokens']} new tokens | from-scratch decoder "
                    f"+ KV cache / `LlamaForCausalLM.generate` (same weights) | "
                    f"{dec['ratio_from_scratch_over_hf']:.2f}x tokens/s | >= {dec['target_ratio']}x |")
        labels = {"fp32": "fp32, read-order layout", "fp32_plain_layout": "fp32, nn.Linear layout"}
        for name, b in dec["bound"].items():
            rows.append(f"| LLM decoding, batch 1, {labels.get(name, name.replace('_', ' '))} | tokens/s / memory-"
                        f"bandwidth bound ({dec['copy_bandwidth_gbs']:.1f} GB/s, "
                        f"{b['weight_mb']:.0f} MB per token) | {b['fraction_of_bound']:.2f} | "
                        f"{'>= ' + str(dec['target_fraction_fp32']) if name == 'fp32' else '-'} |")
    m = bench.get("_run_all", {}).get("machine") or (bench.get("encoder_forward") or {}).get(
        "machine", {})
    where = (f"Measured on {m.get('cpu', '?')} with {m.get('cores', '?')} cores, "
             f"{m.get('threads', '?')} threads, torch {m.get('torch', '?')}, "
             f"GPU: {m.get('gpu') or 'none'}, at {m.get('measured_at', '?')} "
             "(each row's own machine card is in results/bench.json).")
    others = sorted({(v["machine"].get("cpu"), v["machine"].get("simd"), v["machine"]["measured_at"][:10], k)
                     for k, v in bench.items() if isinstance(v, dict) and "machine" in v
                     and v["machine"].get("cpu") != m.get("cpu")})
    if others:  # a benchmark re-run on another machine: its figures are not comparable row to row
        where += " Measured on another machine: " + "; ".join(
            f"`{key}` on {cpu}{f' ({simd})' if simd else ''}, {day}" for cpu, simd, day, key in others) + "."
    return "\n".join([START, "", *rows, "", where, "", END])


def update(readme: Path = ROOT / "README.md", bench_path: Path = ROOT / "results" / "bench.json"
           ) -> bool:
    """Rewrite the README section; True when it changed."""
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = head + render(json.loads(bench_path.read_text())) + tail
    readme.write_text(new)
    return new != text


if __name__ == "__main__":
    print("README benchmark section", "updated" if update() else "already current")
    sys.exit(0)
