"""A small prediction service: FastAPI + uvicorn around a saved classifier.

    POST /predict   {"texts": ["a great film", ...]}  ->  labels and probabilities
    GET  /health    model name, limits, and the privacy promise

The model is an ONNX int8 graph by default (`bigmodel_lab.compress.OnnxClassifier`); any
object with `predict_proba(texts) -> (N, 2) array` works. Every malformed request gets a 4xx
whose message says what to fix. Privacy: the service never logs request text, only counts,
sizes and timings, and its error messages never echo the text back.

Run it from a shell (loopback only by default):

    python -m bigmodel_lab.serve --model exports/sst2/model-int8.onnx --port 8000
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from fastapi import Request  # at module level: FastAPI resolves the string annotation here

log = logging.getLogger("bigmodel_lab.serve")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PRIVACY_NOTE = "Request text is never logged or echoed; logs hold counts, sizes and timings only."


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_texts: int = 64  # texts per request
    max_chars: int = 5000  # characters per text (a long IMDb review is ~ 13,000)


class BadRequest(Exception):
    """A request the service refuses, with the HTTP status and a message saying what to fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


EXAMPLE = '{"texts": ["a gripping, beautifully shot film"]}'


def _kind(value) -> str:
    """JSON type name of a parsed value (never the value itself: it may be personal data)."""
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list",
            dict: "object"}.get(type(value), type(value).__name__)


