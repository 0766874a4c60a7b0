"""The prediction service, started in-process: every input rule, privacy, start/stop, load test."""

import logging

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from bigmodel_lab import compress, serve
from bigmodel_lab.models import packaged_model_path

SECRET = "call me at alice@example.com"


class TinyClassifier:
    """A tiny randomly initialised BERT with the real MiniLM tokenizer."""

    def __init__(self):
        torch.manual_seed(0)
        self.tokenizer = AutoTokenizer.from_pretrained(packaged_model_path())
        config = BertConfig(vocab_size=self.tokenizer.vocab_size, hidden_size=32,
                            num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            num_labels=2)
        self.model = BertForSequenceClassification(config).eval()

    def predict_proba(self, texts):
        return compress.torch_predict_fn(self.model, self.tokenizer, max_length=32)(texts)


@pytest.fixture(scope="module")
def classifier():
    return TinyClassifier()


@pytest.fixture()
def client(classifier):
    app = serve.create_app(classifier, "tiny", serve.Limits(max_texts=4, max_chars=50))
    return TestClient(app)


def test_predict_returns_a_label_and_probabilities_per_text(client):
    r = client.post("/predict", json={"texts": ["a great film", "dull", ""]})
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert len(preds) == 3
    for p in preds:
        assert p["label"] in ("negative", "positive")
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)


