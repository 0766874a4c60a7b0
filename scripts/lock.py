"""Write requirements/constraints.txt: the exact versions of everything installed (`make lock`).

Run it in the environment that made the committed outputs and passed CI. torch (and the CUDA
packages a GPU build brings) is left out: it stays the user's own, CPU or CUDA. The file is a
pip constraints file: `make install` passes it with -c, so the packages the project asks for
are installed at exactly these versions, and nothing else is installed because of it.
"""

from __future__ import annotations

import datetime as dt
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "constraints.txt"
LEFT_OUT = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-[\w-]+|bigmodel-lab)$", re.I)


def frozen() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable",
                          "--disable-pip-version-check"], check=True, capture_output=True,
                         text=True).stdout
    lines, unlocked = [], []
    for line in out.splitlines():
        name = line.split("==")[0].split(" @ ")[0].strip()
        if LEFT_OUT.match(name) or not line.strip() or line.startswith("#"):
            continue  # torch and its CUDA packages
        if "==" not in line:  # installed from a file or URL: no version an index can serve
            unlocked.append(line.strip())
            continue
        lines.append(line.strip())
    if unlocked:
        raise SystemExit("Not from a package index, so not lockable: " + "; ".join(unlocked)
                         + ". Reinstall them from PyPI (pip install --force-reinstall NAME==VERSION), "
                         "then run make lock again.")
    return sorted(lines, key=str.lower)


def main() -> None:
    header = [
        "# The exact versions the committed outputs and CI were made with: `make lock` writes",
        "# this file (scripts/lock.py, from pip freeze); don't edit it by hand. torch is left",
        "# out on purpose: the install reuses your own CPU or CUDA build.",
        f"# Made on Python {platform.python_version()} ({sys.platform}), "
        f"{dt.date.today().isoformat()}.",
    ]
    pins = frozen()
    LOCK.write_text("\n".join(header + pins) + "\n")
    print(f"Wrote {LOCK.relative_to(ROOT)} ({len(pins)} packages).")


if __name__ == "__main__":
    main()
