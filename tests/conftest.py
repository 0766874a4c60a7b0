"""Shared test setup: never touch the network, never write to the real ledger."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("BIGMODEL_LAB_LEDGER", str(tmp_path / "ledger.jsonl"))
