"""Bounded load tests on loopback: request latency for /predict, time to first token and
tokens/s for the streaming /generate endpoint of `bigmodel_lab.serve`.

Bounded on purpose (a request count, a time limit, loopback only): a load test must never
turn into an accidental denial of service on someone else's machine.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

import numpy as np

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_REQUESTS = 20_000
MAX_SECONDS = 300.0


def check_bounds(url: str, n_requests: int, concurrency: int, time_limit_s: float) -> None:
    """Refuse a load test that is not loopback-only and bounded in count and time."""
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"load tests send traffic only to loopback (127.0.0.1); got {host!r}.")
    if not 1 <= n_requests <= MAX_REQUESTS:
        raise ValueError(f"n_requests must be in [1, {MAX_REQUESTS}], got {n_requests}.")
    if not 0 < time_limit_s <= MAX_SECONDS:
        raise ValueError(f"time_limit_s must be in (0, {MAX_SECONDS}], got {time_limit_s}.")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}.")


def run_bounded(n_requests: int, concurrency: int, time_limit_s: float,
                one_request: Callable[[int], object], desc: str = "load test",
                progress: bool = False) -> tuple[list, int, float]:
    """Call `one_request(i)` for i < n_requests from `concurrency` threads, stopping early at
    the deadline. Returns (results in completion order, requests sent, seconds)."""
    results: list = []
    lock = threading.Lock()
    next_index = [0]
    start = time.perf_counter()
    deadline = start + time_limit_s
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_requests, desc=desc, leave=False)

    def worker() -> None:
        while True:
            with lock:
                i = next_index[0]
                if i >= n_requests or time.perf_counter() > deadline:
                    return
                next_index[0] += 1
            result = one_request(i)
            with lock:
                results.append(result)
                if bar is not None:
                    bar.update(1)

    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(worker)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    return results, next_index[0], seconds


def _percentiles(values: Sequence[float], qs=(50, 95, 99)) -> list[float]:
    if not values:
        return [float("nan")] * len(qs)
    return [round(float(v), 2) for v in np.percentile(values, qs)]


# ----------------------------------------------------------------------------- /predict
@dataclass(frozen=True)
class LoadReport:
    """What a bounded burst of /predict requests measured (latencies in ms, per request)."""

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


def load_test(url: str, texts: Sequence[str], n_requests: int = 200, concurrency: int = 8,
              texts_per_request: int = 1, time_limit_s: float = 30.0,
              progress: bool = False) -> LoadReport:
    """Send at most `n_requests` POST /predict requests from `concurrency` threads, for at most
    `time_limit_s` seconds, to a loopback `url`; report latency percentiles and requests/s."""
    import httpx

    check_bounds(url, n_requests, concurrency, time_limit_s)
    if texts_per_request < 1 or not texts:
        raise ValueError("Need texts_per_request >= 1 and at least one text.")
    texts = list(texts)
    with httpx.Client(timeout=max(time_limit_s, 10.0),
                      limits=httpx.Limits(max_connections=concurrency)) as client:
        def one(i: int) -> float | None:
            body = {"texts": [texts[(i * texts_per_request + j) % len(texts)]
                              for j in range(texts_per_request)]}
            t0 = time.perf_counter()
            try:
                ok = client.post(f"{url}/predict", json=body).status_code == 200
            except httpx.HTTPError:
                ok = False
            return (time.perf_counter() - t0) * 1e3 if ok else None

        results, sent, seconds = run_bounded(n_requests, concurrency, time_limit_s, one,
                                             f"load test x{concurrency}", progress)
    latencies = [ms for ms in results if ms is not None]
    q = _percentiles(latencies)
    return LoadReport(
        requests=sent, ok=len(latencies), failed=len(results) - len(latencies),
        concurrency=concurrency, texts_per_request=texts_per_request, seconds=round(seconds, 3),
        requests_per_s=round(len(latencies) / seconds, 2) if seconds else float("nan"),
        p50_ms=q[0], p95_ms=q[1], p99_ms=q[2],
        stopped_by="count" if sent >= n_requests else "time",
    )


# ----------------------------------------------------------------------------- /generate
@dataclass(frozen=True)
class StreamResult:
    """One streamed generation as the client saw it."""

    ok: bool
    ttft_ms: float  # request sent -> first token event
    seconds: float  # request sent -> done event
    tokens: int
    text: str = ""

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens after the first, per second after the first: the steady decoding speed."""
        rest = self.seconds - self.ttft_ms / 1e3
        return (self.tokens - 1) / rest if self.tokens > 1 and rest > 0 else float("nan")


