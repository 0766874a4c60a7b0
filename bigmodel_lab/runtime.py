"""Profile, device, seeds and the environment card that every notebook starts with."""

from __future__ import annotations

import os
import platform
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .profiles import LEAN_MEMORY, PROFILES, REHEARSAL, REHEARSAL_VAR, settings_for

ENV_VAR = "BIGMODEL_LAB_PROFILE"
REPO_ROOT = Path(__file__).resolve().parent.parent
HOME_VAR = "BIGMODEL_LAB_HOME"
# Where sources (data, model) used in this process are remembered for the card and ledger.
SOURCES: dict[str, str] = {}


@dataclass(frozen=True)
class Config:
    """What a notebook needs to know about its run; per-notebook knobs read as attributes."""

    notebook: str
    profile: str
    device: str
    seed: int = 0
    threads: int = 1
    settings: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: expose the profile row as attributes.
        settings = object.__getattribute__(self, "settings")
        if name in settings:
            return settings[name]
        raise AttributeError(
            f"Notebook {object.__getattribute__(self, 'notebook')} has no setting {name!r} "
            f"in bigmodel_lab/profiles.py (it has: {', '.join(settings) or 'none'})."
        )

    @property
    def is_smoke(self) -> bool:
        return self.profile == "smoke"


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


