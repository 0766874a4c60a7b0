"""Install torch only when none is installed, and then the one pinned CPU build.

An unpinned `pip install torch` on Linux pulls the CUDA build (several GB) even on a machine
without a GPU. So: reuse any installed torch (CPU, CUDA or MPS build); otherwise install the
version pinned in requirements/torch-cpu.txt, from PyTorch's CPU index on Linux machines
without an NVIDIA driver when that index is reachable. When it is not, pip's own
configuration may still offer a CPU build (a mirror, a wheel folder): a dry run says what pip
would fetch, and the install stops with a fix instead of downloading the CUDA build.
GPU users install their CUDA build first (see README), and this script leaves it alone.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

PIN_FILE = Path(__file__).resolve().parent.parent / "requirements" / "torch-cpu.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
ALLOW_CUDA = "BIGMODEL_LAB_ALLOW_CUDA_TORCH"


def reachable(host: str, timeout: float = 3.0) -> bool:
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True  # a direct connection proves nothing behind a proxy: let pip try
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def cpu_only_linux() -> bool:
    return sys.platform.startswith("linux") and shutil.which("nvidia-smi") is None


def install_command() -> list[str]:
    # No -q: the download of torch is the longest step of the install; pip shows its progress.
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
           "-r", str(PIN_FILE)]
    if cpu_only_linux() and reachable("download.pytorch.org"):
        cmd += ["--extra-index-url", CPU_INDEX]
    return cmd


def dry_run(cmd: list[str]) -> dict:
    """What `cmd` would install (pip's installation report), downloading nothing but metadata."""
    done = subprocess.run(cmd + ["--dry-run", "--quiet", "--no-deps", "--ignore-installed",
                                 "--report", "-"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def cuda_packages(report: dict) -> list[str]:
    """The CUDA parts of an install plan: a `+cuXXX` torch, or the nvidia-* packages it needs."""
    found = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        name, version = meta.get("name", "").lower(), meta.get("version", "")
        if name.startswith("nvidia-") or (name == "torch" and "+cu" in version):
            found.append(f"{name}=={version}")
        if name == "torch":
            found += sorted(_needed_nvidia(meta.get("requires_dist") or []))
    return found


def _needed_nvidia(requires_dist: list[str]) -> set[str]:
    """nvidia-* requirements whose markers hold on this machine (no extras asked for)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a fresh venv: pip's own copy
        from pip._vendor.packaging.requirements import Requirement
    needed = set()
    for line in requires_dist:
        req = Requirement(line)
        if req.name.lower().startswith("nvidia-") and (
                req.marker is None or req.marker.evaluate({"extra": ""})):
            needed.add(req.name.lower())
    return needed


def refusal(cuda: list[str]) -> str:
    pin = PIN_FILE.read_text().strip()
    return (
        f"Stopping before installing {pin}: this is Linux without an NVIDIA driver, PyTorch's "
        f"CPU index ({CPU_INDEX}) cannot be reached, and pip would fetch the CUDA build instead "
        f"({', '.join(cuda[:4])}{', ...' if len(cuda) > 4 else ''}: several GB this machine "
        "cannot use).\nFix, one of:\n"
        "  - make download.pytorch.org reachable (e.g. set HTTPS_PROXY) and run make again;\n"
        f"  - install a CPU build of torch into {sys.prefix} first, e.g.\n"
        f"      {Path(sys.executable).name} -m pip install {pin} --index-url <your mirror of "
        f"{CPU_INDEX}>\n"
        "    (or a downloaded torch-...+cpu wheel), then run make again: the install reuses it;\n"
        f"  - or, to install the CUDA build anyway: {ALLOW_CUDA}=1 make install"
    )


def main() -> None:
    if importlib.util.find_spec("torch") is not None:
        from importlib.metadata import version

        print(f"Reusing the installed torch {version('torch')}.")
        return
    cmd = install_command()
    if cpu_only_linux() and CPU_INDEX not in cmd and not os.environ.get(ALLOW_CUDA):
        print("PyTorch's CPU index is not reachable; asking pip which torch build it would "
              "fetch instead (a dry run) ...", flush=True)
        cuda = cuda_packages(dry_run(cmd))
        if cuda:
            sys.exit(refusal(cuda))
    print("No torch installed; installing the pinned build:", " ".join(cmd[3:]), flush=True)
    subprocess.check_call(cmd)


if __name__ == "__main__":
    main()
