"""Quantized and ONNX latency: eager fp32 vs PyTorch dynamic int8 vs ONNX Runtime fp32 / int8.

The Part III classifier (notebook 06's checkpoint when present, else the packaged
all-MiniLM-L6-v2 with an untrained head: then no accuracy is reported) on one batch of
`--batch` real sentences padded to `--length` tokens (batch 32, length 128), each engine
timed in the same run, interleaved, best of `--repeats` on `benchjson.CLOCK`. The deployed
variant is `compress.export_int8`: ONNX export, ONNX Runtime's transformer fusions
(attention, SkipLayerNorm, GELU), then dynamic int8 of the fused graph; notebooks 09 and 11
and the web service use the same recipe. Target (issue 16): its throughput >= 4x eager fp32,
and its test accuracy within one standard error of fp32 (paired McNemar test beside it).
Saved under "quantized_latency" in results/bench.json.

    /tmp/heavy old python benchmarks/bench_quantized.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from benchjson import best_of_interleaved, machine, merge

KEY = "quantized_latency"
TARGET_SPEEDUP = 4.0


def classifier():
    """(model, tokenizer, trained): 06's fine-tuned checkpoint if saved, else the packaged one."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bigmodel_lab.finetune import checkpoint_dir
    from bigmodel_lab.models import load_pretrained

    folder = checkpoint_dir("sst2", "all-MiniLM-L6-v2")
    if (folder / "config.json").exists():
        return (AutoModelForSequenceClassification.from_pretrained(folder),
                AutoTokenizer.from_pretrained(folder), True)
    model, tokenizer, _ = load_pretrained("all-MiniLM-L6-v2")
    return model, tokenizer, False


def run(batch: int = 32, length: int = 128, repeats: int = 5) -> dict:
    from bigmodel_lab import compress, metrics
    from bigmodel_lab.data import load_sentiment
    from bigmodel_lab.finetune import predict_proba

    model, tokenizer, trained = classifier()
    model.eval()
    test = load_sentiment("sst2", offline=True)["test"]
    texts = list(test["text"][:batch])
    inputs = compress.fixed_batch(tokenizer, texts, batch, length)
    ids, mask = inputs["input_ids"].numpy(), inputs["attention_mask"].numpy()
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = compress.export_onnx(model, tokenizer, Path(tmp) / "plain" / "model.onnx",
                                         length)
        int8_path = compress.quantize_onnx(fp32_path, Path(tmp) / "plain" / "model-int8.onnx")
        deployed = compress.export_int8(model, tokenizer, Path(tmp) / "fused", length)
        threads = torch.get_num_threads()
        paths = {"onnxruntime_fp32": fp32_path, "onnxruntime_int8": int8_path,
                 "onnxruntime_fp32_fused": deployed["fused"],
                 "onnxruntime_int8_fused": deployed["int8"]}
        ort = {name: compress.OnnxClassifier(p, tokenizer=tokenizer, threads=threads)
               for name, p in paths.items()}
        torch_int8 = compress.quantize_dynamic_int8(model)
        engines = {"pytorch_eager_fp32": lambda: model(**inputs),
                   "pytorch_dynamic_int8": lambda: torch_int8(**inputs)}
        engines |= {name: (lambda s=s: s.logits(ids, mask)) for name, s in ort.items()}
        with torch.inference_mode():
            rows = {name: {"ms": ms} for name, ms in best_of_interleaved(engines, repeats).items()}
        fused_ops = compress.fused_operators(deployed["int8"])
        accuracy = None
        if trained:  # the deployed variant against fp32 eager, on the whole test split
            labels = np.asarray(test["label"])
            right_fp32 = predict_proba(model, tokenizer, list(test["text"]), length, 32
                                       ).argmax(-1) == labels
            right_int8 = ort["onnxruntime_int8_fused"].predict_proba(list(test["text"])
                                                                     ).argmax(-1) == labels
            fp32_acc = metrics.accuracy_with_error(right_fp32)
            paired = metrics.mcnemar(right_fp32, right_int8)
            diff = paired.accuracy_b - paired.accuracy_a
            paired_se = (paired.diff_high - paired.diff_low) / (2 * 1.96)
            accuracy = {"test_sentences": len(labels), "fp32": fp32_acc.value,
                        "fp32_se": fp32_acc.se, "int8_fused": paired.accuracy_b,
                        "diff_int8_minus_fp32": diff, "mcnemar_p": paired.p_value,
                        "verdict": paired.verdict("fp32 eager", "deployed int8"),
                        "within_one_se_of_fp32": metrics.within(diff, paired_se, fp32_acc.se)}
        sizes = {name: compress.size_mb(p) for name, p in paths.items()}
    for name, row in rows.items():
        row["speedup_vs_eager_fp32"] = rows["pytorch_eager_fp32"]["ms"] / row["ms"]
        row["texts_per_s"] = batch / row["ms"] * 1e3
        if name in sizes:
            row["size_mb"] = sizes[name]
    return {"model": "all-MiniLM-L6-v2 classifier" + ("" if trained else " (untrained head)"),
            "batch": batch, "length": length, "rows": rows, "deployed": "onnxruntime_int8_fused",
            "fused_operators": fused_ops, "accuracy": accuracy,
            "target_speedup_int8": TARGET_SPEEDUP, "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args.batch, args.length, args.repeats)
    print(f"{result['model']}, batch {result['batch']} x {result['length']} tokens, "
          f"{result['machine']['threads']} threads")
    for name, r in result["rows"].items():
        print(f"  {name:24s} {r['ms']:8.1f} ms  {r['speedup_vs_eager_fp32']:.2f}x eager fp32")
    print(f"  fused graph: {result['fused_operators']}")
    if acc := result["accuracy"]:
        print(f"  test accuracy on {acc['test_sentences']} sentences: fp32 {acc['fp32']:.4f} "
              f"(SE {acc['fp32_se']:.4f}), deployed int8 {acc['int8_fused']:.4f}; "
              f"{acc['verdict']}; within one SE of fp32: {acc['within_one_se_of_fp32']}")
    if not args.no_save:
        merge(KEY, result)


if __name__ == "__main__":
    main()
