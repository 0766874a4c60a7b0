"""The lock for this Python: requirements/constraints.txt with each pin that this interpreter
cannot install replaced by the newest release that it can; prints what it changed.

The lock was made on Python 3.11.7, and a release may require a newer patch level than a
distribution ships (soupsieve 4.1.3 needs >= 3.11.5; Debian 12's python3 is 3.11.2). The
container build (Dockerfile) runs this, then `make install LOCK=<the file written>`, so the
environment card names any package that differs from the committed lock.

Usage: python scripts/lock_for_python.py OUT [EXTRA...]  (EXTRA: the requirements to resolve;
default `-e .[dev]`, what `make install` installs).
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from pathlib import Path

try:
    from packaging.specifiers import SpecifierSet
except ImportError:  # a fresh venv: pip's own copy
    from pip._vendor.packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "constraints.txt"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


def unsupported(lock: Path, wanted: list[str]) -> dict[str, str]:
    """{name: requires-python} for the locked releases that this Python cannot install."""
    plan = json.loads(subprocess.run(
        PIP + ["install", "--dry-run", "--quiet", "--ignore-requires-python", "--report", "-",
               "-c", str(lock), *wanted], cwd=ROOT, check=True, capture_output=True,
        text=True).stdout)
    here = platform.python_version()
    found = {}
    for item in plan.get("install", []):
        meta = item["metadata"]
        needs = meta.get("requires_python")
        if needs and not SpecifierSet(needs).contains(here):
            found[meta["name"]] = needs
    return found


def newest_supported(name: str) -> str:
    """The newest release of `name` that this Python can install (pip filters by Python)."""
    out = subprocess.run(PIP + ["index", "versions", name], check=True, capture_output=True,
                         text=True).stdout
    match = re.search(r"Available versions: ([^,\s]+)", out)
    if not match:
        sys.exit(f"No release of {name} installs on Python {platform.python_version()}: "
                 "build on a newer Python (e.g. another base image).")
    return match.group(1)


def replace_pins(lines: list[str], new: dict[str, str]) -> list[str]:
    """The lock's lines with the pin of each package in `new` set to its version there."""
    key = {_normalize(name): version for name, version in new.items()}
    out = []
    for line in lines:
        name = line.split("==")[0].strip()
        out.append(f"{name}=={key[_normalize(name)]}"
                   if "==" in line and _normalize(name) in key else line)
    return out


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(out: str, wanted: list[str]) -> None:
    here = platform.python_version()
    bad = unsupported(LOCK, wanted or ["-e", ".[dev]"])
    new = {name: newest_supported(name) for name in sorted(bad)}
    for name, version in new.items():
        print(f"lock: {name} as locked needs Python {bad[name]}; this is {here}: "
              f"using {name}=={version}")
    Path(out).write_text("\n".join(replace_pins(LOCK.read_text().splitlines(), new)) + "\n")
    if not bad:
        print(f"lock: every locked release installs on Python {here}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
