"""Start JupyterLab for the book, as `make lab` does (the browser test starts it the same way).

It opens at the repository root (README, docs/ and results/ are in the file browser) on
notebook 00, with this environment's kernel and autosave off (see jupyter/README.md), and
adds --allow-root when run as root (a container), which Jupyter otherwise refuses.
Arguments are passed on to `jupyter lab`, e.g. `--no-browser --ip=127.0.0.1 --port=8888`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JUPYTER_DIR = ROOT / "jupyter"
FIRST_NOTEBOOK = "notebooks/00_welcome.ipynb"


def lab_command(args: list[str], euid: int | None = None) -> list[str]:
    """The `jupyter lab` command line; `euid` 0 (root) adds --allow-root."""
    euid = os.geteuid() if euid is None and hasattr(os, "geteuid") else euid
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={ROOT}",
           f"--LabApp.default_url=/lab/tree/{FIRST_NOTEBOOK}"]
    if euid == 0:
        cmd.append("--allow-root")
    return cmd + list(args)


def lab_env(environ: dict[str, str]) -> dict[str, str]:
    """`environ` with jupyter/ first on the kernel (data) and config search paths."""
    env = dict(environ)
    for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH"):
        env[var] = os.pathsep.join(p for p in (str(JUPYTER_DIR), environ.get(var, "")) if p)
    return env


def main(args: list[str]) -> None:
    cmd = lab_command(args)
    print(f"==> JupyterLab at {ROOT} on {FIRST_NOTEBOOK}, kernel: {sys.executable}"
          f"{' (as root: --allow-root)' if '--allow-root' in cmd else ''}. "
          "Autosave is off: Ctrl+S saves. Ctrl+C stops the server.", flush=True)
    os.execve(cmd[0], cmd, lab_env(dict(os.environ)))


if __name__ == "__main__":
    main(sys.argv[1:])