def resolve_profile(value: str | None = None) -> str:
    """The active profile: the argument, else $BIGMODEL_LAB_PROFILE, else smoke on CI,
    gpu when CUDA is available, cpu otherwise."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"profile must be a string, one of {', '.join(map(repr, PROFILES))}; got "
                        f"{type(value).__name__} {value!r}. Pass e.g. profile='cpu', or leave "
                        f"it out to use ${ENV_VAR}.")
    value = value if value is not None else os.environ.get(ENV_VAR, "")
    value = value.strip().lower()
    if value in ("", "gpu", REHEARSAL) and _flag(REHEARSAL_VAR):
        return REHEARSAL  # the gpu profile's code at smoke sizes (profiles.rehearsal_settings)
    if value:
        if value == REHEARSAL:
            return value
        if value not in PROFILES:
            raise ValueError(
                f"Unknown profile {value!r}. Valid profiles: {', '.join(PROFILES)}. "
                f"Fix: export {ENV_VAR}=cpu (or smoke / gpu), or unset it."
            )
        return value
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return "smoke"
    return "gpu" if _cuda_available() else "cpu"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def rehearsing() -> bool:
    """True in the rehearsal (the gpu profile's code path at smoke sizes, on any machine)."""
    cfg = CURRENT.get("cfg")
    return (cfg is not None and cfg.profile == REHEARSAL) or _flag(REHEARSAL_VAR)


def work_dir() -> Path:
    """Where runs write what they make (checkpoints/, exports/, cache/, build/, results/).

    $BIGMODEL_LAB_HOME when set; else the repository checkout this package was installed
    from (an editable install, as `make lab` makes); else, for a plain install such as the
    Colab cell's, the current working directory. Never site-packages.
    """
    if os.environ.get(HOME_VAR, "").strip():
        return Path(os.environ[HOME_VAR]).expanduser().resolve()
    if (REPO_ROOT / "pyproject.toml").exists() and (REPO_ROOT / "notebooks").is_dir():
        return REPO_ROOT
    return Path.cwd().resolve()


def cache_dir(name: str = "") -> Path:
    """A folder under work_dir()/cache/ (ignored by git) for converted models and the like."""
    folder = work_dir() / "cache" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shown_path(path: str | os.PathLike) -> str:
    """`path` relative to work_dir() when inside it (what notebooks print), else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(work_dir()))
    except ValueError:
        return str(path)


def _aside(folder: Path, what: str) -> Path:
    return folder.parent / f".{folder.name}.{what}"


def recover_interrupted_write(folder: str | os.PathLike, mark: str) -> None:
    """Finish or undo what a crash in the middle of `replace_folder` left behind.

    `replace_folder` writes `.<name>.new`, renames the old folder to `.<name>.old`, renames
    the new one in, then deletes the old one. Killed between the two renames, `<name>` is
    missing: the new copy goes in when it is complete (its `mark` file, written last,
    exists), else the old one comes back. Leftovers are then removed, so no hidden folder
    outlives the next call."""
    folder = Path(folder)
    new, old = _aside(folder, "new"), _aside(folder, "old")
    if not folder.exists():
        if (new / mark).exists():
            os.replace(new, folder)
        elif old.exists():
            os.replace(old, folder)
    for leftover in (new, old):
        if leftover.exists():
            shutil.rmtree(leftover)


def replace_folder(folder: str | os.PathLike, write: Callable[[Path], None], mark: str) -> Path:
    """Put new contents in place of `folder` without ever losing it: `write(path)` fills a
    hidden sibling (and must create the file `mark` last, the sign of a complete copy), the
    old folder is renamed aside, the new one renamed in, the old one deleted. A failed write
    leaves no half-written copy; a crash at any step leaves the old or the new folder whole,
    and the next call (`recover_interrupted_write`) puts the right one in place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_write(folder, mark)
    new, old = _aside(folder, "new"), _aside(folder, "old")
    try:
        new.mkdir()
        write(new)
        if not (new / mark).exists():
            raise RuntimeError(f"replace_folder: write() did not create {mark!r}, the mark of a complete copy.")
    except BaseException:  # disk full, a bad model, Ctrl-C: no half-written copy stays
        shutil.rmtree(new, ignore_errors=True)
        raise
    if folder.exists():
        os.replace(folder, old)
    os.replace(new, folder)
    if old.exists():
        shutil.rmtree(old)
    return folder


def pick_device() -> str:
    """CUDA, then Apple MPS, then CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def bf16_slowdown(shape: tuple[int, int, int] = (64, 576, 1536), repeats: int = 3) -> float:
    """How many times longer a bf16 matrix product (m, k) @ (k, n) takes than fp32 on this CPU.

    CPUs with AVX-512 BF16 or AMX multiply bf16 faster than fp32 (2.7x faster for notebook 16's
    forward pass on the machine its outputs were made on); on AVX2-only CPUs (many laptops, AMD
    before Zen 4) PyTorch takes a slow path: 3.7-5.1x slower than fp32 on one AVX2 AMD EPYC
    (2026-12-02), where a LoRA step of 16 took about 50 s instead of 3.6 s, and 43-80x on
    another (97 ms against 1.5 ms for this product), which is why 16's cpu profile uses fp32.
    """
    import time

    import torch

    m, k, n = shape
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        a @ b  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        best[dtype] = min(times)
    return best[torch.bfloat16] / best[torch.float32]


def warn_if_bf16_is_slow(model, limit: float = 1.5) -> float | None:
    """Print a note (and return the slowdown) when `model` holds bf16 weights on a CPU that
    multiplies bf16 more than `limit` times slower than fp32; None when that does not apply."""
    import torch

    p = next(model.parameters(), None)
    if p is None or p.dtype != torch.bfloat16 or p.device.type != "cpu":
        return None
    slowdown = bf16_slowdown()
    if slowdown > limit:
        print(f"Note: bfloat16 matrix products run {slowdown:.1f}x slower than float32 on this CPU "
              f"({torch.backends.cpu.get_cpu_capability()}: no AVX-512 BF16 or AMX), so training "
              f"in bfloat16 here takes several times longer than the notebook's header says. To "
              f"train in float32 instead (faster here; for SmolLM2-135M about 0.3 GB more memory), "
              f"convert the model first: model.to(torch.float32).")
    return slowdown


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """Versions recorded on the card and in the results ledger."""
    return {
        "python": platform.python_version(),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "datasets": version("datasets"),
        "bigmodel_lab": version("bigmodel-lab"),
    }


LOCK_FILE = REPO_ROOT / "requirements" / "constraints.txt"


def read_lock(path: str | os.PathLike | None = None) -> dict[str, str]:
    """{normalized package name: version} from the constraints file (`make lock` writes it)."""
    path = Path(path) if path else LOCK_FILE
    if not path.exists():
        return {}
    locked = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, ver = line.split("==", 1)
            locked[_normalize(name)] = ver.split(";")[0].strip()
    return locked


def lock_differences(path: str | os.PathLike | None = None) -> dict[str, tuple[str, str]]:
    """{package: (locked version, installed version)} for each locked package that differs."""
    installed: dict[str, str] = {}
    for dist in metadata.distributions():
        # The first one on sys.path is what imports get; setuptools puts its own vendored
        # copies (packaging, platformdirs...) on the path too: those are not the install.
        if "_vendor" not in str(getattr(dist, "_path", "")):
            installed.setdefault(_normalize(dist.metadata["Name"] or ""), dist.version)
    return {name: (want, installed.get(name, "not installed"))
            for name, want in read_lock(path).items() if installed.get(name) != want}


def lock_status(path: str | os.PathLike | None = None) -> str:
    """One line for the card: does the installed set match the lock, and if not, what differs."""
    if not read_lock(path):
        return "no lock file to compare with (requirements/constraints.txt is in the repository)"
    diff = lock_differences(path)
    if not diff:
        return "installed packages match the lock (requirements/constraints.txt)"
    shown = ", ".join(f"{n} {have} (locked {want})" for n, (want, have) in sorted(diff.items())[:6])
    more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
    return (f"{len(diff)} package(s) differ from the lock: {shown}{more}; the committed outputs "
            "were made with the locked set (make install restores it)")


def _normalize(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def environment_card(cfg: Config) -> str:
    v = versions()
    lines = [
        f"bigmodel-lab | notebook {cfg.notebook} | profile {cfg.profile} | device {cfg.device} "
        f"| {cfg.threads} CPU threads | seed {cfg.seed}",
        f"python {v['python']} | torch {v['torch']} | transformers {v['transformers']} "
        f"| datasets {v['datasets']}",
        f"packages: {lock_status()}",
    ]
    if SOURCES:
        lines.append(" | ".join(f"{k}: {s}" for k, s in SOURCES.items()))
    return "\n".join(lines)


def card(cfg: Config | None = None) -> None:
    """Print the environment card again, now with the data and model sources used so far."""
    print(environment_card(cfg or CURRENT["cfg"]))


CURRENT: dict[str, Config] = {}


def setup(notebook_id: str, profile: str | None = None, seed: int = 0, quiet: bool = False) -> Config:
    """Start a notebook: pick the profile and device, seed everything, print the card.

    Returns a frozen `Config`; the notebook's row in `profiles.SETTINGS` reads as attributes,
    e.g. `cfg.n_train`.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not isinstance(notebook_id, str):
        raise TypeError(f"notebook_id must be the notebook's number as a string, e.g. "
                        f"lab.setup('06'); got {type(notebook_id).__name__} {notebook_id!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be a whole number, e.g. seed=0; got {type(seed).__name__} "
                        f"{seed!r}.")
    name = resolve_profile(profile)
    settings = settings_for(notebook_id, name)
    import torch

    threads = available_cores()
    torch.set_num_threads(threads)
    seed_everything(seed)
    _quiet_libraries()
    if notebook_id in LEAN_MEMORY:
        return_freed_memory()
    cfg = Config(
        notebook=notebook_id,
        profile=name,
        device=pick_device(),
        seed=seed,
        threads=threads,
        settings=MappingProxyType(settings),
    )
    SOURCES.clear()
    CURRENT["cfg"] = cfg
    if not quiet:
        print(environment_card(cfg))
    return cfg


def return_freed_memory(mmap_threshold: int = 256 * 1024) -> bool:
    """Make glibc give freed tensor memory back to the system (Linux only; True if applied).

    By default glibc raises its mmap threshold each time a large block is freed, so later
    tensors come from a heap that fragments and never shrinks: fine-tuning MiniLM on 1,200
    IMDb reviews peaked at 2.1 GB that way, against 1.4 GB with a fixed threshold. Same as
    starting Python with MALLOC_MMAP_THRESHOLD_=262144 MALLOC_TRIM_THRESHOLD_=262144
    MALLOC_ARENA_MAX=2, but done from inside, so it also works in Jupyter, Binder and Colab.

    The price is speed: every large tensor then gets fresh pages from the kernel. In the book's
    cpu run, fp32 eager inference (batch 32 x 128) took 10-35% longer and dynamic int8 lost
    much of its speed-up, so `setup` applies it only to the notebooks that train
    (`profiles.LEAN_MEMORY`).
    """
    if platform.system() != "Linux":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc: nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8  # from glibc's malloc.h
    return all([libc.mallopt(m_mmap_threshold, mmap_threshold) == 1,
                libc.mallopt(m_trim_threshold, mmap_threshold) == 1,
                libc.mallopt(m_arena_max, 2) == 1])


def trim_freed_memory() -> bool:
    """Hand memory that Python and PyTorch freed back to the system now (glibc's malloc_trim;
    True if it gave any back). Many small freed blocks otherwise stay in the process's heap."""
    if platform.system() != "Linux":
        return False
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):  # musl or another libc
        return False


def _quiet_libraries() -> None:
    """Keep notebook outputs to what teaches: no hub chatter, no per-map progress bars."""
    try:
        import datasets
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
