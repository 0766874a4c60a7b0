"""Every notebook follows the book's skeleton; nbval (in `make test`) executes them."""

import json
import re
from pathlib import Path

import pytest

from bigmodel_lab.book import CHAPTERS, COLAB

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BOOTSTRAP = 'if "google.colab" in sys.modules and importlib.util.find_spec("bigmodel_lab") is None:'


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_every_notebook_is_on_the_map():
    assert {p.name for p in NOTEBOOKS} <= {c.file for c in CHAPTERS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_skeleton(path):
    nb_cells = cells(path)
    first = source(nb_cells[0])
    assert first.startswith(f"# {path.name[:2]} ·"), "title first"
    assert COLAB.format(repo="bigmodel-lab/bigmodel-lab", file=path.name) in first, "Colab badge"
    code = [source(c) for c in nb_cells if c["cell_type"] == "code"]
    assert BOOTSTRAP in code[0], "first code cell installs the lab on Colab only"
    assert f'lab.setup("{path.name[:2]}")' in code[1]
    text = "\n".join(source(c) for c in nb_cells)
    assert re.search(r"^#+ .*Exercises", text, re.M), "ends with exercises"
    assert re.search(r"^#+ .*What we found", text, re.M), "has a summary"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").rglob("*.ipynb")),
                         ids=lambda p: p.name)
def test_no_installs_outside_the_bootstrap_and_no_machine_paths(path):
    for i, cell in enumerate(cells(path)):
        src = source(cell)
        assert not re.search(r"(?<![\w.])/(work|tmp|root|home)/", src), f"cell {i}: absolute path"
        if "google.colab" not in src:
            assert not re.search(r"^\s*[%!]\s*pip", src, re.M), f"cell {i} installs something"
