"""scripts/finetune.py: 2 processes (DDP, gloo on CPU) end where 1 process ends."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "finetune.py"
ARGS = ["--tiny", "--dataset", "sst2", "--n-train", "48", "--n-eval", "16", "--max-length", "32",
        "--batch-size", "16", "--epochs", "2", "--lr", "1e-3", "--seed", "0"]


def script():
    spec = importlib.util.spec_from_file_location("finetune_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tokenizer():
    from transformers import AutoTokenizer

    from bigmodel_lab.models import packaged_model_path

    return AutoTokenizer.from_pretrained(packaged_model_path(), local_files_only=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(prefix: list[str], out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([*prefix, str(SCRIPT), *ARGS, "--output", str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_process_ddp_equals_one_process_with_the_same_global_batch(tmp_path):
    single = run([sys.executable], tmp_path / "single")
    ddp = run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port())], tmp_path / "ddp")
    assert ddp["world_size"] == 2 and ddp["steps"] == single["steps"]
    a = load_file(tmp_path / "single" / "model.safetensors")
    b = load_file(tmp_path / "ddp" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    # ... and training did move the weights, so the comparison is not trivially true.
    initial = script().tiny_model(tokenizer(), seed=0).state_dict()
    assert not torch.allclose(initial["classifier.weight"], a["classifier.weight"], atol=1e-3)
    assert abs(single["test_accuracy"] - ddp["test_accuracy"]) < 1e-6
