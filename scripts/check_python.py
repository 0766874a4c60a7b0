"""Stop early, with a fix, when the Python that would create .venv is not 3.10-3.12."""

import sys

if not ((3, 10) <= sys.version_info[:2] <= (3, 12)):
    sys.exit(
        f"bigmodel-lab needs Python 3.10, 3.11 or 3.12; {sys.executable} is "
        f"{sys.version.split()[0]}. Fix: make PYTHON=python3.11 lab (or activate such an env)."
    )