def test_health_reports_limits_and_that_text_is_not_logged(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["max_texts"] == 4 and body["max_chars"] == 50
    assert body["logs_request_text"] is False and "never logged" in body["privacy"]


@pytest.mark.parametrize("payload, status, fix", [
    ({"texts": []}, 422, "at least one text"),
    ({"texts": ["a"] * 5}, 413, "at most 4"),
    ({"texts": ["ok", "x" * 51]}, 413, "texts[1] has 51 characters; the limit is 50"),
    ({"texts": "just one"}, 422, "wrap it in a list"),
    ({"texts": ["fine", 3]}, 422, "texts[1] is a number, not a string"),
    ({"texts": ["fine", None]}, 422, "texts[1] is a null"),
    ({"texts": {"a": 1}}, 422, "must be a list of strings"),
    ({"text": ["typo in the field name"]}, 422, "no 'texts' field (fields sent: text)"),
    (["a", "b"], 422, "send a JSON object"),
])
def test_each_bad_request_gets_a_4xx_that_says_what_to_fix(client, payload, status, fix):
    r = client.post("/predict", json=payload)
    assert r.status_code == status
    assert fix in r.json()["error"]


def test_body_that_is_not_json_gets_400_naming_the_content_type(client):
    r = client.post("/predict", content=b"texts=hello",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "Content-Type: application/json" in r.json()["error"]


def test_request_text_is_never_logged_nor_echoed(client, caplog):
    with caplog.at_level(logging.DEBUG):
        ok = client.post("/predict", json={"texts": [SECRET]})
        too_long = client.post("/predict", json={"texts": [SECRET * 3]})
        wrong = client.post("/predict", json={"texts": SECRET})
    assert ok.status_code == 200 and too_long.status_code == 413 and wrong.status_code == 422
    assert "n_texts=1" in caplog.text  # it does log, but only counts and timings
    assert "alice" not in caplog.text
    assert "alice" not in too_long.text and "alice" not in wrong.text


def test_started_server_answers_on_localhost_and_stops(classifier):
    app = serve.create_app(classifier, "tiny")
    with serve.start_server(app) as running:
        assert running.url.startswith("http://127.0.0.1:")
        report = serve.load_test(running.url, ["good", "bad film"], n_requests=12,
                                 concurrency=3, time_limit_s=30)
    assert not running.thread.is_alive()
    assert report.ok == 12 and report.failed == 0 and report.stopped_by == "count"
    assert report.p50_ms <= report.p95_ms <= report.p99_ms
    assert report.requests_per_s > 0


def test_server_refuses_non_loopback_hosts(classifier):
    with pytest.raises(ValueError, match="not loopback"):
        serve.start_server(serve.create_app(classifier), host="0.0.0.0")


@pytest.mark.parametrize("kwargs, fix", [
    (dict(url="http://example.com"), "only to loopback"),
    (dict(n_requests=0), "n_requests must be in"),
    (dict(n_requests=10**6), "n_requests must be in"),
    (dict(time_limit_s=3600), "time_limit_s must be in"),
])
def test_load_test_is_bounded_and_loopback_only(kwargs, fix):
    args = {"url": "http://127.0.0.1:9", "texts": ["x"], **kwargs}
    with pytest.raises(ValueError, match=fix):
        serve.load_test(**args)


def test_load_classifier_serves_an_int8_onnx_export(classifier, tmp_path):
    fp32 = compress.export_onnx(classifier.model, classifier.tokenizer, tmp_path / "m.onnx", 32)
    int8 = compress.quantize_onnx(fp32, tmp_path / "m-int8.onnx")
    onnx_classifier, name = serve.load_classifier(int8)
    client = TestClient(serve.create_app(onnx_classifier, name))
    r = client.post("/predict", json={"texts": ["a great film"]})
    assert r.status_code == 200 and r.json()["model"] == "m-int8.onnx"
    expected = classifier.predict_proba(["a great film"])[0]
    got = list(r.json()["predictions"][0]["probabilities"].values())
    assert np.allclose(got, expected, atol=0.05)  # int8 stays close to fp32


def test_load_classifier_rejects_a_path_that_is_not_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        serve.load_classifier(tmp_path)


# ----------------------------------------------------------------------------- issue 15 §2
ENDPOINTS = ("/predict", "/generate")
DEEP = b"[" * 4_000 + b"]" * 4_000  # 8 kB, under the body limit; deeper than recursion allows


class TinyLLM:
    """A tiny random Llama with the real SmolLM2 tokenizer: the shapes of the real thing."""

    def __init__(self):
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        from bigmodel_lab.models import converted_llm_dir

        torch.manual_seed(0)
        self.tokenizer = AutoTokenizer.from_pretrained(converted_llm_dir())
        self.tokenizer.pad_token = self.tokenizer.pad_token or self.tokenizer.eos_token
        config = LlamaConfig(vocab_size=len(self.tokenizer), hidden_size=16, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, intermediate_size=32,
                             tie_word_embeddings=True, eos_token_id=None, bos_token_id=None)
        self.model = LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tiny_llm():
    return TinyLLM()


@pytest.fixture()
def both(classifier, tiny_llm):
    limits = serve.Limits(max_texts=4, max_chars=50, max_body_bytes=10_000, max_new_tokens=8,
                          max_prompt_tokens=40)
    return TestClient(serve.create_app(classifier, "tiny", limits,
                                       llm=(tiny_llm.model, tiny_llm.tokenizer)))


def post_raw(client, path, body: bytes, content_type="application/json"):
    return client.post(path, content=body, headers={"content-type": content_type})


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("body, fix", [
    (b"{", "not valid JSON (line 1, column 2)"),
    (b'{"texts": ["a"]', "not valid JSON"),
    (DEEP, "nested too deeply"),
    (b'{"texts": ["\\xff\\xfe"]}'.replace(b"\\xff\\xfe", b"\xff\xfe"), "not UTF-8"),
    (b'{"texts": ["a"], "n": ' + b"1" * 5000 + b"}", "under 4,300 digits"),
    (b'{"texts": [NaN], "prompt": "x", "temperature": NaN}', "numbers must be finite"),
    (b'{"prompt": "x", "temperature": 1e999}', "numbers must be finite"),
])
def test_json_the_parser_refuses_gets_400_never_500(both, path, body, fix):
    r = post_raw(both, path, body)
    assert r.status_code == 400, r.text
    assert fix in r.json()["error"] and "Content-Type: application/json" in r.json()["error"]


@pytest.mark.parametrize("path, body", [
    ("/predict", b'{"texts": ["fine", "a \\ud800 lone surrogate"]}'),
    ("/generate", b'{"prompt": "half a pair \\udfff"}'),
])
def test_text_that_cannot_be_encoded_gets_422_naming_the_fix(both, path, body):
    r = post_raw(both, path, body)
    assert r.status_code == 422
    assert "lone UTF-16 surrogate" in r.json()["error"] and "encode" in r.json()["error"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", ""])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_only_application_json_is_accepted(both, path, content_type):
    r = post_raw(both, path, b'{"texts": ["a"], "prompt": "a"}', content_type)
    assert r.status_code == 415
    assert "Content-Type: application/json" in r.json()["error"]


def test_json_with_a_charset_parameter_is_accepted(both):
    r = post_raw(both, "/predict", b'{"texts": ["a"]}', "Application/JSON; charset=utf-8")
    assert r.status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
def test_body_over_the_limit_gets_413_naming_the_limit(both, path):
    r = post_raw(both, path, b'{"texts": ["' + b"x" * 20_000 + b'"]}')
    assert r.status_code == 413
    assert "the limit is 10,000 bytes" in r.json()["error"] and "split" in r.json()["error"]


def test_limits_and_endpoints_are_documented_in_health(both):
    body = both.get("/health").json()
    assert body["max_body_bytes"] == 10_000 and body["max_new_tokens"] == 8
    assert set(body["endpoints"]) == {"GET /health", "POST /predict", "POST /generate"}


def test_the_interactive_docs_are_off_unless_asked_for(classifier):
    off = TestClient(serve.create_app(classifier))
    for path in ("/docs", "/redoc", "/openapi.json"):
        r = off.get(path)
        assert r.status_code == 404 and "POST /predict" in r.json()["error"]
    on = TestClient(serve.create_app(classifier, docs=True))
    assert on.get("/docs").status_code == 200 and on.get("/openapi.json").status_code == 200


def test_wrong_path_or_method_gets_4xx_listing_the_endpoints(both):
    assert both.get("/predict").status_code == 405
    assert "POST /predict" in both.get("/predict").json()["error"]
    assert both.post("/nope", json={}).status_code == 404


class Exploding:
    """A classifier with a bug: it raises, quoting its input in the message."""

    def predict_proba(self, texts):
        raise RuntimeError(f"cannot handle {texts}")


@pytest.fixture(scope="module")
def exploding_server():
    with serve.start_server(serve.create_app(Exploding(), "broken")) as running:
        yield running


def _request(conn, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response, response.read()


def test_a_500_keeps_the_keep_alive_connection_and_logs_no_text(exploding_server, caplog,
                                                                  capfd):
    import http.client
    import json
    from urllib.parse import urlparse

    url = urlparse(exploding_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    with caplog.at_level(logging.DEBUG):
        first, body = _request(conn, "POST", "/predict", json.dumps({"texts": [SECRET]}))
        sock = conn.sock
        second, _ = _request(conn, "GET", "/health")
        third, _ = _request(conn, "POST", "/predict", b"{")
    conn.close()
    assert first.status == 500 and "Retry" in json.loads(body)["error"]
    assert not first.will_close and conn.sock is None and sock is not None
    assert second.status == 200 and third.status == 400  # same socket, still served
    assert "RuntimeError" in caplog.text  # the type is logged ...
    out = capfd.readouterr()
    for text in (caplog.text, out.out, out.err, body.decode()):
        assert "alice" not in text  # ... never the text, nor a traceback quoting it


def test_a_huge_declared_body_gets_413_before_it_is_sent(exploding_server):
    import http.client
    import socket
    from urllib.parse import urlparse

    url = urlparse(exploding_server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000000\r\n\r\n" + b'{"texts": ["')  # 12 of 100 MB
        reply = http.client.HTTPResponse(s)
        reply.begin()
        assert reply.status == 413
        assert "the limit is 2,000,000 bytes" in reply.read().decode()


def test_a_chunked_body_is_cut_at_the_limit(exploding_server):
    import httpx

    def chunks():  # no Content-Length: the server must count as it reads
        yield b'{"texts": ["'
        for _ in range(300):
            yield b"x" * 10_000

    r = httpx.post(f"{exploding_server.url}/predict", content=chunks(),
                   headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 413 and "over 2,000,000 bytes" in r.json()["error"]


# ----------------------------------------------------------------------------- /generate
def sse_events(text: str) -> list[tuple[str, dict]]:
    import json

    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_generate_streams_one_event_per_token_then_done(both):
    r = both.post("/generate", json={"prompt": "Hello", "max_new_tokens": 6, "chat": False})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert [e for e, _ in events] == ["token"] * 6 + ["done"]
    assert events[-1][1]["tokens"] == 6 and events[-1][1]["ttft_s"] <= events[-1][1]["seconds"]


def test_generate_without_streaming_returns_the_same_text(both):
    body = {"prompt": "Hello", "max_new_tokens": 5, "chat": False}
    streamed = "".join(d["text"] for e, d in sse_events(both.post("/generate", json=body).text)
                       if e == "token")
    whole = both.post("/generate", json={**body, "stream": False}).json()
    assert whole["text"] == streamed and whole["tokens"] == 5


@pytest.mark.parametrize("payload, fix", [
    ({"prompt": "hi", "max_new_tokens": 9}, "'max_new_tokens' is 9; the limit is 8"),
    ({"prompt": "hi", "max_new_tokens": 0}, "Ask for 1 to 8 tokens"),
    ({"prompt": "hi", "max_new_tokens": "8"}, "send a whole number from 1 to 8"),
    ({"prompt": "hi", "max_new_tokens": True}, "send a whole number"),
    ({"prompt": "word " * 60}, "the limit is 40. Shorten the prompt"),
    ({"prompt": ""}, "send some text"),
    ({"prompt": ["a list"]}, "'prompt' must be a string; got a list"),
    ({"max_new_tokens": 4}, "got no 'prompt' field"),
    ({"prompt": "hi", "max_tokens": 4}, "Unknown field(s): max_tokens. The fields are prompt"),
    ({"prompt": "hi", "temperature": -1}, "send a number in 0 (greedy) to 5"),
    ({"prompt": "hi", "top_p": 0}, "send a number in (0, 1]"),
    ({"prompt": "hi", "stream": "yes"}, "send true or false"),
    ("just a string", "send a JSON object like"),
])
def test_each_bad_generation_request_gets_422_naming_the_fix(both, payload, fix):
    r = both.post("/generate", json=payload)
    assert r.status_code == 422
    assert fix in r.json()["error"]


def test_generation_errors_never_echo_the_prompt(both, caplog):
    with caplog.at_level(logging.DEBUG):
        long = both.post("/generate", json={"prompt": SECRET * 20})
        ok = both.post("/generate", json={"prompt": SECRET, "max_new_tokens": 2})
    assert long.status_code == 422 and ok.status_code == 200
    assert "alice" not in long.text and "alice" not in caplog.text
    assert "new_tokens=2" in caplog.text


def test_token_streamer_sends_multibyte_characters_whole(tiny_llm):
    tok = tiny_llm.tokenizer
    text = "服务中文文本的成本更高 🙂"
    ids = tok(text)["input_ids"]
    streamer = serve.TokenStreamer(tok)
    streamer.put(torch.tensor([ids[:1]]))  # the prompt, skipped
    for i in ids:
        streamer.put(torch.tensor([i]))
    streamer.end()
    pieces = list(streamer)
    assert len(pieces) == len(ids) and "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_generation_load_test_reports_ttft_and_tokens_per_s(tiny_llm):
    app = serve.create_app(llm=(tiny_llm.model, tiny_llm.tokenizer))
    with serve.start_server(app) as running:
        one = serve.load_test_generate(running.url, ["Hi", "Tell me"], n_requests=3,
                                       concurrency=1, max_new_tokens=5, chat=False)
        two = serve.load_test_generate(running.url, ["Hi"], n_requests=4, concurrency=2,
                                       max_new_tokens=5, time_limit_s=30)
    assert one.ok == 3 and two.ok == 4 and one.failed == two.failed == 0
    assert 0 < one.ttft_p50_ms <= one.ttft_p95_ms and one.tokens_per_s_total > 0
    assert two.stopped_by == "count" and two.tokens_per_s_per_request > 0
    with pytest.raises(ValueError, match="only to loopback"):
        serve.load_test_generate("http://example.com", ["x"])


def test_create_app_needs_a_classifier_or_an_llm():
    with pytest.raises(ValueError, match="llm=\\(model, tokenizer\\)"):
        serve.create_app()


@pytest.fixture(scope="module")
def real_llm():
    from bigmodel_lab.models import load_causal_lm

    model, tokenizer, _ = load_causal_lm()
    return model, tokenizer


def test_streamed_greedy_tokens_match_generate_on_the_real_weights(real_llm):
    model, tokenizer = real_llm
    client = TestClient(serve.create_app(llm=(model, tokenizer)))
    r = client.post("/generate", json={"prompt": "What is the capital of France?",
                                       "max_new_tokens": 8})
    streamed = "".join(d["text"] for e, d in sse_events(r.text) if e == "token")
    ids = tokenizer.apply_chat_template([{"role": "user",
                                          "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert streamed == tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in streamed
