"""A local stand-in of the Hugging Face hub's caches, so the hub code path runs offline.

`build(root)` lays out, under root/hub (HF_HUB_CACHE) and root/datasets (HF_DATASETS_CACHE),
what a first online run leaves behind, with the real repository names, configurations,
split names, column names and label features, but tiny contents:

* models--distilbert-base-uncased, models--HuggingFaceTB--SmolLM2-135M-Instruct:
  snapshots/<rev>/ with config.json, model.safetensors and tokenizer files, refs/main;
  small randomly initialised DistilBERT / Llama models of the real architectures (the
  tokenizer files are the packaged MiniLM's, which is the same uncased BERT vocabulary
  DistilBERT uses);
* nyu-mll/glue (sst2: sentence, label, idx; test labels -1), stanfordnlp/imdb (plain_text:
  train, test, unsupervised with labels -1; label names neg/pos), and
  cornell-movie-review-data/rotten_tomatoes (default: train/validation/test): the Arrow
  cache `datasets.load_dataset` reads in offline mode.

Run the code under test in a fresh process with HF_HUB_CACHE, HF_DATASETS_CACHE and
HF_HUB_OFFLINE=1 set (both libraries read them at import) and `hub._decision["hub"] = True`.
"""

from __future__ import annotations

from pathlib import Path

REV = "0123456789abcdef0123456789abcdef01234567"
WORDS = ("a gripping and tender film", "dull , lifeless and far too long", "a joy to watch",
         "the plot makes no sense at all", "brilliant acting throughout", "i want my money back")


def _snapshot(hub: Path, repo: str) -> Path:
    folder = hub / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(REV)
    snap = folder / "snapshots" / REV
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def build_models(hub: Path) -> None:
    import torch
    from transformers import (
        AutoTokenizer,
        DistilBertConfig,
        DistilBertForMaskedLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    from bigmodel_lab.models import packaged_model_path

    tokenizer = AutoTokenizer.from_pretrained(packaged_model_path(), local_files_only=True)
    torch.manual_seed(0)
    snap = _snapshot(hub, "distilbert-base-uncased")
    DistilBertForMaskedLM(DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
        max_position_embeddings=512)).save_pretrained(snap)
    tokenizer.save_pretrained(snap)
    snap = _snapshot(hub, "HuggingFaceTB/SmolLM2-135M-Instruct")
    # SmolLM2's shape in miniature: 9 query heads sharing 3 key/value heads, tied embeddings.
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=36, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=256,
        tie_word_embeddings=True, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id)).save_pretrained(snap)
    tokenizer.save_pretrained(snap)


def _write_cached(cache: Path, repo: str, config: str, splits: dict, features) -> None:
    import datasets
    import pyarrow as pa
    from datasets.arrow_writer import ArrowWriter
    from datasets.naming import camelcase_to_snakecase

    namespace, name = repo.split("/")
    name = camelcase_to_snakecase(name)
    folder = cache / f"{namespace}___{name}" / config / "0.0.0" / "standin"
    folder.mkdir(parents=True, exist_ok=True)
    infos = datasets.SplitDict(dataset_name=name)
    for split, columns in splits.items():
        table = pa.table(columns)
        with ArrowWriter(features=features, path=str(folder / f"{name}-{split}.arrow")) as w:
            w.write_table(pa.Table.from_pydict(features.encode_batch(table.to_pydict()),
                                               schema=features.arrow_schema))
            w.finalize()
        infos.add(datasets.SplitInfo(name=split, num_examples=table.num_rows,
                                     dataset_name=name))
    datasets.DatasetInfo(features=features, config_name=config, dataset_name=name,
                         splits=infos).write_to_directory(str(folder))


def _rows(n: int, split: str, text_key: str = "text", labelled: bool = True) -> dict:
    texts = [f"{WORDS[i % len(WORDS)]} ({split} {i})" for i in range(n)]
    labels = [(i % 2) if labelled else -1 for i in range(n)]
    return {text_key: texts, "label": labels}


def build_datasets(cache: Path, n: int = 40) -> None:
    import datasets

    glue = datasets.Features(sentence=datasets.Value("string"),
                             label=datasets.ClassLabel(names=["negative", "positive"]),
                             idx=datasets.Value("int32"))
    splits = {s: {**_rows(k, s, "sentence", s != "test"), "idx": list(range(k))}
              for s, k in (("train", n), ("validation", n // 4), ("test", n // 4))}
    _write_cached(cache, "nyu-mll/glue", "sst2", splits, glue)
    imdb = datasets.Features(text=datasets.Value("string"),
                             label=datasets.ClassLabel(names=["neg", "pos"]))
    _write_cached(cache, "stanfordnlp/imdb", "plain_text",
                  {"train": _rows(n, "train"), "test": _rows(n // 2, "test"),
                   "unsupervised": _rows(n // 4, "unsupervised", labelled=False)}, imdb)
    _write_cached(cache, "cornell-movie-review-data/rotten_tomatoes", "default",
                  {s: _rows(k, s) for s, k in (("train", n), ("validation", n // 4),
                                               ("test", n // 4))}, imdb)


def build(root: Path) -> dict[str, str]:
    """Lay out both caches under `root`; return the environment variables that point at them."""
    build_models(root / "hub")
    build_datasets(root / "datasets")
    return {"HF_HUB_CACHE": str(root / "hub"), "HF_DATASETS_CACHE": str(root / "datasets"),
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
