import socket
import time

from bigmodel_lab import hub


def test_offline_flag_skips_the_network(monkeypatch):
    hub.reset()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", _explode)
    assert hub.hub_available() is False


def test_unreachable_hub_is_decided_within_the_timeout(monkeypatch):
    hub.reset()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", _hang)
    start = time.perf_counter()
    assert hub.hub_available(timeout=0.5) is False
    assert time.perf_counter() - start < 2
    hub.reset()


def test_decision_is_made_once_per_process(monkeypatch):
    hub.reset()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert hub.hub_available() is False and hub.hub_available() is False
    assert len(calls) == 1
    hub.reset()


def _explode(*args, **kwargs):
    raise AssertionError("the network must not be touched")


def _hang(*args, **kwargs):
    time.sleep(30)  # a DNS look-up or SYN that never answers
    raise OSError("timed out")
