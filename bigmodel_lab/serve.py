"""A small model service: FastAPI + uvicorn around a saved classifier and/or a causal LM.

    POST /predict   {"texts": ["a great film", ...]}  ->  labels and probabilities
    POST /generate  {"prompt": "...", "max_new_tokens": 32}  ->  tokens as server-sent events
    GET  /health    model names, limits, and the privacy promise

The classifier is an ONNX int8 graph by default (`bigmodel_lab.compress.OnnxClassifier`); any
object with `predict_proba(texts) -> (N, 2) array` works. The generator is a `transformers`
causal LM and its tokenizer (`bigmodel_lab.models.load_causal_lm`).

Every malformed request gets a 4xx whose message says what to fix, never a 500: a body over
`Limits.max_body_bytes` (2 MB by default) is refused with 413 before it is read, anything but
`Content-Type: application/json` with 415, JSON the parser cannot read (bad UTF-8, nesting
too deep, a 5,000-digit number, NaN) with 400, text that is not valid Unicode (a lone
surrogate) with 422. Should a bug still raise, the client gets a JSON 500 and its keep-alive
connection keeps working. Privacy: request text is never logged, echoed or put in a traceback
(logs hold counts, sizes, timings and exception type names only). The interactive API docs
(/docs, /openapi.json) are off unless `create_app(..., docs=True)` or `--docs`.

Run it from a shell (loopback only by default):

    python -m bigmodel_lab.serve --model exports/sst2/model-int8.onnx --port 8000
    python -m bigmodel_lab.serve --llm --port 8000      # the packaged SmolLM2, /generate
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from queue import Empty, Queue

import numpy as np
from fastapi import Request  # at module level: FastAPI resolves the string annotation here

from .loadtest import (  # noqa: F401  (re-exported: notebook 11 calls serve.load_test)
    LOOPBACK,
    MAX_REQUESTS,
    MAX_SECONDS,
    LoadReport,
    StreamReport,
    load_test,
    load_test_generate,
)

log = logging.getLogger("bigmodel_lab.serve")
PRIVACY_NOTE = "Request text is never logged or echoed; logs hold counts, sizes and timings only."


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_texts: int = 64  # texts per /predict request
    max_chars: int = 5000  # characters per text (a long IMDb review is ~ 13,000)
    # bytes per request body, refused with 413 before reading: 64 texts x 5,000 characters
    # take 0.3-1.3 MB as UTF-8, up to 2 MB with JSON \u escapes
    max_body_bytes: int = 2_000_000
    max_new_tokens: int = 256  # tokens one /generate request may ask for
    max_prompt_tokens: int = 1024  # prompt length, in the LLM's tokens (chat template included)


class BadRequest(Exception):
    """A request the service refuses, with the HTTP status and a message saying what to fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


EXAMPLE = '{"texts": ["a gripping, beautifully shot film"]}'
GENERATE_EXAMPLE = '{"prompt": "Write a haiku about rain.", "max_new_tokens": 32}'
JSON_HEADER = "with the header Content-Type: application/json"


def _kind(value) -> str:
    """JSON type name of a parsed value (never the value itself: it may be personal data)."""
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list",
            dict: "object"}.get(type(value), type(value).__name__)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes, example: str = EXAMPLE):
    """The JSON value of a request body, or BadRequest (400) saying why the parser refused it.

    UTF-8 only (RFC 8259); NaN, Infinity and numbers beyond float range are refused, and so
    is nesting deep enough to exhaust the parser's recursion (`[[[[...`)."""
    again = f"Send a JSON object like {example} {JSON_HEADER}."
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadRequest(400, f"The body is not UTF-8 (bad byte at offset {err.start}). "
                              f"Encode it as UTF-8. {again}") from None
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constants)
    except RecursionError:
        raise BadRequest(400, f"The JSON is nested too deeply to parse. {again}") from None
    except ValueError as err:  # JSONDecodeError, a 5,000-digit integer, NaN, 1e999
        where = f" (line {err.lineno}, column {err.colno})" if hasattr(err, "lineno") else ""
        raise BadRequest(400, f"The body is not valid JSON{where}: numbers must be finite and "
                              f"under 4,300 digits. {again}") from None


