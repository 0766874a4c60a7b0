"""Quantized and ONNX latency: eager fp32 vs PyTorch dynamic int8 vs ONNX Runtime fp32 / int8.

The packaged all-MiniLM-L6-v2 classifier on one batch of `--batch` real sentences padded to
`--length` tokens (the book's target shape: batch 32, length 128), each engine timed in the
same run, best of `--repeats`. Prints latency and the speed-up over eager fp32 PyTorch (Part
IV's target: int8 at least 2x faster) and saves them under "quantized_latency" in
results/bench.json.

    flock /tmp/heavy.lock python benchmarks/bench_quantized.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from benchjson import best_ms, machine, merge

KEY = "quantized_latency"


def run(batch: int = 32, length: int = 128, repeats: int = 5) -> dict:
    from bigmodel_lab import compress
    from bigmodel_lab.data import load_sentiment
    from bigmodel_lab.models import load_pretrained

    model, tokenizer, _ = load_pretrained("all-MiniLM-L6-v2")
    model.eval()
    texts = list(load_sentiment("sst2", offline=True)["test"]["text"][:batch])
    inputs = compress.fixed_batch(tokenizer, texts, batch, length)
    ids, mask = inputs["input_ids"].numpy(), inputs["attention_mask"].numpy()
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = compress.export_onnx(model, tokenizer, Path(tmp) / "model.onnx", length)
        int8_path = compress.quantize_onnx(fp32_path, Path(tmp) / "model-int8.onnx")
        threads = torch.get_num_threads()
        ort_fp32 = compress.OnnxClassifier(fp32_path, tokenizer=tokenizer, threads=threads)
        ort_int8 = compress.OnnxClassifier(int8_path, tokenizer=tokenizer, threads=threads)
        torch_int8 = compress.quantize_dynamic_int8(model)
        engines = {
            "pytorch_eager_fp32": lambda: model(**inputs),
            "pytorch_dynamic_int8": lambda: torch_int8(**inputs),
            "onnxruntime_fp32": lambda: ort_fp32.logits(ids, mask),
            "onnxruntime_int8": lambda: ort_int8.logits(ids, mask),
        }
        with torch.inference_mode():
            rows = {name: {"ms": best_ms(fn, repeats)} for name, fn in engines.items()}
        sizes = {"onnxruntime_fp32": compress.size_mb(fp32_path),
                 "onnxruntime_int8": compress.size_mb(int8_path)}
    for name, row in rows.items():
        row["speedup_vs_eager_fp32"] = rows["pytorch_eager_fp32"]["ms"] / row["ms"]
        if name in sizes:
            row["size_mb"] = sizes[name]
    return {"model": "all-MiniLM-L6-v2 classifier", "batch": batch, "length": length,
            "rows": rows, "target_speedup_int8": 2.0, "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args.batch, args.length, args.repeats)
    print(f"{result['model']}, batch {result['batch']} x {result['length']} tokens, "
          f"{result['machine']['threads']} threads")
    for name, r in result["rows"].items():
        print(f"  {name:22s} {r['ms']:8.1f} ms  {r['speedup_vs_eager_fp32']:.2f}x eager fp32")
    if not args.no_save:
        merge(KEY, result)


if __name__ == "__main__":
    main()
