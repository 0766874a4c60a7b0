"""A pip install (Colab's cell installs from git, not editable) writes nothing into
site-packages: checkpoints, exports, results and build output go to the working directory.

The package is copied as a wheel would lay it out (site-packages/bigmodel_lab/, no
pyproject.toml or notebooks/ beside it) and run from another folder in a fresh process,
with BIGMODEL_LAB_HOME and BIGMODEL_LAB_LEDGER unset."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bigmodel_lab"

SCRIPT = r"""
import json, sys
import bigmodel_lab as lab
from bigmodel_lab import compress, dashboard, finetune, models, results, runtime
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

assert lab.__file__.startswith(sys.argv[1]), lab.__file__  # the copy, not the editable clone
cfg = lab.setup("06", profile="cpu", quiet=True)
results.record(cfg, task="sst2", model="tiny", metrics={"accuracy": 0.5})
tokenizer = AutoTokenizer.from_pretrained(models.packaged_model_path(), local_files_only=True)
model = BertForSequenceClassification(BertConfig(
    vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    intermediate_size=32, num_labels=2))
saved = finetune.save_finetuned(model, tokenizer, finetune.checkpoint_dir("sst2", "tiny"),
                                {"base_model": "tiny"})
onnx = compress.export_onnx(model, tokenizer, runtime.work_dir() / "exports" / "m.onnx", 16)
report = dashboard.export_html(dashboard.load())
print(json.dumps({"work_dir": str(runtime.work_dir()), "ledger": str(results.ledger_path()),
                  "checkpoint": runtime.shown_path(saved), "onnx": runtime.shown_path(onnx),
                  "report": runtime.shown_path(report), "cache": str(runtime.cache_dir())}))
"""


def test_a_pip_install_writes_into_the_working_directory_not_site_packages(tmp_path):
    site, work = tmp_path / "site-packages", tmp_path / "work"
    shutil.copytree(PACKAGE, site / "bigmodel_lab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("BIGMODEL_LAB_HOME", "BIGMODEL_LAB_LEDGER")}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1",
               OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(site)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["work_dir"]) == work.resolve()
    assert Path(out["ledger"]) == work.resolve() / "results" / "ledger.jsonl"
    assert out["checkpoint"] == "checkpoints/sst2-tiny"  # printed relative, as notebooks do
    assert out["onnx"] == "exports/m.onnx" and out["report"] == "build/results_dashboard.html"
    assert Path(out["cache"]).is_relative_to(work.resolve())
    assert (work / "results" / "ledger.jsonl").read_text().count("\n") == 1
    written = sorted(str(p.relative_to(site)) for p in site.rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts)
    copied = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts)
    assert written == [str(Path("bigmodel_lab") / p) for p in copied]  # nothing new there
