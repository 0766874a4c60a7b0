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
    r = client.post("/predict", content=b"texts=hello", headers={"content-type": "text/plain"})
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
