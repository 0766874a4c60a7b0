"""The one training loop of the book, with checkpoints that survive a crash.

Usage contract
--------------
    history = fit(model, train_loader, TrainConfig(...), eval_loader=..., loss_fn=..., eval_fn=...)

* `model` is any `torch.nn.Module`.
* `train_loader` yields batches: a dict of tensors (moved to the device for you), or a
  tuple/list of tensors.
* `loss_fn(model, batch) -> scalar loss tensor`. The default, `model_loss`, is
  `model(**batch).loss`: it fits Hugging Face models and this package's `GPT` and
  `EncoderForSequenceClassification` fed dict batches.
* `eval_fn(model) -> dict[str, float]` is called every `eval_every` optimizer steps and at the
  end (the model is in eval mode, under no_grad). Without one, `eval_loader` gives
  `{"loss": mean loss}`. `TrainConfig.metric` names the key used for best checkpoint and
  early stopping (`greater_is_better` says which way is better).
* Returns a `History`: per-step training rows, evaluation rows, examples/s, peak memory,
  wall time, best metric and step, and whether the run stopped early or was interrupted.

Fine-tuning a classifier (batch dicts with input_ids / attention_mask / labels)::

    from bigmodel_lab.train import TrainConfig, fit
    def accuracy(model):
        correct = 0
        for batch in eval_loader:
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            correct += (logits.argmax(-1).cpu() == batch["labels"]).sum().item()
        return {"accuracy": correct / len(eval_loader.dataset)}
    history = fit(model, train_loader, TrainConfig(epochs=2, lr=5e-5, eval_every=100,
                  metric="accuracy", greater_is_better=True, checkpoint_dir="runs/sst2"),
                  eval_fn=accuracy)

What the loop does: AdamW (weight decay on matrices only), linear warm-up then cosine (or
linear) decay, gradient accumulation, gradient-norm clipping, mixed precision on CUDA (bf16
where supported, else fp16 with a GradScaler), a tqdm progress bar, periodic evaluation,
early stopping, best-model keeping (restored at the end).

Checkpoints (`checkpoint_dir`): `last.safetensors` holds model, optimizer, scheduler, scaler,
RNG states and the loop position; `best.safetensors` holds the best model's weights. Both are
written to a temporary file and moved into place with `os.replace`, so a kill never leaves a
half-written checkpoint. No pickle anywhere: tensors in safetensors, the rest as JSON in the
safetensors metadata. Running `fit` again with the same `checkpoint_dir` resumes from
`last.safetensors` and ends with the same weights as a run that was never interrupted (data
order is re-seeded per epoch; the batches already seen are skipped). Ctrl-C stops the run
after saving the last completed step and returns the history (`history.interrupted`).
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

LAST = "last.safetensors"
BEST = "best.safetensors"
# TrainConfig fields that may change between a run and its resumption.
_FREE_KNOBS = ("resume", "progress", "device", "log_every", "checkpoint_dir")


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of `fit`. Steps are optimizer steps (one step = `grad_accum_steps` batches)."""

    epochs: int = 1
    max_steps: int | None = None  # overrides epochs when set
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int | float = 0.05  # an int, or a fraction of the total steps
    schedule: str = "cosine"  # "cosine", "linear" or "constant" after warm-up
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_accum_steps: int = 1
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "auto"  # "auto" (bf16/fp16 on CUDA, off elsewhere), "bf16", "fp16", "no"
    eval_every: int | None = None  # steps; None = only at the end
    metric: str = "loss"
    greater_is_better: bool = False
    early_stopping_patience: int | None = None  # evaluations without improvement
    restore_best: bool = True  # load the best weights into the model at the end
    checkpoint_dir: str | None = None
    save_every: int | None = None  # steps; None = at each evaluation (and at the end)
    resume: bool = True  # continue from checkpoint_dir/last.safetensors if present
    seed: int = 0
    device: str | None = None  # None = where the model's parameters are
    log_every: int = 10  # steps between rows of history.train
    progress: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"schedule={self.schedule!r}; use 'cosine', 'linear' or 'constant'.")
        if self.mixed_precision not in ("auto", "bf16", "fp16", "no"):
            raise ValueError(
                f"mixed_precision={self.mixed_precision!r}; use 'auto', 'bf16', 'fp16' or 'no'."
            )
        if self.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}.")


