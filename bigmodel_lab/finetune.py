"""Fine-tune a pretrained encoder for sentiment classification, and use it.

The pieces Trainer hides, one function each: tokenization without padding (`tokenize_split`),
dynamic padding (`collate`), length-grouped batches (`LengthGroupedBatchSampler`), the fine-tune
itself through the package's one training loop (`finetune`, on `bigmodel_lab.train.fit`), and
inference (`predict_proba`, `evaluate`). `finetune_with_trainer` is the Hugging Face `Trainer`
path the source articles show, kept for comparison. `load_or_finetune` is what later chapters
call to get a fine-tuned sentiment model.

Bad input, by design:
- an empty string is classified (the model sees just [CLS] [SEP]), never an error;
- a text longer than `max_length` tokens is truncated (head, head+tail or chunk-and-average,
  see `bigmodel_lab.longtext`);
- a value that is not a string, or a label outside {0, 1}, raises an error that says the fix.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from . import longtext
from .checks import check_count, check_max_length
from .metrics import classification_report
from .runtime import shown_path, work_dir
from .train import History, TrainConfig, fit

CHECKPOINTS: Path | None = None  # None: work_dir()/checkpoints (see checkpoints_root)


# ---------------------------------------------------------------------------- bad input
def check_texts(texts) -> list[str]:
    """A list of strings, or a TypeError naming the offending position and the fix."""
    if isinstance(texts, str):
        raise TypeError("Pass a list of texts, not a single string: use [text].")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(
                f"Text at position {i} is {type(t).__name__} ({t!r:.40}), not str. Convert or "
                "drop non-text values first, e.g. [str(t) for t in texts] or "
                "ds.filter(lambda r: isinstance(r['text'], str))."
            )
    return texts


def check_labels(labels) -> np.ndarray:
    """Labels as an int array, or a ValueError when any is outside {0, 1}."""
    arr = np.asarray(list(labels))
    bad = [v for v in np.unique(arr).tolist() if v not in (0, 1)]
    if bad:
        raise ValueError(
            f"Labels must be 0 (negative) or 1 (positive); found {bad[:5]}. Map them first, e.g. "
            "ds = ds.map(lambda r: {'label': int(r['label'] > 0)}), or drop unlabelled rows "
            "(GLUE test labels are -1: evaluate on validation instead)."
        )
    return arr.astype(np.int64)


def check_split(ds, what: str = "split") -> None:
    """A `datasets.Dataset` with rows, or an error saying what to pass."""
    if isinstance(ds, dict) or not hasattr(ds, "column_names"):
        raise TypeError(f"{what} must be one datasets.Dataset split (e.g. dsd['test']), got "
                        f"{type(ds).__name__}.")
    if len(ds) == 0:
        raise ValueError(f"The {what} is empty (0 rows). Load more rows (a larger n_train / "
                         "n_eval in load_sentiment), or check the filter that emptied it.")


def training_split(dsd):
    """dsd["train"], checked: present and not empty."""
    if not hasattr(dsd, "keys") or "train" not in dsd:
        have = ", ".join(dsd.keys()) if hasattr(dsd, "keys") else type(dsd).__name__
        raise ValueError(f"Fine-tuning needs a DatasetDict with a 'train' split; got {have}. "
                         "Use data.load_sentiment(...), or DatasetDict(train=..., "
                         "validation=...).")
    check_split(dsd["train"], "training split")
    return dsd["train"]


def held_out_split(dsd, name: str):
    """dsd[name] for evaluation, checked: present and not empty."""
    if name not in dsd:
        raise ValueError(
            f"No {name!r} split to evaluate on (the splits are: {', '.join(dsd)}). Pass "
            "eval_split= one of them, eval_split=None to train without evaluation, or carve "
            "one out: dsd['train'].train_test_split(test_size=0.1, seed=0)."
        )
    check_split(dsd[name], f"{name} split")
    return dsd[name]


# ---------------------------------------------------------------------------- tokenization
def encode(texts, tokenizer, max_length: int = 128, strategy: str = "head",
           chunk_size: int = 1000) -> list[list[list[int]]]:
    """Token ids per text, as a list of windows (one window unless strategy="chunk").

    Windows carry [CLS]/[SEP] and hold at most `max_length` ids; no padding here (the collate
    function pads each batch to its own longest row). Texts are tokenized `chunk_size` at a
    time and cut to their windows at once, so a long corpus never sits in memory untruncated."""
    texts = check_texts(texts)
    max_length = check_count("max_length", max_length, minimum=2, allow_none=False)
    longtext.check_strategy(strategy)
    out: list[list[list[int]]] = []
    lean = dict(return_attention_mask=False, return_token_type_ids=False)
    for start in range(0, len(texts), chunk_size):
        part = texts[start : start + chunk_size]
        if strategy == "head":
            # The tokenizer truncates as it goes: a 10 MB string costs no more than max_length.
            ids = tokenizer(part, truncation=True, max_length=max_length, **lean)["input_ids"]
            out.extend([row] for row in ids)
        else:
            ids = tokenizer(part, add_special_tokens=False, truncation=False, **lean)["input_ids"]
            out.extend(longtext.windows(row, tokenizer, max_length, strategy) for row in ids)
    return out


def tokenize_split(ds, tokenizer, max_length: int = 128, strategy: str = "head"):
    """A `datasets.Dataset` with text/label -> one with input_ids and label (unpadded).

    Ids are written batch by batch into the dataset's Arrow table (compact, off the Python heap)."""
    from .data import check_columns

    check_columns(ds)
    check_labels(ds["label"])
    if strategy == "chunk":
        raise ValueError("Train on one window per text (strategy 'head' or 'head+tail'); "
                         "chunk-and-average is an inference-time strategy (predict_proba).")

    def ids(batch):
        return {"input_ids": [w[0] for w in encode(batch["text"], tokenizer, max_length, strategy)]}

    return ds.map(ids, batched=True, batch_size=1000,
                  remove_columns=[c for c in ds.column_names if c != "label"])


