import json
import multiprocessing as mp

import bigmodel_lab as lab
from bigmodel_lab import results


def test_record_appends_one_json_line_with_provenance():
    cfg = lab.setup("00", profile="cpu", quiet=True)
    results.record(cfg, task="sst2", model="m", metrics={"accuracy": 0.8}, data_source="offline")
    results.record(cfg, task="sst2", model="m", metrics={"accuracy": 0.9}, data_source="offline")
    lines = results.ledger_path().read_text().splitlines()
    assert len(lines) == 2
    entry = json.loads(lines[0])
    for key in ("notebook", "model", "data_source", "profile", "device", "metrics", "versions",
                "seed", "train_seconds", "peak_memory_mb"):
        assert key in entry
    assert entry["profile"] == "cpu" and entry["metrics"] == {"accuracy": 0.8}


def test_smoke_runs_are_not_recorded():
    cfg = lab.setup("00", profile="smoke", quiet=True)
    results.record(cfg, task="sst2", model="m", metrics={"accuracy": 0.5})
    assert not results.ledger_path().exists()


def _writer(path: str, worker: int) -> None:
    import os

    os.environ["BIGMODEL_LAB_LEDGER"] = path
    cfg = lab.setup("00", profile="cpu", quiet=True)
    for i in range(50):
        results.record(cfg, task="t", model=f"w{worker}", metrics={"i": i}, extra={"pad": "x" * 500})


def test_two_processes_can_record_at_once():
    path = str(results.ledger_path())
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    rows = [json.loads(line) for line in open(path)]
    assert len(rows) == 100


def test_every_anchor_has_a_citation():
    frame = results.anchors()
    assert len(frame) >= 5 and frame["citation"].str.len().min() > 10
    assert set(frame["task"]) >= {"sst2", "imdb", "rotten_tomatoes"}
