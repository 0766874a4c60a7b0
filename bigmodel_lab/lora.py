"""LoRA: a low-rank update beside a frozen linear layer, written by hand, then with `peft`.

A frozen weight W (out x in) gets a trainable update of rank r (Hu et al., 2021):

    h = W x + (alpha / r) * B A dropout(x),     A: (r x in), B: (out x r), B = 0 at the start

so training starts from the pretrained model exactly, and only r (in + out) numbers per layer
learn. After training the update can be merged, W' = W + (alpha / r) B A, and inference costs
nothing extra; unmerging subtracts it again. `LoRALinear` stores A and B the way `peft` does
(`lora_A.weight` is r x in, `lora_B.weight` is out x r), so the same matrices give the same
output in both (tests/test_lora.py).

The rest is what a notebook needs around `peft`: wrap a causal LM (`peft_lora`), count what
trains, the loss on the answer tokens only (`answer_loss`), save and reload an adapter
atomically, and a guarded QLoRA loader (bitsandbytes, CUDA only).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# The linear layers of a Llama block (attention and MLP): "all linear layers" in the LoRA paper's
# later practice (QLoRA, Dettmers et al., 2023), the lm_head excluded.
LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoRAConfig:
    """Rank, scale and dropout of the update, and which linear layers (by name suffix) get one."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = LLAMA_LINEAR

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"LoRA rank r must be a positive integer, got {self.r!r}: "
                             "use e.g. r=8.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}: use e.g. 0.05.")

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


# ---------------------------------------------------------------------------- from scratch
class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update (alpha / r) B A."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}: "
                            "wrap the model's linear layers (e.g. q_proj), not the block.")
        config = LoRAConfig(r=r, alpha=alpha, dropout=dropout)  # validates r and dropout
        self.base = base
        self.base.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, config.scaling
        self.lora_A = nn.Linear(base.in_features, r, bias=False)  # weight (r, in)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)  # weight (out, r)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # peft's init: A like nn.Linear (Kaiming uniform), B zero, so B A = 0 at the start.
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.lora_A.to(self.base.weight)
        self.lora_B.to(self.base.weight)

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A, the (out, in) update."""
        return self.scaling * self.lora_B.weight @ self.lora_A.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        return out + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + (alpha / r) B A: the same outputs (without dropout), no extra cost."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge` (W <- W - (alpha / r) B A), e.g. to keep training the update."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, merged={self.merged}"


def add_lora(model: nn.Module, config: LoRAConfig = LoRAConfig()) -> list[str]:
    """Freeze `model` and replace each nn.Linear whose name ends with a target by a LoRALinear.

    Returns the names replaced; raises when none matched (the names to target are printed).
    """
    model.requires_grad_(False)
    names = [n for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and n.split(".")[-1] in config.target_modules]
    if not names:
        linear = sorted({n.split(".")[-1] for n, m in model.named_modules()
                         if isinstance(m, nn.Linear)})
        raise ValueError(f"No nn.Linear named {config.target_modules} in the model; its linear "
                         f"layers are named {linear}: pass some of them as target_modules.")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), config.r, config.alpha,
                                          config.dropout))
    return names


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights counted once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


# ---------------------------------------------------------------------------- with peft
@contextmanager
def _quiet_peft():
    """peft 0.21 reads `model.is_gradient_checkpointing`, which transformers 5 deprecates with a
    FutureWarning on every wrap: the library pair's warning, not the reader's code."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*deprecated",
                                category=FutureWarning)
        yield


def lora_parameters(model: nn.Module) -> int:
    """Parameters of the LoRA adapters (A and B matrices), frozen or not."""
    return sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)