def token_lengths(tokenized) -> np.ndarray:
    """Length of every row of `input_ids`, read from Arrow without building Python lists."""
    import pyarrow.compute as pc

    column = tokenized.with_format("arrow")[:]["input_ids"]
    return pc.list_value_length(column).to_numpy(zero_copy_only=False)


def collate(rows: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Dynamic padding: pad a batch to its longest row, not to max_length."""
    longest = max(len(r["input_ids"]) for r in rows)
    input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)  # (B, T)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        input_ids[i, :n] = torch.as_tensor(r["input_ids"])
        attention_mask[i, :n] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "label" in rows[0]:
        batch["labels"] = torch.tensor([int(r["label"]) for r in rows], dtype=torch.long)
    return batch


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of similar length, in random order: less padding, still a random pass per epoch.

    Indices are shuffled, cut into mega-batches of `batch_size * mega` examples, each sorted by
    length and cut into batches; the batch order is shuffled again. The shuffle draws its seed
    from torch's RNG when iteration starts (`fit` seeds torch with seed + epoch before each
    epoch), so a resumed run sees the same batches. With `world_size > 1` (DDP) every rank
    draws the same global batches of `batch_size` rows and keeps rows rank, rank + world_size,
    ...: together the processes take exactly the steps a single process would.
    """

    def __init__(self, lengths, batch_size: int, shuffle: bool = True, group_by_length: bool = True,
                 mega: int = 50, rank: int = 0, world_size: int = 1):
        if batch_size < 1 or batch_size % world_size:
            raise ValueError(f"batch_size ({batch_size}) must be a positive multiple of the "
                             f"number of processes ({world_size}): it is the global batch.")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.group, self.mega = batch_size, shuffle, group_by_length, mega
        self.rank, self.world_size = rank, world_size

    def global_batches(self) -> list[np.ndarray]:
        n = len(self.lengths)
        seed = int(torch.randint(0, 2**31 - 1, ()).item()) if self.shuffle else 0
        rng = np.random.default_rng(seed)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.group and n:
            size = self.batch_size * self.mega
            order = np.concatenate([
                part[np.argsort(-self.lengths[part], kind="stable")]
                for part in np.split(order, range(size, n, size))
            ])
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.shuffle and self.group:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.world_size > 1:  # every rank needs an equal share of every batch
            batches = [b for b in batches if len(b) % self.world_size == 0]
        return batches

    def __iter__(self):
        for b in self.global_batches():
            yield b[self.rank :: self.world_size].tolist()

    def __len__(self) -> int:
        n, bs = len(self.lengths), self.batch_size
        short = n % bs
        return n // bs + (1 if short and short % self.world_size == 0 else 0)


def make_loader(tokenized, tokenizer, batch_size: int, shuffle: bool = True,
                group_by_length: bool = True, rank: int = 0, world_size: int = 1) -> DataLoader:
    """DataLoader over a tokenized split: length-grouped batches, padded per batch."""
    lengths = token_lengths(tokenized)
    sampler = LengthGroupedBatchSampler(lengths, batch_size, shuffle=shuffle,
                                        group_by_length=group_by_length, rank=rank,
                                        world_size=world_size)
    pad_id = tokenizer.pad_token_id or 0
    return DataLoader(tokenized.with_format(None), batch_sampler=sampler,
                      collate_fn=lambda rows: collate(rows, pad_id))


def padding_share(loader: DataLoader) -> float:
    """Fraction of the token positions in the loader's batches that are padding."""
    pad = total = 0
    for batch in loader:
        total += batch["attention_mask"].numel()
        pad += int((batch["attention_mask"] == 0).sum())
    return pad / max(total, 1)


# ---------------------------------------------------------------------------- inference
def _device_of(model) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def predict_proba(model, tokenizer, texts, max_length: int = 128, batch_size: int = 32,
                  strategy: str = "head", progress: bool = False) -> np.ndarray:
    """Class probabilities, shape (N, num_labels), for a list of texts.

    Texts longer than `max_length` tokens are truncated (strategy "head" or "head+tail") or
    split into windows whose probabilities are averaged ("chunk"). Empty strings are
    classified. Batches are formed by length, so little time goes into padding."""
    max_length = check_max_length(model, max_length)
    batch_size = check_count("batch_size", batch_size, allow_none=False)
    per_text = encode(texts, tokenizer, max_length, strategy)
    flat = [w for ws in per_text for w in ws]
    owner = np.repeat(np.arange(len(per_text)), [len(ws) for ws in per_text])
    num_labels = model.config.num_labels
    if not flat:
        return np.zeros((0, num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    device = _device_of(model)
    order = np.argsort([len(w) for w in flat], kind="stable")
    window_probs = np.zeros((len(flat), num_labels), dtype=np.float32)
    pad_id = tokenizer.pad_token_id or 0
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"predict ({strategy})", leave=False)
    for start in starts:
        idx = order[start : start + batch_size]
        batch = collate([{"input_ids": flat[i]} for i in idx], pad_id)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        window_probs[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    model.train(was_training)
    # Average the windows of each text (a single window for head / head+tail).
    sums = np.zeros((len(per_text), num_labels), dtype=np.float64)
    np.add.at(sums, owner, window_probs)
    return (sums / np.bincount(owner, minlength=len(per_text))[:, None]).astype(np.float32)


def evaluate(model, tokenizer, dataset_split, max_length: int = 128, batch_size: int = 32,
             strategy: str = "head", progress: bool = False) -> dict[str, Any]:
    """Accuracy, F1, probabilities and labels on a split with `text` and `label` columns."""
    from .data import check_columns

    check_split(dataset_split, "dataset_split")
    check_columns(dataset_split)
    labels = check_labels(dataset_split["label"])
    start = time.perf_counter()
    probs = predict_proba(model, tokenizer, dataset_split["text"], max_length, batch_size,
                          strategy, progress)
    return {**classification_report(probs, labels), "probs": probs, "labels": labels,
            "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------------------- Trainer path
def finetune_with_trainer(model, tokenizer, dsd, max_length: int = 128, batch_size: int = 32,
                          epochs: int = 1, lr: float = 5e-5, warmup: float = 0.1, seed: int = 0,
                          output_dir: str | None = None, grad_accum: int = 1,
                          evaluate: bool = True, device: str | None = None):
    """Fine-tune with Hugging Face `Trainer` (the source articles' path); returns the trainer.

    `evaluate=False` skips the end-of-epoch validation (benchmarks time the training alone).
    `device` (default: CUDA, then Apple MPS, then CPU, as `runtime.pick_device`) is where
    Trainer moves the model; it prints which. fp16 mixed precision on CUDA only: on MPS and
    CPU the run is fp32."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from .runtime import pick_device

    device = device or pick_device()

    max_length = check_max_length(model, max_length)
    train = tokenize_split(training_split(dsd), tokenizer, max_length)
    validation = tokenize_split(held_out_split(dsd, "validation"), tokenizer, max_length)
    args = TrainingArguments(
        output_dir=output_dir or tempfile.mkdtemp(prefix="trainer-"),
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        num_train_epochs=epochs, learning_rate=lr, warmup_steps=warmup,
        lr_scheduler_type="linear", weight_decay=0.01,
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="no", logging_strategy="epoch", report_to="none", seed=seed,
        train_sampling_strategy="group_by_length", use_cpu=device == "cpu",
        fp16=device == "cuda", dataloader_num_workers=0,
    )

    def accuracy(pred):
        return classification_report(torch.softmax(torch.as_tensor(pred.predictions), -1),
                                     pred.label_ids)

    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                      data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer, compute_metrics=accuracy)
    # A classifier's forward takes **kwargs, so Trainer assumes it normalises its loss by
    # num_items_in_batch and skips dividing by the accumulation steps; it does not, and the
    # micro-batch losses (and gradients) would be summed (transformers issue #47688).
    trainer.model_accepts_loss_kwargs = False
    print(f"Trainer: training on {args.device} ({'fp16 mixed precision' if args.fp16 else 'fp32'})")
    trainer.train()
    return trainer


# ---------------------------------------------------------------------------- checkpoints
def short_name(model_source) -> str:
    return str(getattr(model_source, "name", model_source)).split("/")[-1]


def checkpoints_root() -> Path:
    """checkpoints/ under `runtime.work_dir()` (the clone, or the working directory of a pip
    install such as Colab's), never site-packages; checkpoints/rehearsal/ in the rehearsal,
    so it never replaces a real run's model. Tests point `CHECKPOINTS` elsewhere."""
    from .runtime import rehearsing

    root = Path(CHECKPOINTS) if CHECKPOINTS is not None else work_dir() / "checkpoints"
    return root / "rehearsal" if rehearsing() else root


def checkpoint_dir(dataset: str, model_source) -> Path:
    """checkpoints/<dataset>-<model short name>/, e.g. checkpoints/sst2-all-MiniLM-L6-v2:
    where notebook 06 saves its fine-tuned classifier."""
    return checkpoints_root() / f"{dataset}-{short_name(model_source)}"


def quick_checkpoint_dir(dataset: str, model_source, profile: str) -> Path:
    """Where `load_or_finetune` keeps the quick 1-epoch stand-in it makes when 06's is missing:
    a folder of its own per profile, so it never passes for (or replaces) 06's model."""
    return checkpoints_root() / f"{dataset}-{short_name(model_source)}-quick-{profile}"


def recover_interrupted_save(folder: str | os.PathLike) -> None:
    """Finish or undo what a crash in the middle of `save_finetuned` left behind (the old or
    the new checkpoint goes in place, hidden leftovers are removed)."""
    from .runtime import recover_interrupted_write

    recover_interrupted_write(folder, INFO)


INFO = "info.json"


def save_finetuned(model, tokenizer, folder: str | os.PathLike, info: dict) -> Path:
    """Save model + tokenizer + info.json, replacing `folder` without ever losing it.

    `runtime.replace_folder` writes the new copy to a hidden sibling first (info.json last, as
    the mark of a complete copy) and swaps it in; a crash at any point leaves the old or the
    new checkpoint, and the next call (or `load_or_finetune`) puts the right one in place. `info` gains the profile and origin (the notebook running,
    else "python") when it does not say them, so a later run can tell what made it."""
    from .runtime import replace_folder

    def write(new: Path) -> None:
        model.save_pretrained(new)
        tokenizer.save_pretrained(new)
        (new / INFO).write_text(json.dumps(_plain_info(with_provenance(info)), indent=2))

    return replace_folder(folder, write, INFO)


def with_provenance(info: dict) -> dict:
    """`info` plus "profile", "origin" and "saved_at" when it lacks them: the profile and
    notebook of the running `lab.setup`, else "python"."""
    from datetime import datetime, timezone

    from .runtime import CURRENT

    cfg = CURRENT.get("cfg")
    out = dict(info)
    out.setdefault("profile", cfg.profile if cfg else None)
    out.setdefault("origin", f"notebook {cfg.notebook}" if cfg else "python")
    out.setdefault("saved_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return out


def _plain_info(info: dict) -> dict:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in info.items()
            if isinstance(v, (str, int, float, bool, type(None))) or hasattr(v, "item")}


def read_info(folder: str | os.PathLike) -> dict:
    path = Path(folder) / INFO
    return json.loads(path.read_text()) if path.exists() else {}


def reusable(folder: Path, base_source, model_type: str, profile: str,
             recipe: dict | None = None) -> tuple[bool, str]:
    """May the checkpoint in `folder` stand in for a fresh fine-tune in this profile?

    Only a checkpoint made in the same profile (a smoke run never picks up a cpu model, nor a
    cpu run a smoke one), from the same base model and architecture, and, when `recipe` is
    given (n_train, max_length, ...), made with the same settings."""
    from .models import check_checkpoint

    folder = Path(folder)
    if not (folder / "config.json").exists():
        return False, "no checkpoint"
    try:
        check_checkpoint(folder, model_type)
    except (FileNotFoundError, ValueError) as err:
        return False, str(err)
    info = read_info(folder)
    if info.get("base_model") not in (None, short_name(base_source)):
        return False, f"made from {info['base_model']}, not {short_name(base_source)}"
    if info.get("profile") != profile:
        return False, (f"made in the {info.get('profile')} profile, this run is {profile} "
                       "(each profile uses its own)")
    for key, want in (recipe or {}).items():
        if info.get(key) != want:
            return False, f"made with {key}={info.get(key)}, this run uses {want}"
    return True, "ok"


def describe(info: dict) -> str:
    """One plain sentence on what made a checkpoint, from its info.json."""
    n = info.get("n_train")
    rows = f"{n:,} examples" if isinstance(n, int) else "? examples"
    what = "a quick stand-in" if info.get("kind") == "quick" else "the fine-tuned classifier"
    acc = info.get("test_accuracy")
    score = f", test accuracy {acc:.3f}" if isinstance(acc, float) else ""
    return (f"{what} made by {info.get('origin', 'an unknown run')} in the "
            f"{info.get('profile', '?')} profile ({info.get('epochs', '?')} epoch(s) on {rows}"
            f"{score})")


# ---------------------------------------------------------------------------- our loop
def finetune_config(**overrides) -> TrainConfig:
    """`TrainConfig` defaults for fine-tuning a classifier: lr 5e-5, 10% linear warm-up, linear
    decay to 0, keep the checkpoint with the best validation accuracy."""
    defaults = dict(epochs=1, lr=5e-5, warmup_steps=0.1, schedule="linear", min_lr_ratio=0.0,
                    weight_decay=0.01, metric="accuracy", greater_is_better=True)
    return TrainConfig(**{**defaults, **overrides})


def finetune(model, tokenizer, dsd, config: TrainConfig, max_length: int = 128,
             batch_size: int = 32, strategy: str = "head", group_by_length: bool = True,
             eval_split: str | None = "validation", rank: int = 0, world_size: int = 1) -> History:
    """Fine-tune `model` on dsd["train"] with `bigmodel_lab.train.fit`; returns its History.

    `batch_size` is the effective batch of one optimizer step: it is cut into
    `config.grad_accum_steps` micro-batches (less memory, same step) and each micro-batch is
    shared by the `world_size` DDP processes. Batches are length-grouped and padded per batch.
    Validation accuracy is measured at each evaluation (`config.eval_every` steps, and at the
    end); the best weights are kept."""
    max_length = check_max_length(model, max_length)
    batch_size = check_count("batch_size", batch_size, allow_none=False)
    if batch_size % config.grad_accum_steps:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of grad_accum_steps "
                         f"({config.grad_accum_steps}).")
    micro = batch_size // config.grad_accum_steps
    train = training_split(dsd)
    held_out = held_out_split(dsd, eval_split) if eval_split is not None else None
    train = tokenize_split(train, tokenizer, max_length, strategy)
    loader = make_loader(train, tokenizer, micro, shuffle=True,
                         group_by_length=group_by_length, rank=rank, world_size=world_size)
    eval_fn = None
    if held_out is not None:

        def eval_fn(m):
            scores = evaluate(getattr(m, "module", m), tokenizer, held_out, max_length,
                              micro * 2, strategy)
            return {"accuracy": scores["accuracy"], "f1": scores["f1"]}

    return fit(model, loader, config, eval_fn=eval_fn)


def steps_per_epoch(n_examples: int, batch_size: int, grad_accum_steps: int = 1) -> int:
    """Optimizer steps in one epoch with effective batch `batch_size` (as in `finetune`)."""
    micro = batch_size // grad_accum_steps
    return math.ceil(math.ceil(n_examples / micro) / grad_accum_steps)


# ---------------------------------------------------------------------------- for later chapters
def load_or_finetune(cfg, dataset: str = "sst2", model_name: str = "distilbert-base-uncased"):
    """(model, tokenizer, info): the Part III fine-tuned classifier, made quickly if missing.

    First choice: notebook 06's checkpoint, checkpoints/<dataset>-<model short name>/, when it
    holds the same base model and was made in this profile. Else the quick stand-in of this
    profile (checkpoints/<dataset>-<model>-quick-<profile>/) when it was made with the
    caller's settings. Else it fine-tunes one epoch with the caller's cfg.n_train,
    cfg.max_length and cfg.batch_size and saves that as the quick stand-in (never over 06's
    checkpoint). It prints which of these it used, and who made it. The model is on
    cfg.device, in eval mode. `info` says what happened ("action": "loaded" or
    "fine-tuned"), "kind" ("full": 06's; "quick"), "origin" (the notebook that made it), the
    profile, the data source, the base model and the test accuracy when known."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from .data import load_sentiment
    from .models import from_pretrained, load_pretrained, resolve_model
    from .runtime import SOURCES

    source = resolve_model(model_name)
    settings = getattr(cfg, "settings", {})
    n_train, n_eval = settings.get("n_train"), settings.get("n_eval")
    max_length, batch_size = settings.get("max_length", 128), settings.get("batch_size", 32)
    full = checkpoint_dir(dataset, source)
    quick = quick_checkpoint_dir(dataset, source, cfg.profile)
    local = dict(local_files_only=source.origin != "hub", trust_remote_code=False)
    base_type = AutoConfig.from_pretrained(source.path, **local).model_type
    for folder in (full, quick):
        recover_interrupted_save(folder)
    ok, why = reusable(full, source, base_type, cfg.profile)
    made_here = read_info(full)  # before this fix, quick ones were saved in 06's folder
    if ok and (made_here.get("kind") == "quick" or made_here.get("action") == "fine-tuned"):
        ok, why = False, "a quick stand-in, not notebook 06's model"
    folder = full
    if not ok:
        recipe = {"kind": "quick", "n_train_requested": n_train, "max_length": max_length}
        ok, why_quick = reusable(quick, source, base_type, cfg.profile, recipe)
        folder = quick
    if ok:
        model = from_pretrained(AutoModelForSequenceClassification, str(folder),
                                local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        info = {**read_info(folder), "action": "loaded", "path": str(folder)}
        info.setdefault("kind", "full")
        SOURCES["model"] = (f"{short_name(source)} fine-tuned on {dataset} "
                            f"({info['kind']}, by {info.get('origin', '?')}), "
                            f"loaded from {shown_path(folder)}")
        print(f"Loaded {describe(info)} from {shown_path(folder)}.")
        if folder == quick:
            print(f"  Not notebook 06's model ({why}): run 06 in the {cfg.profile} profile "
                  "to use the full fine-tune here.")
        return model.to(cfg.device).eval(), tokenizer, info

    print(f"No reusable classifier: {shown_path(full)}: {why}; {shown_path(quick)}: "
          f"{why_quick}. Fine-tuning a quick stand-in (1 epoch); run notebook 06 in the "
          f"{cfg.profile} profile for the full one.")
    dsd = load_sentiment(dataset, n_train=n_train, n_eval=n_eval, seed=cfg.seed)
    model, tokenizer, source = load_pretrained(model_name)
    model.to(cfg.device)
    # Micro-batches of at most 16 keep a cpu run under 2 GB; the step is the same.
    accum = settings.get("grad_accum", max(1, batch_size // 16))
    config = finetune_config(epochs=1, lr=1e-4 if "MiniLM" in source.name else 5e-5,
                             grad_accum_steps=accum, seed=cfg.seed, progress=not cfg.is_smoke)
    history = finetune(model, tokenizer, dsd, config, max_length, batch_size)
    scores = evaluate(model, tokenizer, dsd["test"], max_length, batch_size * 2)
    notebook = getattr(cfg, "notebook", None)
    info = {
        "action": "fine-tuned", "path": str(quick), "kind": "quick",
        "origin": f"finetune.load_or_finetune in notebook {notebook}" if notebook else
        "finetune.load_or_finetune", "dataset": dataset,
        "data_source": str(dsd.source), "data_is_benchmark": dsd.source.is_benchmark,
        "base_model": short_name(source), "model_source": str(source), "profile": cfg.profile,
        "n_train": len(dsd["train"]), "n_train_requested": n_train, "epochs": 1,
        "max_length": max_length,
        "test_accuracy": round(scores["accuracy"], 4), "test_f1": round(scores["f1"], 4),
        "n_test": len(dsd["test"]), "train_seconds": round(history.train_seconds, 1),
    }
    save_finetuned(model, tokenizer, quick, info)
    SOURCES["model"] = (f"{short_name(source)} fine-tuned on {dataset} (quick, 1 epoch, by "
                        f"{info['origin']}), saved to {shown_path(quick)}")
    print(f"Saved to {shown_path(quick)}: test accuracy {scores['accuracy']:.3f} on "
          f"{len(dsd['test'])} examples ({dsd.source}).")
    return model.eval(), tokenizer, info
