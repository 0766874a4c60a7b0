"""The gpu profile's code path, rehearsed on a CPU (BIGMODEL_LAB_REHEARSAL=1), and the hub
code path run against a local stand-in of the hub's caches (no network).

`make rehearsal` runs every notebook this way; here, the package-level gpu paths at tiny
size: the rehearsal rows, bf16 autocast in the training loop, the DDP script with two
processes, and the hub loaders (GLUE SST-2, IMDb, Rotten Tomatoes, distilbert-base-uncased,
SmolLM2-135M-Instruct) including a DistilBERT fine-tune, the gpu profile's model."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bigmodel_lab import finetune as ft
from bigmodel_lab import profiles, results, runtime

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import hub_standin  # noqa: E402


def test_rehearsal_rows_keep_the_gpu_switches_at_smoke_sizes(capsys):
    for notebook, row in profiles.SETTINGS.items():
        gpu, smoke = row["gpu"], row["smoke"]
        rehearsal = profiles.settings_for(notebook, "rehearsal")
        assert rehearsal.keys() == gpu.keys(), notebook
        for key, value in rehearsal.items():
            if profiles._is_size(gpu[key]) and key in smoke:
                assert value == smoke[key], (notebook, key)  # sizes: smoke's
            elif isinstance(gpu[key], str) and gpu[key] in profiles.REHEARSAL_STAND_INS:
                assert value == profiles.REHEARSAL_STAND_INS[gpu[key]]
            elif isinstance(gpu[key], str) and gpu[key].startswith("HuggingFaceTB/"):
                assert value == smoke.get(key)  # the packaged SmolLM2 (None) or smoke's
            else:
                assert value == gpu[key], (notebook, key)  # dtypes, variants, rates: gpu's
    assert "replaced by all-MiniLM-L6-v2" in capsys.readouterr().out  # said, not silent
    assert profiles.settings_for("09", "rehearsal")["gpu_dtypes"] == ("fp32", "fp16", "bf16")


def test_rehearsal_is_switched_on_by_one_variable_and_writes_nothing_real(monkeypatch,
                                                                          tmp_path):
    monkeypatch.setenv("BIGMODEL_LAB_REHEARSAL", "1")
    monkeypatch.delenv("BIGMODEL_LAB_PROFILE", raising=False)  # make test sets smoke, which wins
    monkeypatch.setenv("BIGMODEL_LAB_HOME", str(tmp_path))
    monkeypatch.setattr(ft, "CHECKPOINTS", None)
    monkeypatch.setattr(runtime, "CURRENT", {})  # the rehearsal ends with this test
    cfg = runtime.setup("06", quiet=True)
    assert cfg.profile == "rehearsal" and not cfg.is_smoke and runtime.rehearsing()
    assert cfg.model == "all-MiniLM-L6-v2" and cfg.max_length == 32
    assert results.record(cfg, task="sst2", model="m", metrics={"accuracy": 1.0}) is not None
    assert not results.ledger_path().exists()  # never a "gpu" figure in the ledger
    assert ft.checkpoint_dir("sst2", "m") == tmp_path / "checkpoints" / "rehearsal" / "sst2-m"
    with pytest.raises(ValueError, match="Valid profiles"):
        runtime.resolve_profile("cpu-ish")


def test_training_autocasts_to_bf16_on_a_cpu_in_the_rehearsal(monkeypatch):
    from torch.utils.data import DataLoader

    from bigmodel_lab.train import TrainConfig, autocast_dtype, fit
    from bigmodel_lab.transformer import GPT, TransformerConfig

    monkeypatch.setattr(runtime, "CURRENT", {})
    monkeypatch.delenv("BIGMODEL_LAB_REHEARSAL", raising=False)
    cpu = torch.device("cpu")
    assert autocast_dtype(TrainConfig(), cpu) is None  # a plain cpu run stays fp32
    assert autocast_dtype(TrainConfig(mixed_precision="bf16"), cpu) == torch.bfloat16
    monkeypatch.setenv("BIGMODEL_LAB_REHEARSAL", "1")
    assert autocast_dtype(TrainConfig(), cpu) == torch.bfloat16
    torch.manual_seed(0)
    model = GPT(TransformerConfig(vocab_size=32, context_length=8, num_layers=1, num_heads=2,
                                  hidden_size=16))
    seen = set()
    model.lm_head.register_forward_hook(lambda m, i, out: seen.add(out.dtype))
    ids = torch.randint(0, 32, (16, 8), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": x, "labels": x} for x in ids]
    hist = fit(model, DataLoader(data, batch_size=4),
               TrainConfig(max_steps=3, lr=1e-2, progress=False, eval_every=3),
               eval_loader=DataLoader(data[:4], batch_size=4))
    assert seen == {torch.bfloat16} and hist.steps == 3
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in hist.train + hist.eval)
    assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_script_runs_two_processes_with_bf16_autocast_in_the_rehearsal(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "BIGMODEL_LAB_REHEARSAL": "1", "BIGMODEL_LAB_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
         str(ROOT / "scripts" / "finetune.py"), "--tiny", "--dataset", "sst2", "--n-train", "32",
         "--n-eval", "16", "--max-length", "32", "--batch-size", "16", "--epochs", "1",
         "--lr", "1e-3", "--output", str(tmp_path / "out"),
         "--checkpoint-dir", str(tmp_path / "ckpt")],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["world_size"] == 2 and result["steps"] == 2
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert (tmp_path / "ckpt" / "rank1" / "last.safetensors").exists()
    assert ft.read_info(tmp_path / "out")["origin"] == "scripts/finetune.py"


HUB_SCRIPT = r"""
import json
import torch
from bigmodel_lab import data, finetune, hub, models, runtime
hub._decision["hub"] = True  # as if huggingface.co answered
out = {}
for name in ("sst2", "imdb", "rotten_tomatoes"):
    dsd = data.load_sentiment(name)
    out[name] = {"origin": dsd.source.origin, "benchmark": dsd.source.is_benchmark,
                 "sizes": {k: len(v) for k, v in dsd.items()},
                 "columns": sorted(dsd["train"].column_names),
                 "labels": sorted(set(dsd["test"]["label"]))}
