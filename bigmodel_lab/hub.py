"""Is the Hugging Face hub reachable? Decided once per process, in at most 5 seconds."""

from __future__ import annotations

import os
import socket
import threading

HUB_HOST = "huggingface.co"
TIMEOUT_S = 5.0
_decision: dict[str, bool] = {}


def _try_connect(result: dict, host: str, timeout: float) -> None:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            result["ok"] = True
    except OSError:
        result["ok"] = False


def hub_available(timeout: float = TIMEOUT_S) -> bool:
    """True when the hub answers a TCP connection within `timeout` seconds.

    `HF_HUB_OFFLINE=1` (or `HF_DATASETS_OFFLINE=1`) answers False without touching the
    network. The answer is cached for the rest of the process. DNS look-ups can hang longer
    than a socket timeout, so the attempt runs in a daemon thread and is abandoned after
    `timeout` seconds.
    """
    if "hub" in _decision:
        return _decision["hub"]
    if _env_flag("HF_HUB_OFFLINE") or _env_flag("HF_DATASETS_OFFLINE"):
        _decision["hub"] = False
        return False
    result: dict[str, bool] = {}
    worker = threading.Thread(target=_try_connect, args=(result, HUB_HOST, timeout), daemon=True)
    worker.start()
    worker.join(timeout)
    _decision["hub"] = bool(result.get("ok", False))
    if not _decision["hub"]:
        # Later library calls (transformers, datasets) should not retry the network either.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    return _decision["hub"]


def reset() -> None:
    """Forget the cached decision (tests use this)."""
    _decision.clear()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