@dataclass
class History:
    """What `fit` measured. `train` and `eval` are lists of dict rows (pandas-ready)."""

    train: list[dict] = field(default_factory=list)  # step, epoch, loss, lr
    eval: list[dict] = field(default_factory=list)  # step + the eval_fn metrics
    steps: int = 0
    examples: int = 0
    train_seconds: float = 0.0  # optimisation time, evaluation excluded
    examples_per_s: float = 0.0
    peak_memory_mb: float = 0.0  # CUDA: max allocated; CPU: peak resident set of the process
    best_metric: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    interrupted: bool = False
    resumed_from_step: int | None = None


def model_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    """Default loss: `model(**batch).loss` for dict batches, `model(*batch).loss` otherwise."""
    out = model(**batch) if isinstance(batch, dict) else model(*batch)
    loss = out.loss if hasattr(out, "loss") else out["loss"] if isinstance(out, dict) else None
    if loss is None:
        raise ValueError(
            "The model returned no loss. Pass labels in the batch, or give fit() a "
            "loss_fn(model, batch) that returns a scalar loss."
        )
    return loss


def to_device(batch: Any, device: torch.device | str) -> Any:
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch.to(device, non_blocking=True) if torch.is_tensor(batch) else batch


def batch_size_of(batch: Any) -> int:
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    return int(batch.shape[0]) if torch.is_tensor(batch) and batch.ndim else 1


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] = model_loss,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Mean loss over `loader` (weighted by batch size), model in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for batch in loader:
        b = batch_size_of(batch)
        total += loss_fn(model, to_device(batch, device)).float().item() * b
        n += b
    model.train(was_training)
    if n == 0:
        raise ValueError("The evaluation loader yielded no batches.")
    return {"loss": total / n}


