"""The classroom image (Dockerfile) serves notebook 00: started as `scripts/container.sh run`
starts it (127.0.0.1 only, a token), it answers the contents API with the notebook and runs
the notebook's setup cell in a kernel.

The image is not built here (minutes): build it with `scripts/container.sh build`, then run
`HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_container.py`
(about 15 s). The tests that start the image are skipped when neither podman nor docker is
installed, or no image is built; they start the image as built: rebuild it after changing the
lab. The checks of the build's own files always run.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("IMAGE", "bigmodel-lab:latest")
ENGINE = os.environ.get("ENGINE") or shutil.which("podman") or shutil.which("docker")
NB00 = "notebooks/00_welcome.ipynb"
BUILD = "build it with `scripts/container.sh build` (minutes; not part of make test)"


def image_built() -> bool:
    return ENGINE is not None and subprocess.run(
        [ENGINE, "image", "inspect", IMAGE], capture_output=True).returncode == 0


needs_image = pytest.mark.skipif(
    ENGINE is None or not image_built(),
    reason=f"no podman or docker: install one, then {BUILD}" if ENGINE is None
    else f"no image {IMAGE}: {BUILD}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A container of the image, as `scripts/container.sh run` starts it (no volume)."""

    def __init__(self):
        self.name = f"bigmodel-lab-test-{os.getpid()}"
        self.port, self.token = free_port(), secrets.token_hex(16)
        subprocess.run([ENGINE, "rm", "-f", self.name], capture_output=True)
        subprocess.run(
            [ENGINE, "run", "-d", "--rm", "--name", self.name,
             "-p", f"127.0.0.1:{self.port}:8888", "-e", f"JUPYTER_TOKEN={self.token}",
             "-e", "HF_HUB_OFFLINE=1", "-e", "BIGMODEL_LAB_PROFILE=smoke", IMAGE],
            check=True, capture_output=True)
        self.started = time.monotonic()

    def url(self, path: str, token: bool = True) -> str:
        return f"http://127.0.0.1:{self.port}/{path}" + (f"?token={self.token}" if token else "")

    def request(self, path: str, method: str = "GET", token: bool = True) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url(path, token), method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def wait_ready(self, timeout: float = 120) -> float:
        while time.monotonic() - self.started < timeout:
            try:
                if self.request("api/status")[0] == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.5)
        logs = subprocess.run([ENGINE, "logs", self.name], capture_output=True, text=True)
        raise AssertionError(f"no answer within {timeout} s:\n{logs.stdout}{logs.stderr}")

    def stop(self):
        subprocess.run([ENGINE, "rm", "-f", self.name], capture_output=True)


@pytest.fixture(scope="module")
def lab():
    server = Lab()
    try:
        print(f"lab answered after {server.wait_ready():.1f} s")
        yield server
    finally:
        server.stop()


@needs_image
def test_serves_notebook_00(lab):
    status, body = lab.request(f"api/contents/{NB00}")
    assert status == 200
    served = json.loads(body)
    assert served["type"] == "notebook" and served["content"]["nbformat"] == 4
    committed = json.loads((ROOT / NB00).read_text())
    title = "".join(committed["cells"][0]["source"]).splitlines()[0]
    assert "".join(served["content"]["cells"][0]["source"]).splitlines()[0] == title


@needs_image
def test_needs_the_token(lab):
    assert lab.request(f"api/contents/{NB00}", token=False)[0] == 403


@needs_image
def test_published_on_localhost_only(lab):
    ports = subprocess.run([ENGINE, "port", lab.name], capture_output=True, text=True,
                           check=True).stdout.split()
    assert ports and all(p.startswith("127.0.0.1:") for p in ports if ":" in p), ports


def run_cell(lab: Lab, kernel_id: str, code: str, timeout: float = 120) -> list[dict]:
    """Execute `code` through the server's kernel websocket; the iopub messages it caused."""
    from tornado.websocket import websocket_connect

    async def go():
        ws = await websocket_connect(
            lab.url(f"api/kernels/{kernel_id}/channels").replace("http://", "ws://"))
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                       "session": uuid.uuid4().hex, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False}}))
        replies = []
        while True:
            msg = json.loads(await asyncio.wait_for(ws.read_message(), timeout))
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            replies.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                ws.close()
                return replies

    return asyncio.run(go())


@needs_image
def test_runs_the_setup_cell_of_notebook_00_in_a_kernel(lab):
    cells = json.loads(lab.request(f"api/contents/{NB00}")[1])["content"]["cells"]
    setup = next(c["source"] for c in cells if "lab.setup(" in "".join(c["source"]))
    status, body = lab.request("api/kernels", method="POST")
    assert status == 201, body
    kernel = json.loads(body)["id"]
    try:
        replies = run_cell(lab, kernel, "".join(setup))
    finally:
        lab.request(f"api/kernels/{kernel}", method="DELETE")
    errors = [m["content"] for m in replies if m["msg_type"] == "error"]
    assert not errors, errors
    printed = "".join(m["content"].get("text", "") for m in replies if m["msg_type"] == "stream")
    assert "notebook 00 | profile smoke" in printed, printed


def test_build_context_leaves_out_environments_and_what_runs_made():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", ".venv", "build", "cache", "checkpoints", "exports"):
        assert path in ignored, path


def test_image_installs_as_make_install_and_starts_as_make_lab():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "make install" in dockerfile and "scripts/ensure_torch.py" in dockerfile
    assert "torch==" not in dockerfile  # the pin stays in requirements/torch-cpu.txt
    assert 'CMD ["python", "scripts/lab.py"' in dockerfile
    assert "-p \"127.0.0.1:$PORT:8888\"" in (ROOT / "scripts" / "container.sh").read_text()


def test_lock_for_python_replaces_only_the_named_pins():
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from lock_for_python import replace_pins

    lines = ["# made on 3.11.7", "soupsieve==4.1.3", "Jinja2==3.1.6", "soupsieve-extra==1.0"]
    assert replace_pins(lines, {"SoupSieve": "2.10"}) == [
        "# made on 3.11.7", "soupsieve==2.10", "Jinja2==3.1.6", "soupsieve-extra==1.0"]
