import hashlib
import socket

import datasets
import pytest

from bigmodel_lab import data, hub

# sha256 of "label<TAB>text" lines, per split: the same on every machine and every run.
EXPECTED = {
    "rotten_tomatoes": {"train": (6824, "5f13562c4a77fa0a"), "validation": (854, "9322d20070339507"),
                        "test": (852, "1ec77b0f6cfdfa6b")},
    "imdb": {"train": (19922, "991ea9b341a7e69a"), "validation": (2490, "4974dbf2ec0c7a86"),
             "test": (2490, "297032b5072cbec6")},
}


def split_hash(ds: datasets.Dataset) -> str:
    lines = "\n".join(f"{label}\t{text}" for text, label in zip(ds["text"], ds["label"]))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


@pytest.fixture(scope="module", params=["rotten_tomatoes", "imdb"])
def offline(request):
    return request.param, data.load_sentiment(request.param, offline=True)


def test_offline_splits_are_identical_across_runs_and_machines(offline):
    name, dsd = offline
    for split, (size, digest) in EXPECTED[name].items():
        assert (len(dsd[split]), split_hash(dsd[split])) == (size, digest)


def test_splits_never_overlap(offline):
    _, dsd = offline
    texts = {split: set(part["text"]) for split, part in dsd.items()}
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]


def test_splits_are_balanced_within_two_points(offline):
    _, dsd = offline
    for part in dsd.values():
        assert abs(sum(part["label"]) / len(part) - 0.5) <= 0.02


def test_columns_and_labels(offline):
    _, dsd = offline
    assert set(dsd) == {"train", "validation", "test"}
    assert dsd["train"].column_names == ["text", "label"]
    assert set(dsd["test"]["label"]) == {0, 1}
    assert dsd["train"].features["label"].names == ["negative", "positive"]


def test_sst2_offline_is_the_rotten_tomatoes_corpus_and_says_so():
    dsd = data.load_sentiment("sst2", offline=True)
    assert split_hash(dsd["test"]) == EXPECTED["rotten_tomatoes"]["test"][1]
    assert dsd.source.origin == "offline" and not dsd.source.is_benchmark
    assert "stand-in for SST-2" in dsd.source.description


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match="sst2, imdb, rotten_tomatoes"):
        data.load_sentiment("yelp")


def test_unreachable_hub_falls_back_with_one_line(monkeypatch, capsys):
    hub.reset()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(datasets, "load_dataset", _no_hub_calls)
    dsd = data.load_sentiment("imdb", n_train=20, n_eval=10)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"Hub not reachable: using {dsd.source.description} instead of imdb."]
    assert dsd.source.origin == "offline"
    hub.reset()


def test_hub_failure_after_a_good_connection_still_falls_back(monkeypatch, capsys):
    monkeypatch.setattr(data, "hub_available", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", _raise_connection_error)
    dsd = data.load_sentiment("rotten_tomatoes", n_train=10, n_eval=10)
    assert dsd.source.origin == "offline"
    assert "Hub load of rotten_tomatoes failed" in capsys.readouterr().out


def test_hub_sst2_maps_glue_splits(monkeypatch):
    """With the hub reachable, GLUE's labelled validation split becomes our test split."""
    glue = datasets.DatasetDict(
        train=datasets.Dataset.from_dict(
            {"sentence": [f"train sentence {i}" for i in range(40)], "label": [0, 1] * 20,
             "idx": list(range(40))}),
        validation=datasets.Dataset.from_dict(
            {"sentence": ["good", "bad"], "label": [1, 0], "idx": [0, 1]}),
        test=datasets.Dataset.from_dict({"sentence": ["x"], "label": [-1], "idx": [0]}),
    )
    calls = []
    monkeypatch.setattr(data, "hub_available", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or glue)
    dsd = data.load_sentiment("sst2")
    assert calls == [("nyu-mll/glue", "sst2")]
    assert dsd["test"]["text"] == ["good", "bad"] and dsd["test"]["label"] == [1, 0]
    assert len(dsd["train"]) + len(dsd["validation"]) == 40
    assert dsd.source.origin == "hub" and dsd.source.is_benchmark


def test_subsets_are_seeded_and_stratified():
    a = data.load_sentiment("rotten_tomatoes", n_train=200, n_eval=50, seed=3, offline=True)
    b = data.load_sentiment("rotten_tomatoes", n_train=200, n_eval=50, seed=3, offline=True)
    c = data.load_sentiment("rotten_tomatoes", n_train=200, n_eval=50, seed=4, offline=True)
    assert a["train"]["text"] == b["train"]["text"] != c["train"]["text"]
    assert (len(a["train"]), len(a["validation"]), len(a["test"])) == (200, 50, 50)
    assert sum(a["train"]["label"]) == 100


def test_clean_text_removes_html_breaks():
    assert data.clean_text("Great.<br /><br />Really  great.") == "Great. Really great."


def test_missing_column_error_names_the_fix():
    ds = datasets.Dataset.from_dict({"sentence": ["hi"], "label": [1]})
    with pytest.raises(ValueError, match="rename_column"):
        data.check_columns(ds)


def _refuse(*args, **kwargs):
    raise OSError("network unreachable (simulated)")


def _no_hub_calls(*args, **kwargs):
    raise AssertionError("load_dataset must not be called when the hub is unreachable")


def _raise_connection_error(*args, **kwargs):
    raise ConnectionError("simulated hub outage")


@pytest.mark.parametrize("kwargs, error, fix", [
    ({"n_train": "100"}, TypeError, "Pass e.g. n_train=100"),
    ({"n_eval": 12.5}, TypeError, "n_eval must be a whole number"),
    ({"n_train": 0}, ValueError, "n_train must be at least 1"),
    ({"name": ["sst2", "imdb"]}, TypeError, "Load one at a time"),
    ({"name": 2}, TypeError, "name must be a string such as name='sst2'"),
])
def test_wrong_argument_types_say_what_to_pass(kwargs, error, fix):
    with pytest.raises(error, match=fix):
        data.load_sentiment(**{"name": "sst2", **kwargs})


def test_n_train_so_small_a_split_is_empty_says_how_many_are_needed():
    with pytest.raises(ValueError, match=r"n_train=1 is too small.*Use n_train=\d+ or more"):
        data.load_sentiment("sst2", n_train=1, offline=True)
    with pytest.raises(ValueError, match="n_eval=1 is too small"):
        data.load_sentiment("sst2", n_eval=1, offline=True)
    assert len(data.load_sentiment("sst2", n_train=2, n_eval=2, offline=True)["train"]) == 2
