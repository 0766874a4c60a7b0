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
import sys
import time
from collections.abc import Callable, Iterable
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
    """AdamW; weight decay only on matrices (not on biases, LayerNorm or 1-d parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA where supported, else fp16; None (full precision) off CUDA or when "no"."""
    if device.type != "cuda" or config.mixed_precision == "no":
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


def save_weights(model: nn.Module, path: str | Path, info: dict | None = None) -> None:
    """Model weights only (safetensors, atomic); `info` goes into the metadata as JSON."""
    tensors, aliases = _unique_state(model)
    meta = {"aliases": json.dumps(aliases), "info": json.dumps(info or {})}
    _atomic_save(tensors, meta, Path(path))


def load_weights(model: nn.Module, path: str | Path) -> dict:
    """Load weights saved by `save_weights` (or a checkpoint's model part); returns its info."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    tensors = load_file(str(path))
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")} or tensors
    _load_model_state(model, state, json.loads(meta.get("aliases", "{}")))
    return json.loads(meta.get("info", meta.get("trainer", "{}")))


def _load_model_state(model: nn.Module, state: dict, aliases: dict[str, str]) -> None:
    for alias, original in aliases.items():
        state[alias] = state[original]
    model.load_state_dict(state)


def rng_state() -> dict[str, Any]:
    """Random-number-generator states (torch CPU, CUDA, python) to store in a checkpoint."""
    state: dict[str, Any] = {"rng.torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"rng.cuda.{i}"] = s
    return state


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
    }
    _atomic_save(tensors, meta, Path(path))


def load_checkpoint(path: str | Path, model: nn.Module, optimizer=None, scheduler=None,
                    scaler=None, restore_rng: bool = True) -> dict:
    """Restore what `save_checkpoint` wrote; returns the trainer state (step, epoch, ...)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    _load_model_state(model, model_state, json.loads(meta["aliases"]))
    if optimizer is not None:
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, name = k.split(".", 2)
                state.setdefault(int(idx), {})[name] = v
        optimizer.load_state_dict({"state": state,
                                   "param_groups": json.loads(meta["param_groups"])})
    if scheduler is not None:
        scheduler.load_state_dict(json.loads(meta["scheduler"]))
    if scaler is not None and json.loads(meta["scaler"]):
        scaler.load_state_dict(json.loads(meta["scaler"]))
    if restore_rng:
        _restore_rng(path)
    return json.loads(meta["trainer"])


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
    device = torch.device(config.device) if config.device else next(model.parameters()).device
    model.to(device)
    try:
        batches_per_epoch = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        batches_per_epoch = None
    if config.max_steps is None and batches_per_epoch is None:
        raise ValueError("train_loader has no length: set TrainConfig.max_steps.")
    accum = config.grad_accum_steps
    steps_per_epoch = math.ceil(batches_per_epoch / accum) if batches_per_epoch else None
    total = config.max_steps or config.epochs * steps_per_epoch
    warmup = (round(config.warmup_steps * total) if isinstance(config.warmup_steps, float)
              else config.warmup_steps)
    if eval_fn is None and eval_loader is not None:
        def eval_fn(m: nn.Module) -> dict[str, float]:
            return evaluate_loss(m, eval_loader, loss_fn, device)

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
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_metric": None, "best_step": None,
             "bad_evals": 0, "examples": 0, "train_seconds": 0.0, "history_train": [],
             "history_eval": [], "total_steps": total, "config": asdict(config)}
    rng_resume = None
    if ckpt_dir is not None and config.resume and (ckpt_dir / LAST).exists():
        # Model/optimizer now; RNG only after the data iterator has been rebuilt (below).
        saved = load_checkpoint(ckpt_dir / LAST, model, optimizer, scheduler, scaler,
                                restore_rng=False)
        # Only resume the same run: same schedule and the same training knobs.
        now = json.loads(json.dumps(asdict(config)))
        changed = [k for k in now if k not in _FREE_KNOBS and saved["config"].get(k) != now[k]]
        if saved.get("total_steps") != total or changed:
            what = ", ".join(f"{k}: {saved['config'].get(k)!r} -> {now[k]!r}" for k in changed)
            raise ValueError(
                f"{ckpt_dir / LAST} belongs to another run ({saved.get('total_steps')} steps "
                f"there, {total} here{'; ' + what if what else ''}). Use another "
                "checkpoint_dir, or TrainConfig(resume=False) to start over (it overwrites it)."
            )
        state.update({k: v for k, v in saved.items() if k != "config"})
        hist.resumed_from_step = state["step"]
        rng_resume = ckpt_dir / LAST
        print(f"Resuming from {ckpt_dir / LAST} at step {state['step']}/{total}.")
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    best_in_memory: dict[str, torch.Tensor] | None = None
    better = (lambda a, b: a > b) if config.greater_is_better else (lambda a, b: a < b)

    def checkpoint() -> None:
        if ckpt_dir is not None:
            save_checkpoint(ckpt_dir / LAST, model, optimizer, scheduler, scaler, state, rng)

    def evaluate() -> bool:
        """Run eval_fn; keep the best; return True when early stopping says stop."""
        nonlocal best_in_memory
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            metrics = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        if config.metric not in metrics:
            raise KeyError(f"eval_fn returned {sorted(metrics)}, but TrainConfig.metric is "
                           f"{config.metric!r}; set metric= to one of those keys.")
        row = {"step": state["step"], "epoch": state["epoch"], **metrics}
        state["history_eval"].append(row)
        value = metrics[config.metric]
        if state["best_metric"] is None or better(value, state["best_metric"]):
            state.update(best_metric=value, best_step=state["step"], bad_evals=0)
            if ckpt_dir is not None:
                save_weights(model, ckpt_dir / BEST, {"step": state["step"], **metrics})
            elif config.restore_best:
                best_in_memory = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["bad_evals"] += 1
        bar.set_postfix_str(" ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        patience = config.early_stopping_patience
        return patience is not None and state["bad_evals"] >= patience

    model.train()
    bar = tqdm(total=total, initial=state["step"], desc="train", disable=not config.progress,
               dynamic_ncols=True)
    running, running_n = 0.0, 0
    stop = False
    rng = rng_state()
    try:
        while state["step"] < total and not stop:
            # Re-seed per epoch: the shuffle order depends only on (seed, epoch), so a resumed
            # run sees the same batches as an uninterrupted one.
            torch.manual_seed(config.seed + state["epoch"])
            skip = state["batch_in_epoch"]
            it = iter(train_loader)
            for _ in range(skip):
                next(it)
            if rng_resume is not None:  # dropout etc. continue exactly where they stopped
                _restore_rng(rng_resume)
                rng_resume = None
            rng = rng_state()  # RNG as of the last step boundary, for checkpoints
            micro, examples, step_loss = 0, 0, 0.0
            exhausted = False
            t0 = time.perf_counter()
            for i, batch in enumerate(it, start=skip):
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
                _optimizer_step(model, optimizer, scaler, config.max_grad_norm)
                scheduler.step()
                state["step"] += 1
                state["batch_in_epoch"] = i + 1
                state["train_seconds"] += time.perf_counter() - t0
                state["examples"] += examples
                running += step_loss / micro
                running_n += 1
                micro, examples, step_loss = 0, 0, 0.0
                bar.update(1)
                step = state["step"]
                if step % config.log_every == 0 or step == total:
                    state["history_train"].append(
                        {"step": step, "epoch": state["epoch"], "loss": running / running_n,
                         "lr": scheduler.get_last_lr()[0]})
                    bar.set_description(f"train loss {running / running_n:.4g}")
                    running, running_n = 0.0, 0
                evaluated = False
                if eval_fn is not None and config.eval_every and step % config.eval_every == 0:
                    stop = evaluate()
                    evaluated = True
                rng = rng_state()  # RNG as of this step boundary, for checkpoints
                if step >= total or stop:
                    break
                if (config.save_every and step % config.save_every == 0) or (
                    not config.save_every and evaluated
                ):
                    checkpoint()
                t0 = time.perf_counter()
            else:
                exhausted = True
            if exhausted or state["batch_in_epoch"] == batches_per_epoch:
                optimizer.zero_grad(set_to_none=True)  # drop a half-accumulated tail
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
        # Final evaluation (unless the last step just ran one), then the last checkpoint.
        last_eval = state["history_eval"][-1]["step"] if state["history_eval"] else None
        if eval_fn is not None and last_eval != state["step"]:
            stop = evaluate() or stop
        checkpoint()
        hist.stopped_early = stop and state["step"] < total
    except KeyboardInterrupt:
        # Parameters and optimizer are exactly at the last completed step (a half-accumulated
        # step only touched .grad), so that is what gets saved.
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


def _restore_rng(path: str | Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        torch.set_rng_state(f.get_tensor("rng.torch"))
        cuda = [f.get_tensor(k) for k in sorted(f.keys()) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = json.loads(meta["python_rng"])
    random.setstate((version, tuple(internal), gauss))
