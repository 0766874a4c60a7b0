"""Install torch only when none is installed, and then the one pinned CPU build.

An unpinned `pip install torch` on Linux pulls the CUDA build (several GB) even on a machine
without a GPU. So: reuse any installed torch (CPU, CUDA or MPS build); otherwise install the
version pinned in requirements/torch-cpu.txt, from PyTorch's CPU index on Linux machines
without an NVIDIA driver when that index is reachable. GPU users install their CUDA build
first (see README), and this script leaves it alone.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
from pathlib import Path

PIN_FILE = Path(__file__).resolve().parent.parent / "requirements" / "torch-cpu.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def install_command() -> list[str]:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
           "-r", str(PIN_FILE)]
    cpu_only_linux = sys.platform.startswith("linux") and shutil.which("nvidia-smi") is None
    if cpu_only_linux and reachable("download.pytorch.org"):
        cmd += ["--extra-index-url", CPU_INDEX]
    return cmd


def main() -> None:
    if importlib.util.find_spec("torch") is not None:
        from importlib.metadata import version

        print(f"Reusing the installed torch {version('torch')}.")
        return
    cmd = install_command()
    print("No torch installed; installing the pinned build:", " ".join(cmd[3:]))
    subprocess.check_call(cmd)


if __name__ == "__main__":
    main()
