"""Stop early, with a fix, when the Python that would create .venv is outside requires-python.

The supported versions are read from pyproject.toml, so this check and pip agree. Kept to
plain syntax: it runs under whatever `python3` the machine has, possibly an old one.
"""

import re
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def supported_minors(pyproject_text):
    """The (3, minor) versions that `requires-python = ">=3.A,<3.B"` allows."""
    spec = re.search(r'^requires-python\s*=\s*"([^"]*)"', pyproject_text, re.M).group(1)
    low = re.search(r">=\s*3\.(\d+)", spec)
    high = re.search(r"<\s*3\.(\d+)", spec)
    first = int(low.group(1)) if low else 8
    last = int(high.group(1)) - 1 if high else 99
    return [(3, minor) for minor in range(first, last + 1)]


def problem(version, executable, pyproject_text):
    """None when `version` is supported, else the message naming the fix."""
    allowed = supported_minors(pyproject_text)
    if tuple(version[:2]) in allowed:
        return None
    names = ["{}.{}".format(*v) for v in allowed]
    listed = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
    return ("bigmodel-lab needs Python {}; {} is {}. Fix: make PYTHON=python{} lab "
            "(or activate such an env).".format(listed, executable,
                                                ".".join(map(str, version[:3])), names[-1]))


if __name__ == "__main__":
    message = problem(sys.version_info, sys.executable, PYPROJECT.read_text())
    if message:
        sys.exit(message)