def stream_generate(client, url: str, body: dict) -> StreamResult:
    """POST `body` to `url`/generate with stream=true and read the server-sent events."""
    t0 = time.perf_counter()
    ttft, tokens, parts = float("nan"), 0, []
    event = "message"
    with client.stream("POST", f"{url}/generate", json={**body, "stream": True}) as response:
        if response.status_code != 200:
            response.read()
            return StreamResult(False, float("nan"), time.perf_counter() - t0, 0)
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1])
                if event == "token":
                    if tokens == 0:
                        ttft = (time.perf_counter() - t0) * 1e3
                    tokens += 1
                    parts.append(data["text"])
                elif event == "error":
                    return StreamResult(False, ttft, time.perf_counter() - t0, tokens)
                elif event == "done":
                    break
                event = "message"
    return StreamResult(tokens > 0, ttft, time.perf_counter() - t0, tokens, "".join(parts))


@dataclass(frozen=True)
class StreamReport:
    """A bounded burst of streamed generations: time to first token (ms) and tokens/s."""

    requests: int
    ok: int
    failed: int
    concurrency: int
    max_new_tokens: int
    seconds: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    tokens_per_s_per_request: float  # median steady decoding speed one client sees
    tokens_per_s_total: float  # all tokens streamed / wall time: what the server delivers
    stopped_by: str

    def as_dict(self) -> dict:
        return asdict(self)


def load_test_generate(url: str, prompts: Sequence[str], n_requests: int = 8,
                       concurrency: int = 1, max_new_tokens: int = 32,
                       time_limit_s: float = 60.0, progress: bool = False,
                       **generation) -> StreamReport:
    """Stream at most `n_requests` generations from `concurrency` clients (loopback only, at
    most `time_limit_s` seconds); report time to first token and tokens per second."""
    import httpx

    check_bounds(url, n_requests, concurrency, time_limit_s)
    if not prompts:
        raise ValueError("Give at least one prompt.")
    prompts = list(prompts)
    with httpx.Client(timeout=max(time_limit_s, 10.0),
                      limits=httpx.Limits(max_connections=concurrency)) as client:
        def one(i: int) -> StreamResult:
            body = {"prompt": prompts[i % len(prompts)], "max_new_tokens": max_new_tokens,
                    **generation}
            try:
                return stream_generate(client, url, body)
            except httpx.HTTPError:
                return StreamResult(False, float("nan"), 0.0, 0)

        results, sent, seconds = run_bounded(n_requests, concurrency, time_limit_s, one,
                                             f"generate x{concurrency}", progress)
    good = [r for r in results if r.ok]
    ttft = _percentiles([r.ttft_ms for r in good], (50, 95))
    speeds = [r.decode_tokens_per_s for r in good if np.isfinite(r.decode_tokens_per_s)]
    return StreamReport(
        requests=sent, ok=len(good), failed=len(results) - len(good), concurrency=concurrency,
        max_new_tokens=max_new_tokens, seconds=round(seconds, 3),
        ttft_p50_ms=ttft[0], ttft_p95_ms=ttft[1],
        tokens_per_s_per_request=round(float(np.median(speeds)), 2) if speeds else float("nan"),
        tokens_per_s_total=round(sum(r.tokens for r in good) / seconds, 2),
        stopped_by="count" if sent >= n_requests else "time",
    )