def lr_multiplier(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine/linear decay to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - (1.0 - min_ratio) * progress
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay only on matrices (not on biases, LayerNorm or 1-d parameters).

    The fused implementation (one kernel over all parameters, as `Trainer`'s default
    "adamw_torch_fused") where PyTorch has it for every parameter's device and dtype: on a
    CPU it updates MiniLM's 22.7 M parameters about 8x faster than the per-tensor loop, which
    was a tenth of a fine-tuning step's time."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                 and p.dtype != torch.float64 for p in params)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=fused or None)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA where supported, else fp16; None (full precision) off CUDA or when "no".

    On a CPU, "bf16" autocasts to bf16 when asked for explicitly, and "auto" does so in the
    rehearsal (`runtime.rehearsing()`), so the GPU's mixed-precision path runs on a CPU too."""
    if config.mixed_precision == "no":
        return None
    if device.type == "cpu":
        from .runtime import rehearsing

        wanted = config.mixed_precision == "bf16" or (
            config.mixed_precision == "auto" and rehearsing())
        return torch.bfloat16 if wanted else None
    if device.type != "cuda":
        return None
    if config.mixed_precision == "bf16" or (
        config.mixed_precision == "auto" and torch.cuda.is_bf16_supported()
    ):
        return torch.bfloat16
    return torch.float16


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


# --- checkpoints ---------------------------------------------------------------------------


def _unique_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict without tied duplicates (safetensors refuses shared storage) + the aliases."""
    tensors, aliases, seen = {}, {}, {}
    for k, v in model.state_dict().items():
        key = (v.data_ptr(), v.shape, v.stride()) if v.numel() else None
        if key is not None and key in seen:
            aliases[k] = seen[key]
        else:
            if key is not None:
                seen[key] = k
            tensors[k] = v.detach().contiguous()
    return tensors, aliases


def _atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old or the new file


def _unreadable(path: Path, why: str) -> ValueError:
    return ValueError(
        f"{path} is not a readable checkpoint ({why}): it is corrupt or truncated, e.g. by a "
        "full disk or a copy that stopped. Delete it, or pass TrainConfig(resume=False) to "
        "start over (it overwrites it)."
    )


def read_checkpoint(path: str | Path, required: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors checkpoint, or a ValueError that names the fix.

    Reads everything before anything is copied anywhere, so a bad file changes nothing."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise _unreadable(path, f"{type(err).__name__}: {str(err)[:120]}") from err
    missing = [k for k in required if k not in meta]
    if missing:
        raise _unreadable(path, f"metadata has no {', '.join(missing)}")
    try:
        for k in ("aliases", "info", *required):
            if k in meta:
                json.loads(meta[k])
    except ValueError as err:
        raise _unreadable(path, f"metadata is not JSON: {err}") from err
    return tensors, meta


def check_model_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Raise a ValueError (and change nothing) unless `state` has exactly the model's keys and
    shapes: a checkpoint of another architecture or size is refused before any copy."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape(s) differ (e.g. {shapes[0]})")
        if missing:
            parts.append(f"{len(missing)} weight(s) missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise ValueError(
            f"{path} holds weights of another architecture or size ({'; '.join(parts)}); the "
            "model was left unchanged. Load it into the model it was saved from, use another "
            "checkpoint_dir, or pass TrainConfig(resume=False) to start over (it overwrites it)."
        )


def _model_part(tensors: dict[str, torch.Tensor], meta: dict) -> dict[str, torch.Tensor]:
    if "trainer" in meta:  # a save_checkpoint file: model.*, optim.*, rng.*
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    else:  # a save_weights file: the state dict itself
        state = dict(tensors)
    for alias, original in json.loads(meta.get("aliases", "{}")).items():
        if original in state:
            state[alias] = state[original]
    return state


def provenance() -> dict[str, str | None]:
    """Which profile and notebook are writing (from the running `lab.setup`), for the
    metadata of every checkpoint."""
    from .runtime import CURRENT

    cfg = CURRENT.get("cfg")
    return {"profile": cfg.profile if cfg else None,
            "origin": f"notebook {cfg.notebook}" if cfg else "python"}


def save_weights(model: nn.Module, path: str | Path, info: dict | None = None) -> None:
    """Model weights only (safetensors, atomic); `info` goes into the metadata as JSON."""
    tensors, aliases = _unique_state(model)
    meta = {"aliases": json.dumps(aliases), "info": json.dumps(info or {}),
            "provenance": json.dumps(provenance())}
    _atomic_save(tensors, meta, Path(path))


def load_weights(model: nn.Module, path: str | Path) -> dict:
    """Load weights saved by `save_weights` (or a checkpoint's model part); returns its info.

    A corrupt file or one of another architecture raises a ValueError naming the fix, and
    leaves the model as it was."""
    tensors, meta = read_checkpoint(path)
    state = _model_part(tensors, meta)
    check_model_state(model, state, path)
    model.load_state_dict(state)
    return json.loads(meta.get("info", meta.get("trainer", "{}")))


def rng_state() -> dict[str, Any]:
    """Random-number-generator states (torch CPU, CUDA, python) to store in a checkpoint."""
    state: dict[str, Any] = {"rng.torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"rng.cuda.{i}"] = s
    return state


def set_rng_state(state: dict[str, Any], torch_too: bool = True) -> None:
    """Restore what `rng_state()` returned (or what a checkpoint stored)."""
    if torch_too:
        torch.set_rng_state(state["rng.torch"])
        cuda = [state[k] for k in sorted(state) if k.startswith("rng.cuda.")]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: str | Path, model: nn.Module, optimizer, scheduler, scaler,
                    trainer_state: dict, rng: dict[str, Any] | None = None) -> None:
    """Everything needed to resume: model, optimizer, scheduler, scaler, RNG, loop position.

    `rng` (from `rng_state()`) defaults to the current state; `fit` passes the state it had
    at the last completed step, so a Ctrl-C in the middle of a step resumes exactly.
    """
    rng = rng or rng_state()
    tensors, aliases = _unique_state(model)
    tensors = {f"model.{k}": v for k, v in tensors.items()}
    opt = optimizer.state_dict()
    for idx, s in opt["state"].items():
        for name, v in s.items():
            tensors[f"optim.{idx}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    tensors.update({k: v for k, v in rng.items() if k.startswith("rng.")})
    meta = {
        "aliases": json.dumps(aliases),
        "param_groups": json.dumps(opt["param_groups"]),
        "scheduler": json.dumps(scheduler.state_dict()),
        "scaler": json.dumps(scaler.state_dict() if scaler is not None else {}),
        "python_rng": json.dumps(rng["python"]),
        "trainer": json.dumps(trainer_state),
        "provenance": json.dumps(provenance()),
    }
    _atomic_save(tensors, meta, Path(path))


_CHECKPOINT_KEYS = ("aliases", "param_groups", "scheduler", "scaler", "python_rng", "trainer")


def _optimizer_part(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": json.loads(meta["param_groups"])}


def check_optimizer_state(optimizer, saved: dict, path: str | Path) -> None:
    """Raise a ValueError (changing nothing) unless the saved optimizer state fits `optimizer`:
    the same parameter groups, sizes, and moment tensors shaped like their parameters."""
    groups = saved["param_groups"]
    now = [len(g["params"]) for g in optimizer.param_groups]
    then = [len(g["params"]) for g in groups]
    bad = []
    if now != then:
        bad.append(f"parameter groups hold {then} tensors in the file, {now} here (other "
                   "frozen or trainable layers?)")
    else:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        ids = [i for g in groups for i in g["params"]]
        for i, p in zip(ids, params):
            for name, v in saved["state"].get(i, {}).items():
                if v.ndim and v.shape != p.shape:
                    bad.append(f"{name} of parameter {i}: {tuple(v.shape)} vs {tuple(p.shape)}")
                    break
    if bad:
        raise ValueError(
            f"{path}: the optimizer state does not fit this model ({bad[0]}); nothing was "
            "loaded. Use another checkpoint_dir, or pass TrainConfig(resume=False) to start "
            "over (it overwrites it)."
        )


def _rng_part(tensors: dict[str, torch.Tensor], meta: dict) -> dict[str, Any]:
    rng: dict[str, Any] = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    rng["python"] = json.loads(meta["python_rng"])
    return rng


def _apply_checkpoint(tensors, meta, model, optimizer=None, scheduler=None, scaler=None) -> dict:
    """Copy a validated checkpoint into model, optimizer, scheduler and scaler."""
    model.load_state_dict(_model_part(tensors, meta))
    if optimizer is not None:
        optimizer.load_state_dict(_optimizer_part(tensors, meta))
    if scheduler is not None:
        scheduler.load_state_dict(json.loads(meta["scheduler"]))
    if scaler is not None and json.loads(meta["scaler"]):
        scaler.load_state_dict(json.loads(meta["scaler"]))
    return json.loads(meta["trainer"])


def load_checkpoint(path: str | Path, model: nn.Module, optimizer=None, scheduler=None,
                    scaler=None, restore_rng: bool = True) -> dict:
    """Restore what `save_checkpoint` wrote; returns the trainer state (step, epoch, ...).

    The file is read and checked against the model and optimizer first: a corrupt file, or
    one of another architecture, raises a ValueError naming the fix and changes nothing."""
    tensors, meta = read_checkpoint(path, _CHECKPOINT_KEYS)
    check_model_state(model, _model_part(tensors, meta), path)
    if optimizer is not None:
        check_optimizer_state(optimizer, _optimizer_part(tensors, meta), path)
    trainer = _apply_checkpoint(tensors, meta, model, optimizer, scheduler, scaler)
    if restore_rng:
        set_rng_state(_rng_part(tensors, meta))
    return trainer


@contextmanager
def _held_interrupt():
    """Hold Ctrl-C until the block ends, so bookkeeping that belongs together (an optimizer
    step and the step counter; an evaluation's best-model record) is never half done. Only in
    the main thread (the only one that receives SIGINT)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt


# --- the loop --------------------------------------------------------------------------------


def fit(
    model: nn.Module,
    train_loader: Iterable,
    config: TrainConfig = TrainConfig(),
    eval_loader: Iterable | None = None,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] = model_loss,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
) -> History:
    """Train `model` on `train_loader` (see the module docstring for the contract)."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}: "
                        "use fit(model, loader, TrainConfig(epochs=..., lr=...)).")
    device = torch.device(config.device) if config.device else next(model.parameters()).device
    try:
        batches_per_epoch = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        batches_per_epoch = None
    if config.max_steps is None and batches_per_epoch is None:
        raise ValueError("train_loader has no length: set TrainConfig.max_steps.")
    if batches_per_epoch == 0:
        raise ValueError("train_loader yields no batches: the training split is empty (or "
                         "smaller than one batch that is dropped). Pass more training rows "
                         "(a larger n_train), or a smaller batch size.")
    accum = config.grad_accum_steps
    steps_per_epoch = math.ceil(batches_per_epoch / accum) if batches_per_epoch else None
    total = config.max_steps or config.epochs * steps_per_epoch
    warmup = (round(config.warmup_steps * total) if isinstance(config.warmup_steps, float)
              else config.warmup_steps)
    if eval_fn is None and eval_loader is not None:
        def eval_fn(m: nn.Module) -> dict[str, float]:
            return evaluate_loss(m, eval_loader, loss_fn, device)

    model.to(device)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_multiplier(s, total, warmup, config.schedule, config.min_lr_ratio),
    )
    amp = autocast_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    hist = History()
    # Everything the loop must carry across an interruption lives in `state` (saved as JSON
    # in every checkpoint): the position, the best-model and early-stopping bookkeeping, the
    # partial training-loss average of the current log window, and whether an evaluation was
    # under way (a Ctrl-C during it: the resumed run redoes it).
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_metric": None, "best_step": None,
             "bad_evals": 0, "examples": 0, "train_seconds": 0.0, "history_train": [],
             "history_eval": [], "total_steps": total, "config": asdict(config),
             "running_loss": 0.0, "running_n": 0, "pending_eval": False}
    rng_resume = None
    if ckpt_dir is not None and config.resume and (ckpt_dir / LAST).exists():
        # Read and check everything first: a refused resume leaves model and optimizer as
        # they were. RNG only after the data iterator has been rebuilt (below).
        path = ckpt_dir / LAST
        tensors, meta = read_checkpoint(path, _CHECKPOINT_KEYS)
        saved = json.loads(meta["trainer"])
        # Only resume the same run: same schedule and the same training knobs.
        now = json.loads(json.dumps(asdict(config)))
        then = saved.get("config", {})
        changed = [k for k in now if k not in _FREE_KNOBS and then.get(k) != now[k]]
        if saved.get("total_steps") != total or changed:
            what = ", ".join(f"{k}: {then.get(k)!r} -> {now[k]!r}" for k in changed)
            raise ValueError(
                f"{path} belongs to another run ({saved.get('total_steps')} steps "
                f"there, {total} here{'; ' + what if what else ''}). Use another "
                "checkpoint_dir, or TrainConfig(resume=False) to start over (it overwrites it)."
            )
        check_model_state(model, _model_part(tensors, meta), path)
        check_optimizer_state(optimizer, _optimizer_part(tensors, meta), path)
        _apply_checkpoint(tensors, meta, model, optimizer, scheduler, scaler)
        state.update({k: v for k, v in saved.items() if k != "config"})
        rng_resume = _rng_part(tensors, meta)
        del tensors
        hist.resumed_from_step = state["step"]
        redo = " (redoing the evaluation that was interrupted)" if state["pending_eval"] else ""
        print(f"Resuming from {path} at step {state['step']}/{total}{redo}.")
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    best_in_memory: dict[str, torch.Tensor] | None = None
    better = (lambda a, b: a > b) if config.greater_is_better else (lambda a, b: a < b)
    rng = rng_state()

    def checkpoint() -> None:
        if ckpt_dir is not None:
            save_checkpoint(ckpt_dir / LAST, model, optimizer, scheduler, scaler, state, rng)

    def evaluate() -> bool:
        """Run eval_fn; keep the best; return True when early stopping says stop.

        Called with state["pending_eval"] True. A Ctrl-C inside eval_fn changes nothing, so
        the checkpoint saved then says "evaluation pending" and the resumed run redoes it."""
        nonlocal best_in_memory, rng
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            metrics = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        if config.metric not in metrics:
            raise KeyError(f"eval_fn returned {sorted(metrics)}, but TrainConfig.metric is "
                           f"{config.metric!r}; set metric= to one of those keys.")
        value = metrics[config.metric]
        improved = state["best_metric"] is None or better(value, state["best_metric"])
        best = None
        if improved and ckpt_dir is not None:  # atomic: a Ctrl-C here keeps the old file
            save_weights(model, ckpt_dir / BEST, {"step": state["step"], **metrics})
        elif improved and config.restore_best:
            best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        with _held_interrupt():
            state["history_eval"].append({"step": state["step"], "epoch": state["epoch"],
                                          **metrics})
            if improved:
                state.update(best_metric=value, best_step=state["step"], bad_evals=0)
                best_in_memory = best if best is not None else best_in_memory
            else:
                state["bad_evals"] += 1
            state["pending_eval"] = False
            rng = rng_state()  # the step boundary now lies after the evaluation
        bar.set_postfix_str(" ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        patience = config.early_stopping_patience
        return patience is not None and state["bad_evals"] >= patience

    def save_due(evaluated: bool) -> bool:
        step = state["step"]
        return bool(config.save_every and step % config.save_every == 0) or (
            not config.save_every and evaluated)

    model.train()
    bar = tqdm(total=total, initial=state["step"], desc="train", disable=not config.progress,
               dynamic_ncols=True)
    stop = False
    try:
        if state["pending_eval"]:
            # Ctrl-C hit this evaluation last time: redo it from the RNG it started with.
            set_rng_state(rng_resume)
            stop = evaluate()
            rng_resume = rng
            if state["step"] < total and not stop and save_due(True):
                checkpoint()
        while state["step"] < total and not stop:
            # Re-seed per epoch: the shuffle order depends only on (seed, epoch), so a resumed
            # run sees the same batches as an uninterrupted one.
            torch.manual_seed(config.seed + state["epoch"])
            skip = state["batch_in_epoch"]
            it = iter(train_loader)
            for _ in range(skip):
                next(it)
            if rng_resume is not None:  # dropout etc. continue exactly where they stopped
                # At an epoch's start the torch RNG is the one just seeded (as in a run never
                # interrupted); only Python's own RNG comes from the checkpoint then.
                set_rng_state(rng_resume, torch_too=skip > 0)
            rng_resume = None
            rng = rng_state()  # RNG as of the last step boundary, for checkpoints
            micro, examples, step_loss = 0, 0, 0.0
            exhausted = False
            t0 = time.perf_counter()
            for i, batch in enumerate(it, start=skip):
                # Forward and backward only touch .grad: a Ctrl-C here loses nothing.
                batch = to_device(batch, device)
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    loss = loss_fn(model, batch)
                step_loss += loss.detach().float().item()
                loss = loss / accum
                (scaler.scale(loss) if scaler else loss).backward()
                micro += 1
                examples += batch_size_of(batch)
                last_batch = batches_per_epoch is not None and i + 1 == batches_per_epoch
                if micro < accum and not last_batch:
                    continue
                with _held_interrupt():  # the update and its bookkeeping happen together
                    _optimizer_step(model, optimizer, scaler, config.max_grad_norm)
                    scheduler.step()
                    state["step"] += 1
                    step = state["step"]
                    state["batch_in_epoch"] = i + 1
                    state["train_seconds"] += time.perf_counter() - t0
                    state["examples"] += examples
                    state["running_loss"] += step_loss / micro
                    state["running_n"] += 1
                    if step % config.log_every == 0 or step == total:
                        mean = state["running_loss"] / state["running_n"]
                        state["history_train"].append(
                            {"step": step, "epoch": state["epoch"], "loss": mean,
                             "lr": scheduler.get_last_lr()[0]})
                        bar.set_description(f"train loss {mean:.4g}")
                        state["running_loss"], state["running_n"] = 0.0, 0
                    evaluating = bool(eval_fn is not None and config.eval_every
                                      and step % config.eval_every == 0)
                    state["pending_eval"] = evaluating
                    rng = rng_state()  # RNG as of this step boundary, for checkpoints
                    bar.update(1)
                micro, examples, step_loss = 0, 0, 0.0
                if evaluating:
                    stop = evaluate()
                if step >= total or stop:
                    break
                if save_due(evaluating):
                    checkpoint()
                t0 = time.perf_counter()
            else:
                exhausted = True
            if exhausted or state["batch_in_epoch"] == batches_per_epoch:
                with _held_interrupt():
                    optimizer.zero_grad(set_to_none=True)  # drop a half-accumulated tail
                    state["epoch"] += 1
                    state["batch_in_epoch"] = 0
        # Final evaluation (unless the last step just ran one), then the last checkpoint.
        last_eval = state["history_eval"][-1]["step"] if state["history_eval"] else None
        if eval_fn is not None and last_eval != state["step"]:
            state["pending_eval"] = True
            stop = evaluate() or stop
        checkpoint()
        hist.stopped_early = stop and state["step"] < total
    except KeyboardInterrupt:
        # Parameters, optimizer and `state` are exactly at the last completed step (a
        # half-accumulated step only touched .grad; an evaluation under way is marked pending
        # and redone on resume), so that is what gets saved.
        hist.interrupted = True
        checkpoint()
        where = f" to {ckpt_dir / LAST}" if ckpt_dir else " (no checkpoint_dir: nothing saved)"
        print(f"\nInterrupted at step {state['step']}; saved{where}.")
    finally:
        bar.close()

    if config.restore_best and state["best_step"] is not None and not hist.interrupted:
        if ckpt_dir is not None and (ckpt_dir / BEST).exists():
            load_weights(model, ckpt_dir / BEST)
        elif best_in_memory is not None:
            model.load_state_dict(best_in_memory)
    hist.train, hist.eval = state["history_train"], state["history_eval"]
    hist.steps, hist.examples = state["step"], state["examples"]
    hist.train_seconds = state["train_seconds"]
    hist.examples_per_s = state["examples"] / max(state["train_seconds"], 1e-9)
    hist.peak_memory_mb = peak_memory_mb(device)
    hist.best_metric, hist.best_step = state["best_metric"], state["best_step"]
    return hist


def _optimizer_step(model: nn.Module, optimizer, scaler, max_grad_norm: float | None) -> None:
    if scaler is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    if max_grad_norm:
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
