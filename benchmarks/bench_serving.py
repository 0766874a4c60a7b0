"""Serving latency: the FastAPI service (ONNX int8) under a bounded loopback load test.

Starts `bigmodel_lab.serve` on 127.0.0.1 with the packaged all-MiniLM-L6-v2 classifier
exported to ONNX int8, sends `--requests` one-sentence requests at each concurrency, and
reports p50 / p95 / p99 latency and requests/s. The ratio served p50 / direct call (the same
classifier called in-process on one sentence) is the cost of HTTP, JSON and validation.
Then the streaming /generate endpoint of the packaged SmolLM2 (time to first token, tokens/s
at 1 and 4 clients; `--no-llm` skips it). Saved under "serving" in results/bench.json.

    flock /tmp/heavy.lock python benchmarks/bench_serving.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from benchjson import best_ms, machine, merge

KEY = "serving"


def run(requests: int = 300, concurrency=(1, 4, 16), time_limit_s: float = 60.0) -> dict:
    from bigmodel_lab import compress, serve
    from bigmodel_lab.data import load_sentiment
    from bigmodel_lab.models import load_pretrained

    model, tokenizer, _ = load_pretrained("all-MiniLM-L6-v2")
    texts = list(load_sentiment("sst2", offline=True)["test"]["text"])
    with tempfile.TemporaryDirectory() as tmp:
        path = compress.export_onnx(model.eval(), tokenizer, Path(tmp) / "model.onnx", 64)
        path = compress.quantize_onnx(path, Path(tmp) / "model-int8.onnx")
        classifier = compress.OnnxClassifier(path, tokenizer=tokenizer,
                                             threads=torch.get_num_threads())
        direct = best_ms(lambda: classifier.predict_proba(texts[:1]), repeats=50)
        rows = []
        with serve.start_server(serve.create_app(classifier, "MiniLM ONNX int8")) as server:
            serve.load_test(server.url, texts, n_requests=20, concurrency=1)  # warm-up
            for clients in concurrency:
                report = serve.load_test(server.url, texts, n_requests=requests,
                                         concurrency=clients, time_limit_s=time_limit_s)
                rows.append({**report.as_dict(),
                             "ratio_p50_over_direct": report.p50_ms / direct})
    return {"model": "all-MiniLM-L6-v2 classifier, ONNX int8, max_length 64",
            "direct_call_ms": direct, "rows": rows, "machine": machine(),
            "note": "client threads run in the same process as the server"}


def run_llm(requests_per_client: int = 4, concurrency=(1, 4), max_new_tokens: int = 32,
            time_limit_s: float = 120.0) -> dict:
    """The streaming /generate endpoint (packaged SmolLM2-135M, fp32): time to first token and
    tokens/s at each concurrency; the ratio is total tokens/s at the most clients over one."""
    from bigmodel_lab import serve
    from bigmodel_lab.models import load_causal_lm

    model, tokenizer, source = load_causal_lm()
    prompts = ["Describe a rainy day in one sentence.", "Name three classic films."]
    rows = []
    with serve.start_server(serve.create_app(llm=(model, tokenizer))) as server:
        serve.load_test_generate(server.url, prompts, n_requests=1, max_new_tokens=4)  # warm-up
        for clients in concurrency:
            rows.append(serve.load_test_generate(
                server.url, prompts, n_requests=requests_per_client * clients,
                concurrency=clients, max_new_tokens=max_new_tokens,
                time_limit_s=time_limit_s).as_dict())
    return {"model": f"{source.name} fp32, greedy, {max_new_tokens} new tokens", "rows": rows,
            "ratio_total_tokens_per_s": rows[-1]["tokens_per_s_total"]
            / rows[0]["tokens_per_s_total"], "machine": machine(),
            "note": "server-sent events over loopback; client threads in the server's process"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--no-llm", action="store_true", help="skip the /generate benchmark")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args.requests)
    print(f"{result['model']}; direct call {result['direct_call_ms']:.2f} ms per sentence")
    for r in result["rows"]:
        print(f"  {r['concurrency']:3d} clients: p50 {r['p50_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f} ms"
              f"  p99 {r['p99_ms']:6.1f} ms  {r['requests_per_s']:6.1f} req/s  "
              f"p50/direct {r['ratio_p50_over_direct']:.1f}x  ({r['ok']} ok, {r['failed']} failed)")
    if not args.no_llm:
        result["llm"] = run_llm()
        print(result["llm"]["model"])
        for r in result["llm"]["rows"]:
            print(f"  {r['concurrency']:3d} clients: TTFT p50 {r['ttft_p50_ms']:7.1f} ms  "
                  f"{r['tokens_per_s_per_request']:6.1f} tokens/s per client  "
                  f"{r['tokens_per_s_total']:6.1f} in total  ({r['ok']} ok, {r['failed']} failed)")
    if not args.no_save:
        merge(KEY, result)


if __name__ == "__main__":
    main()