model, tokenizer, source = models.load_pretrained("distilbert-base-uncased")
out["encoder"] = [type(model).__name__, source.origin, models.without_attention_dropout(model)]
cfg = runtime.setup("06", profile="rehearsal", quiet=True)
clf, tok, info = finetune.load_or_finetune(cfg, "sst2", "distilbert-base-uncased")
out["finetuned"] = [type(clf).__name__, info["kind"], info["profile"], info["data_source"],
                    finetune.predict_proba(clf, tok, ["a joy"], max_length=32).shape[1]]
lm, lm_tok, lm_source = models.load_causal_lm()
ids = lm_tok("a joy to watch", return_tensors="pt", return_token_type_ids=False)
new = lm.generate(**ids, max_new_tokens=3, min_new_tokens=3, do_sample=False)
out["llm"] = [type(lm).__name__, lm_source.origin, lm.config.num_key_value_heads,
              new.shape[1] - ids["input_ids"].shape[1]]
print(json.dumps(out))
"""


def test_hub_loaders_run_against_a_local_stand_in_of_the_hub(tmp_path):
    env = {**os.environ, **hub_standin.build(tmp_path / "standin"), "OMP_NUM_THREADS": "1",
           "BIGMODEL_LAB_HOME": str(tmp_path / "work")}
    env.pop("BIGMODEL_LAB_REHEARSAL", None)
    done = subprocess.run([sys.executable, "-c", HUB_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("sst2", "imdb", "rotten_tomatoes"):
        assert out[name]["origin"] == "hub" and out[name]["benchmark"], name
        assert out[name]["columns"] == ["label", "text"] and out[name]["labels"] == [0, 1]
        assert all(n > 0 for n in out[name]["sizes"].values()), (name, out[name]["sizes"])
    # GLUE: the labelled validation split is our test split; train keeps 36 of 40 rows.
    assert out["sst2"]["sizes"] == {"train": 36, "validation": 4, "test": 10}
    assert out["imdb"]["sizes"]["test"] == 20  # the unsupervised split is left out
    assert out["encoder"] == ["DistilBertForSequenceClassification", "hub", 2]
    assert out["finetuned"][:3] == ["DistilBertForSequenceClassification", "quick", "rehearsal"]
    assert "nyu-mll/glue" in out["finetuned"][3] and out["finetuned"][4] == 2
    assert out["llm"] == ["LlamaForCausalLM", "hub", 3, 3]