def _check_unicode(text: str, where: str) -> None:
    """Refuse text that cannot be encoded (a lone surrogate such as "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise BadRequest(422, f"{where} holds a lone UTF-16 surrogate at character {err.start}, "
                              "which is not valid Unicode text. Encode the text properly on the "
                              "client (in Python: text.encode('utf-8', 'replace')).") from None


def validate(body: bytes, limits: Limits) -> list[str]:
    """The list of texts in a /predict request body, or BadRequest naming the rule it broke."""
    payload = parse_json(body)
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
        _check_unicode(text, f"texts[{i}]")
    return texts


# ----------------------------------------------------------------------------- /generate
@dataclass(frozen=True)
class GenerationRequest:
    """A validated /generate request (the prompt is not tokenized yet)."""

    prompt: str
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    chat: bool = True  # wrap the prompt in the model's chat template
    stream: bool = True  # server-sent events; False returns one JSON object


GENERATION_FIELDS = tuple(GenerationRequest.__dataclass_fields__)


def validate_generation(body: bytes, limits: Limits) -> GenerationRequest:
    """The generation settings of a /generate body, or BadRequest naming the rule it broke."""
    payload = parse_json(body, GENERATE_EXAMPLE)
    if not isinstance(payload, dict):
        raise BadRequest(422, f"The body is a JSON {_kind(payload)}; send a JSON object like "
                              f"{GENERATE_EXAMPLE}.")
    unknown = sorted(set(map(str, payload)) - set(GENERATION_FIELDS))
    if unknown:
        raise BadRequest(422, f"Unknown field(s): {', '.join(unknown)}. The fields are "
                              f"{', '.join(GENERATION_FIELDS)}.")
    prompt = payload.get("prompt")
    if not isinstance(prompt, str):
        got = "no 'prompt' field" if "prompt" not in payload else f"a {_kind(prompt)}"
        raise BadRequest(422, f"'prompt' must be a string; got {got}. Send {GENERATE_EXAMPLE}.")
    if not prompt.strip():
        raise BadRequest(422, "'prompt' is empty; send some text to continue.")
    _check_unicode(prompt, "'prompt'")
    n = payload.get("max_new_tokens", min(GenerationRequest.max_new_tokens, limits.max_new_tokens))
    if isinstance(n, bool) or not isinstance(n, int):
        raise BadRequest(422, f"'max_new_tokens' is a {_kind(n)}; send a whole number from 1 "
                              f"to {limits.max_new_tokens}.")
    if not 1 <= n <= limits.max_new_tokens:
        raise BadRequest(422, f"'max_new_tokens' is {n}; the limit is {limits.max_new_tokens}. "
                              f"Ask for 1 to {limits.max_new_tokens} tokens (several requests "
                              "for a longer text).")
    numbers = {"temperature": (0.0, 5.0, "0 (greedy) to 5"), "top_p": (0.0, 1.0, "(0, 1]")}
    values = {}
    for name, (low, high, span) in numbers.items():
        value = payload.get(name, getattr(GenerationRequest, name))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(422, f"'{name}' is a {_kind(value)}; send a number in {span}.")
        if not low <= value <= high or (name == "top_p" and value == 0):
            raise BadRequest(422, f"'{name}' is {value}; send a number in {span}.")
        values[name] = float(value)
    flags = {}
    for name in ("chat", "stream"):
        value = payload.get(name, getattr(GenerationRequest, name))
        if not isinstance(value, bool):
            raise BadRequest(422, f"'{name}' is a {_kind(value)}; send true or false.")
        flags[name] = value
    return GenerationRequest(prompt, n, **values, **flags)


def prompt_ids(tokenizer, request: GenerationRequest, limits: Limits):
    """(1, T) input ids of the prompt (in the chat template if asked), or BadRequest (422)
    when it is longer than `limits.max_prompt_tokens`."""
    if request.chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": request.prompt}],
                                            add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
    else:
        ids = tokenizer(request.prompt, return_tensors="pt")["input_ids"]
    if ids.shape[1] > limits.max_prompt_tokens:
        raise BadRequest(422, f"The prompt is {ids.shape[1]} tokens; the limit is "
                              f"{limits.max_prompt_tokens}. Shorten the prompt (or split the "
                              "work into several requests).")
    return ids


class TokenStreamer:
    """A `generate(streamer=...)` target that queues one text piece per generated token.

    Each piece is the new text the token adds (the decoded prefix minus what was already
    sent), so multi-byte characters split across tokens arrive whole: the token that
    completes a character carries it, the one before carries "". Iterating yields the pieces;
    an exception raised by generate in its thread is re-raised here."""

    def __init__(self, tokenizer, timeout: float = 120.0):
        self.tokenizer, self.timeout = tokenizer, timeout
        self.queue: Queue = Queue()
        self.ids: list[int] = []
        self.sent = ""
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate first pushes the prompt
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a character still incomplete: wait for its next byte
            self.queue.put("")
            return
        self.queue.put(text[len(self.sent):])
        self.sent = text

    def end(self) -> None:
        self.queue.put(None)

    def fail(self, err: BaseException) -> None:
        self.queue.put(err)

    def __iter__(self) -> Iterator[str]:
        while True:
            try:
                item = self.queue.get(timeout=self.timeout)
            except Empty:
                raise TimeoutError(f"no token for {self.timeout} s") from None
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


def _generate_kwargs(tokenizer, request: GenerationRequest, stop: threading.Event) -> dict:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopWhenAsked(StoppingCriteria):  # the client went away: stop spending compute
        def __call__(self, input_ids, scores, **kwargs):
            return stop.is_set()

    kwargs = dict(max_new_tokens=request.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                  stopping_criteria=StoppingCriteriaList([StopWhenAsked()]))
    if request.temperature > 0:
        kwargs.update(do_sample=True, temperature=request.temperature, top_p=request.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def stream_events(model, tokenizer, ids, request: GenerationRequest, stats: dict
                  ) -> Iterator[str]:
    """Server-sent events for one generation: `token` per token, then `done` (or `error`)."""
    import torch

    streamer, stop = TokenStreamer(tokenizer), threading.Event()
    kwargs = _generate_kwargs(tokenizer, request, stop)
    start = time.perf_counter()

    def run() -> None:
        try:
            with torch.inference_mode():
                x = ids.to(model.device)
                model.generate(input_ids=x, attention_mask=torch.ones_like(x),
                               streamer=streamer, **kwargs)
        except Exception as err:  # reported to the client as an error event, type only
            streamer.fail(err)

    threading.Thread(target=run, daemon=True, name="bigmodel-lab-generate").start()
    n, first = 0, None
    try:
        for piece in streamer:
            n += 1
            first = first or time.perf_counter()
            yield _sse("token", {"text": piece})
        seconds = time.perf_counter() - start
        stats["generated_tokens"] += n
        log.info("generate ok prompt_tokens=%d new_tokens=%d ms=%.1f", ids.shape[1], n,
                 seconds * 1e3)
        yield _sse("done", {"tokens": n, "prompt_tokens": int(ids.shape[1]),
                            "seconds": round(seconds, 4),
                            "ttft_s": round((first or time.perf_counter()) - start, 4)})
    except Exception as err:
        log.error("generate failed: %s", type(err).__name__)
        yield _sse("error", {"error": f"Generation failed ({type(err).__name__}) after {n} "
                                      "tokens; retry, or report it if it persists."})
    finally:
        stop.set()  # also when the client disconnected mid-stream


# ----------------------------------------------------------------------------- the guard
class RequestGuard:
    """ASGI middleware in front of the app: the body-size limit, the content type, and a
    last-resort 500 that keeps the connection usable.

    Bodies are read here, chunk by chunk, and refused with 413 as soon as they pass
    `max_body_bytes` (at once when Content-Length says so), so an oversized body never sits
    in memory; the app then reads the buffered copy. An exception the app did not handle is
    answered with a JSON 500 and not re-raised, so uvicorn keeps the keep-alive connection;
    only its type name is logged (messages and tracebacks may quote request text)."""

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.state = getattr(app, "state", None)  # the FastAPI app's stats, seen from outside

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                receive = await self._checked_body(scope, receive, send)
                if receive is None:
                    return
            await self.app(scope, receive, tracked_send)
        except Exception as err:
            log.error("unhandled %s on %s %s", type(err).__name__, scope["method"],
                      scope.get("path", ""))
            if not started:
                await _reply(send, 500, "The service failed on this request (an internal "
                                        "error, logged without its content). Retry; if it "
                                        "persists, report it with the time of the request.")

    async def _checked_body(self, scope, receive, send):
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            shown = ctype.decode("latin-1")[:60] or "none"
            await _reply(send, 415, f"Content-Type is {shown}; this service accepts only JSON. "
                                    f"Send the body as JSON {JSON_HEADER}.")
            return None
        limit = f"the limit is {self.max_body_bytes:,} bytes. Send fewer or shorter texts " \
                "per request (split the work into several requests)."
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _reply(send, 413, f"The body is {int(length):,} bytes; {limit}")
            return None
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await _reply(send, 413, f"The body is over {self.max_body_bytes:,} bytes; "
                                        f"{limit}")
                return None
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: wait for a disconnect, as ASGI does

        return replay


async def _reply(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- the app
def create_app(classifier=None, model_name: str = "model", limits: Limits | None = None,
               labels: Sequence[str] = ("negative", "positive"), *, llm=None,
               llm_name: str = "llm", docs: bool = False):
    """A FastAPI app serving `classifier.predict_proba(texts)` at /predict and/or a causal LM
    (`llm=(model, tokenizer)`) at /generate. `docs=True` turns on /docs and /openapi.json."""
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    if classifier is None and llm is None:
        raise ValueError("Give a classifier (for /predict), llm=(model, tokenizer) (for "
                         "/generate), or both.")
    limits = limits or Limits()
    app = FastAPI(title="bigmodel-lab model service", description=PRIVACY_NOTE,
                  docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.stats = {"requests": 0, "texts": 0, "rejected": 0, "generated_tokens": 0}
    endpoints = ["GET /health"] + (["POST /predict"] if classifier is not None else []) + \
                (["POST /generate"] if llm is not None else [])

    @app.exception_handler(HTTPException)
    async def no_such_endpoint(request: Request, err: HTTPException):
        what = {404: "There is no such endpoint", 405: "This endpoint does not take that method"}
        return JSONResponse({"error": f"{what.get(err.status_code, err.detail)}. This service "
                                      f"has: {', '.join(endpoints)}."},
                            status_code=err.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception):  # RequestGuard logs it
        return JSONResponse({"error": "The service failed on this request (an internal error, "
                                      "logged without its content). Retry; if it persists, "
                                      "report it with the time of the request."},
                            status_code=500)

    def refuse(err: BadRequest, body: bytes, route: str):
        app.state.stats["rejected"] += 1
        log.info("%s rejected status=%d bytes=%d", route, err.status, len(body))
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": model_name if classifier is not None else None,
                "llm": llm_name if llm is not None else None, "labels": list(labels),
                "endpoints": endpoints, **asdict(limits), "logs_request_text": False,
                "privacy": PRIVACY_NOTE}

    if classifier is not None:
        @app.post("/predict")
        async def predict(request: Request):
            start = time.perf_counter()
            body = await request.body()
            try:
                texts = validate(body, limits)
            except BadRequest as err:
                return refuse(err, body, "predict")
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

    if llm is not None:
        model, tokenizer = llm

        @app.post("/generate")
        async def generate(request: Request):
            body = await request.body()
            try:
                req = validate_generation(body, limits)
                ids = await run_in_threadpool(prompt_ids, tokenizer, req, limits)
            except BadRequest as err:
                return refuse(err, body, "generate")
            app.state.stats["requests"] += 1
            events = stream_events(model, tokenizer, ids, req, app.state.stats)
            if req.stream:
                return StreamingResponse(events, media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache"})
            pieces = await run_in_threadpool(list, events)
            last = json.loads(pieces[-1].split("data: ", 1)[1])
            if pieces[-1].startswith("event: error"):
                return JSONResponse(last, status_code=500)
            text = "".join(json.loads(p.split("data: ", 1)[1])["text"] for p in pieces[:-1])
            return {"model": llm_name, "text": text, **last}

    return RequestGuard(app, limits.max_body_bytes)


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


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: serve a saved classifier and/or the causal LM on localhost."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help=".onnx file or saved classifier folder (/predict)")
    parser.add_argument("--llm", nargs="?", const="", default=None,
                        help="serve a causal LM at /generate (default: the packaged SmolLM2)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    parser.add_argument("--max-texts", type=int, default=Limits.max_texts)
    parser.add_argument("--max-chars", type=int, default=Limits.max_chars)
    parser.add_argument("--max-body-bytes", type=int, default=Limits.max_body_bytes)
    parser.add_argument("--max-new-tokens", type=int, default=Limits.max_new_tokens)
    parser.add_argument("--docs", action="store_true", help="turn on /docs and /openapi.json")
    args = parser.parse_args(argv)
    if args.model is None and args.llm is None:
        parser.error("give --model PATH (a classifier), --llm (a causal LM), or both")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    classifier, name = load_classifier(args.model, threads=args.threads) if args.model \
        else (None, "none")
    llm, llm_name = None, "none"
    if args.llm is not None:
        from .models import load_causal_lm

        model, tokenizer, source = load_causal_lm(args.llm or None)
        llm, llm_name = (model, tokenizer), source.name
    limits = Limits(args.max_texts, args.max_chars, args.max_body_bytes, args.max_new_tokens)
    app = create_app(classifier, name, limits, llm=llm, llm_name=llm_name, docs=args.docs)
    log.info("serving on http://127.0.0.1:%d (%s)", args.port, PRIVACY_NOTE)
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False)


if __name__ == "__main__":
    main()