def validate(body: bytes, limits: Limits) -> list[str]:
    """The list of texts in a request body, or BadRequest naming the rule it broke."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest(400, f"The body is not valid JSON. Send a JSON object like {EXAMPLE} "
                              "with the header Content-Type: application/json.") from None
    if not isinstance(payload, dict):
        raise BadRequest(422, f"The body is a JSON {_kind(payload)}; send a JSON object with a "
                              f"'texts' list, like {EXAMPLE}.")
    if "texts" not in payload:
        keys = ", ".join(sorted(map(str, payload))) or "none"
        raise BadRequest(422, f"The body has no 'texts' field (fields sent: {keys}). "
                              f"Send {EXAMPLE}.")
    texts = payload["texts"]
    if isinstance(texts, str):
        raise BadRequest(422, "'texts' is a single string; wrap it in a list: "
                              '{"texts": ["your text"]}.')
    if not isinstance(texts, list):
        raise BadRequest(422, f"'texts' is a {_kind(texts)}; it must be a list of strings, "
                              f"like {EXAMPLE}.")
    if not texts:
        raise BadRequest(422, "'texts' is an empty list; send at least one text.")
    if len(texts) > limits.max_texts:
        raise BadRequest(413, f"{len(texts)} texts in one request; the limit is "
                              f"{limits.max_texts}. Split them into requests of at most "
                              f"{limits.max_texts}.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequest(422, f"texts[{i}] is a {_kind(text)}, not a string; send every "
                                  "item as text (quote numbers, drop nulls).")
        if len(text) > limits.max_chars:
            raise BadRequest(413, f"texts[{i}] has {len(text)} characters; the limit is "
                                  f"{limits.max_chars}. Shorten it or split it into parts.")
    return texts


def create_app(classifier, model_name: str = "model", limits: Limits | None = None,
               labels: Sequence[str] = ("negative", "positive")):
    """A FastAPI app serving `classifier.predict_proba(texts)`."""
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse

    limits = limits or Limits()
    app = FastAPI(title="bigmodel-lab sentiment service", description=PRIVACY_NOTE)
    app.state.stats = {"requests": 0, "texts": 0, "rejected": 0}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": model_name, "labels": list(labels),
                **asdict(limits), "logs_request_text": False, "privacy": PRIVACY_NOTE}

    @app.post("/predict")
    async def predict(request: Request):
        start = time.perf_counter()
        body = await request.body()
        try:
            texts = validate(body, limits)
        except BadRequest as err:
            app.state.stats["rejected"] += 1
            log.info("predict rejected status=%d bytes=%d", err.status, len(body))
            return JSONResponse({"error": err.message}, status_code=err.status)
        # The model releases the GIL (ONNX Runtime / torch), so run it off the event loop.
        probs = await run_in_threadpool(classifier.predict_proba, texts)
        probs = np.asarray(probs, dtype=float)
        elapsed = (time.perf_counter() - start) * 1e3
        app.state.stats["requests"] += 1
        app.state.stats["texts"] += len(texts)
        log.info("predict ok n_texts=%d chars=%d ms=%.1f", len(texts),
                 sum(len(t) for t in texts), elapsed)
        return {
            "model": model_name,
            "predictions": [
                {"label": labels[int(row.argmax())],
                 "probabilities": {name: round(float(p), 6) for name, p in zip(labels, row)}}
                for row in probs
            ],
            "elapsed_ms": round(elapsed, 3),
        }

    return app


def load_classifier(path: str | Path, threads: int | None = None):
    """A classifier from a saved model: an .onnx file (fp32 or int8, ONNX Runtime) or a
    Hugging Face folder (PyTorch). Returns (classifier, name)."""
    path = Path(path)
    if path.suffix == ".onnx":
        from .compress import OnnxClassifier

        return OnnxClassifier(path, threads=threads), path.name
    if (path / "config.json").exists():
        return TorchClassifier(path), path.name
    raise FileNotFoundError(
        f"{path} is neither an .onnx file nor a saved model folder. Export one with "
        "bigmodel_lab.compress.export_onnx (+ quantize_onnx for int8) or model.save_pretrained."
    )


class TorchClassifier:
    """A saved Hugging Face classifier behind `predict_proba(texts)` (PyTorch eager)."""

    def __init__(self, folder: str | Path, max_length: int = 128):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.max_length = max_length

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        from .finetune import predict_proba

        return predict_proba(self.model, self.tokenizer, list(texts), self.max_length)


# ----------------------------------------------------------------------------- batching
def batch_throughput(predict, texts: Sequence[str], lengths: Sequence[int], batch_size: int,
                     sort_by_length: bool = False, repeats: int = 1) -> dict:
    """Run `predict(batch_texts)` over all `texts` in batches and time it.

    Each batch is padded to its longest text, so sorting by token length (`lengths`) first
    wastes less compute on padding; results are put back in the original order. Returns
    texts/s (best of `repeats`), the padding share and the probabilities."""
    texts, lengths = list(texts), np.asarray(lengths)
    if len(texts) != len(lengths) or not texts:
        raise ValueError("Give one token length per text, and at least one text.")
    order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(len(texts))
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    padded = sum(len(b) * lengths[b].max() for b in batches)
    best, probs = float("inf"), None
    for _ in range(repeats):
        out = np.zeros((len(texts), 2))
        start = time.perf_counter()
        for b in batches:
            out[b] = predict([texts[i] for i in b])
        best = min(best, time.perf_counter() - start)
        probs = out
    return {"texts_per_s": len(texts) / best, "seconds": best,
            "padding_share": 1 - lengths.sum() / padded, "probs": probs}


# ----------------------------------------------------------------------------- running it
def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    """A uvicorn server running in a background thread; `stop()` ends it."""

    url: str
    server: object
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(app, host: str = "127.0.0.1", port: int | None = None,
                 timeout: float = 30.0) -> RunningServer:
    """Start `app` with uvicorn in a daemon thread on localhost and wait until it answers.

    Only loopback hosts are accepted: this is a teaching server, not a hardened one."""
    import uvicorn

    if host not in LOOPBACK:
        raise ValueError(f"host {host!r} is not loopback; use 127.0.0.1. Put a real server "
                         "(and authentication) in front before exposing a model.")
    port = port or free_port(host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="bigmodel-lab-serve")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"The server did not start on {host}:{port} within {timeout} s.")
        time.sleep(0.02)
    return RunningServer(f"http://{host}:{port}", server, thread)


# ----------------------------------------------------------------------------- load test
@dataclass(frozen=True)
class LoadReport:
    """What a bounded burst of requests measured (latencies in ms, per request)."""

    requests: int
    ok: int
    failed: int
    concurrency: int
    texts_per_request: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    stopped_by: str  # "count" or "time"

    def as_dict(self) -> dict:
        return asdict(self)


MAX_REQUESTS = 20_000
MAX_SECONDS = 300.0


def load_test(url: str, texts: Sequence[str], n_requests: int = 200, concurrency: int = 8,
              texts_per_request: int = 1, time_limit_s: float = 30.0,
              progress: bool = False) -> LoadReport:
    """Send at most `n_requests` POST /predict requests from `concurrency` threads, for at most
    `time_limit_s` seconds, to a loopback `url`; report latency percentiles and requests/s.

    Bounded on purpose (count, time, loopback only): a load test must never turn into an
    accidental denial of service on someone else's machine."""
    import httpx

    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"load_test sends traffic only to loopback (127.0.0.1); got {host!r}.")
    if not 1 <= n_requests <= MAX_REQUESTS:
        raise ValueError(f"n_requests must be in [1, {MAX_REQUESTS}], got {n_requests}.")
    if not 0 < time_limit_s <= MAX_SECONDS:
        raise ValueError(f"time_limit_s must be in (0, {MAX_SECONDS}], got {time_limit_s}.")
    if concurrency < 1 or texts_per_request < 1 or not texts:
        raise ValueError("Need concurrency >= 1, texts_per_request >= 1 and at least one text.")
    texts = list(texts)
    bodies = [{"texts": [texts[(i * texts_per_request + j) % len(texts)]
                         for j in range(texts_per_request)]} for i in range(n_requests)]
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    next_index = [0]
    start = time.perf_counter()
    deadline = start + time_limit_s
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_requests, desc=f"load test x{concurrency}", leave=False)

    def worker(client: httpx.Client) -> None:
        while True:
            with lock:
                i = next_index[0]
                if i >= n_requests or time.perf_counter() > deadline:
                    return
                next_index[0] += 1
            t0 = time.perf_counter()
            try:
                ok = client.post(f"{url}/predict", json=bodies[i]).status_code == 200
            except httpx.HTTPError:
                ok = False
            ms = (time.perf_counter() - t0) * 1e3
            with lock:
                if ok:
                    latencies.append(ms)
                else:
                    failures[0] += 1
                if bar is not None:
                    bar.update(1)

    with httpx.Client(timeout=max(time_limit_s, 10.0),
                      limits=httpx.Limits(max_connections=concurrency)) as client:
        with ThreadPoolExecutor(concurrency) as pool:
            for _ in range(concurrency):
                pool.submit(worker, client)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    sent = next_index[0]
    q = np.percentile(latencies, [50, 95, 99]) if latencies else [float("nan")] * 3
    return LoadReport(
        requests=sent, ok=len(latencies), failed=failures[0], concurrency=concurrency,
        texts_per_request=texts_per_request, seconds=round(seconds, 3),
        requests_per_s=round(len(latencies) / seconds, 2) if seconds else float("nan"),
        p50_ms=round(float(q[0]), 2), p95_ms=round(float(q[1]), 2), p99_ms=round(float(q[2]), 2),
        stopped_by="count" if sent >= n_requests else "time",
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: serve a saved model on localhost."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help=".onnx file or saved model folder")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    parser.add_argument("--max-texts", type=int, default=Limits.max_texts)
    parser.add_argument("--max-chars", type=int, default=Limits.max_chars)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    classifier, name = load_classifier(args.model, threads=args.threads)
    app = create_app(classifier, name, Limits(args.max_texts, args.max_chars))
    log.info("serving %s on http://127.0.0.1:%d (%s)", name, args.port, PRIVACY_NOTE)
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False)


if __name__ == "__main__":
    main()