def peft_lora(model: nn.Module, config: LoRAConfig = LoRAConfig(),
              gradient_checkpointing: bool = False):
    """`model` wrapped by peft with a LoRA adapter on the target linear layers (task CAUSAL_LM).

    Activation checkpointing recomputes each block's activations in the backward pass instead
    of keeping them: about 40% more time for about 30% less peak memory with SmolLM2-135M at
    batch 8 x 64 (measured on 2 cores: 1.6 s and 2.3 GB per step without, 2.3 s and 1.6 GB with).
    """
    from peft import LoraConfig, get_peft_model

    from .runtime import warn_if_bf16_is_slow

    warn_if_bf16_is_slow(model)  # an AVX2-only CPU multiplies bf16 several times slower
    if gradient_checkpointing:
        # use_reentrant=False: gradients reach the adapters though the embeddings are frozen.
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    lora = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM",
                      bias="none")
    with _quiet_peft():
        return get_peft_model(model, lora)


def answer_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Cross-entropy on the answer tokens only (labels -100 elsewhere), computing logits only
    for the last positions (`logits_to_keep`) instead of all T x 49,152 of them.

    Needs left padding, so every answer ends at the last position; equal to the Hugging Face
    loss `model(**batch).loss` on the same labels (tests/test_lora.py).
    """
    labels = batch["labels"]
    answer = labels != -100
    if not answer.any():
        raise ValueError("Every label is -100: no answer tokens to learn from. Build the batch "
                         "with prompting.sft_example (the answer must not be masked).")
    if answer[:, -1].sum() < answer.any(dim=1).sum():
        raise ValueError("An answer does not end at the last position: pad on the left "
                         "(prompting.collate_left(...)), not on the right.")
    # The first answer token in the batch sits `keep - 1` positions from the end.
    first = int(answer.float().argmax(dim=1)[answer.any(dim=1)].min())
    keep = labels.shape[1] - first + 1
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                position_ids=batch.get("position_ids"), logits_to_keep=keep)
    logits = out.logits[:, :-1]  # (B, keep - 1, V): position t predicts token t + 1
    target = labels[:, -(keep - 1):]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                           ignore_index=-100)


# ---------------------------------------------------------------------------- adapters on disk
def save_adapter(model, folder: str | os.PathLike, info: dict) -> Path:
    """Save a peft adapter (+ info.json, written last) to `folder` without ever losing the
    one there (`runtime.replace_folder`: a hidden copy, then renames)."""
    from .runtime import replace_folder

    def write(new: Path) -> None:
        model.save_pretrained(new)
        (new / "info.json").write_text(json.dumps(info, indent=1, sort_keys=True, default=str))

    return replace_folder(folder, write, "info.json")


def read_adapter_info(folder: str | os.PathLike) -> dict | None:
    """info.json of a saved adapter, or None when there is no complete adapter there."""
    from .runtime import recover_interrupted_write

    folder = Path(folder)
    if folder.parent.exists():
        recover_interrupted_write(folder, "info.json")  # a save killed halfway
    if not (folder / "info.json").exists() or not (folder / "adapter_config.json").exists():
        return None
    try:
        return json.loads((folder / "info.json").read_text())
    except ValueError:
        return None


def load_adapter(model: nn.Module, folder: str | os.PathLike, trainable: bool = False):
    """`model` with the adapter saved in `folder` (peft `PeftModel.from_pretrained`)."""
    from peft import PeftModel

    with _quiet_peft():
        return PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)


def adapter_size_mb(folder: str | os.PathLike) -> float:
    """Size on disk of the adapter weights (what you would ship beside the base model)."""
    files = list(Path(folder).glob("adapter_model.*"))
    if not files:
        raise FileNotFoundError(f"No adapter_model.* in {folder}: save one with save_adapter.")
    return sum(f.stat().st_size for f in files) / 2**20


# ---------------------------------------------------------------------------- QLoRA (CUDA only)
def qlora_available() -> tuple[bool, str]:
    """(True, "") when 4-bit QLoRA can run here: CUDA and bitsandbytes; else (False, why)."""
    if not torch.cuda.is_available():
        return False, "no CUDA device: QLoRA's 4-bit kernels (bitsandbytes) need a GPU"
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False, "bitsandbytes is not installed (pip install bitsandbytes, on a CUDA machine)"
    return True, ""


def load_causal_lm_4bit(name: str):
    """(model, tokenizer): `name` loaded in 4-bit NF4 with bf16 compute, ready for LoRA (QLoRA,
    Dettmers et al., 2023). Only where `qlora_available()`; elsewhere a clear error."""
    ok, why = qlora_available()
    if not ok:
        raise RuntimeError(f"QLoRA is not available: {why}. Use peft_lora on the fp32 model "
                           "instead (the cpu profile does).")
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_compute_dtype=torch.bfloat16,
                               bnb_4bit_use_double_quant=True)
    model = AutoModelForCausalLM.from_pretrained(name, quantization_config=quant,
                                                 device_map={"": 0})
    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return prepare_model_for_kbit_training(model), tokenizer


def config_dict(config: LoRAConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


# ---------------------------------------------------------------------------- exercise checks
def check_lora_forward(fn, quiet: bool = False):
    """fn(x, weight, bias, A, B, alpha) -> W x + b + (alpha / r) B A x, compared with LoRALinear."""
    from .exercises import _call, _Failed, _run_check

    def body() -> str:
        g = torch.Generator().manual_seed(3)
        base = nn.Linear(6, 4)
        ours = LoRALinear(base, r=2, alpha=5.0)
        with torch.no_grad():
            ours.lora_B.weight.copy_(torch.randn(4, 2, generator=g))
        x = torch.randn(3, 6, generator=g)
        got = _call(fn, x, base.weight.detach(), base.bias.detach(), ours.lora_A.weight.detach(),
                    ours.lora_B.weight.detach(), 5.0)
        if got is None:
            raise _Failed("return the output tensor, shape (3, 4).")
        want = ours(x).detach()
        if not torch.is_tensor(got) or got.shape != want.shape:
            raise _Failed(f"expected a tensor of shape {tuple(want.shape)}, got "
                          f"{getattr(got, 'shape', type(got).__name__)}.")
        if not torch.allclose(got, want, atol=1e-5):
            scaled = torch.allclose(got - base(x).detach(), (want - base(x).detach()) * 2 / 5,
                                    atol=1e-5)
            hint = " (scale the update by alpha / r, not by 1)" if scaled else ""
            raise _Failed(f"max difference {float((got - want).abs().max()):.3g} from "
                          f"LoRALinear{hint}.")
        return "your LoRA forward equals LoRALinear (and so peft) on a 6 -> 4 layer, r = 2."

    return _run_check(body, quiet)


def peft_equivalence(base: nn.Linear, r: int = 8, alpha: float = 16.0, seed: int = 0) -> dict:
    """Wrap a copy of `base` by hand and with peft, give both the same random A and B, and
    return the largest output differences: ours vs peft, merged vs not, unmerged vs base."""
    import copy

    from peft import LoraConfig, get_peft_model

    base = copy.deepcopy(base).float()
    ours = LoRALinear(copy.deepcopy(base), r=r, alpha=alpha)
    theirs = get_peft_model(nn.Sequential(copy.deepcopy(base)),
                            LoraConfig(r=r, lora_alpha=alpha, target_modules=["0"]))
    layer = theirs.base_model.model[0]
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(r, base.in_features, generator=g) / math.sqrt(base.in_features)
    b = torch.randn(base.out_features, r, generator=g) / math.sqrt(r)
    with torch.no_grad():
        for w, value in ((ours.lora_A.weight, a), (ours.lora_B.weight, b),
                         (layer.lora_A["default"].weight, a), (layer.lora_B["default"].weight, b)):
            w.copy_(value)
        x = torch.randn(4, base.in_features, generator=g)
        y = ours(x)
        vs_peft = float((y - theirs(x)).abs().max())
        ours.merge()
        merged = float((ours(x) - y).abs().max())
        ours.unmerge()
        restored = float((ours.base.weight - base.weight).abs().max())
        update = float((y - base(x)).abs().max())
    return {"ours vs peft": vs_peft, "merged vs unmerged": merged,
            "weight after unmerge vs original": restored, "size of the update": update}
