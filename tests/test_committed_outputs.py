"""What a committed notebook shows outside JupyterLab (GitHub, nbconvert's HTML, a terminal).

These read the notebooks as committed, without running them: no frozen progress bar, no
widget or HTML placeholder where a reader expects a figure or a table, figures saved at a dpi
that keeps 8 pt text legible, solutions notebooks that open on Colab and carry their outputs,
and summaries that end with a takeaway printed from the run.
"""

import base64
import importlib.util
import json
import re
import struct
from pathlib import Path

import pytest

from bigmodel_lab.book import COLAB

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_solutions.ipynb"))
BOOTSTRAP = 'if "google.colab" in sys.modules and importlib.util.find_spec("bigmodel_lab") is None:'
PLACEHOLDER = re.compile(r"^(<IPython\.core\.display\.\w+ object>|\w*Box\(children=)")
MIN_DPI = 100  # 8 pt text is 11 px at 100 dpi; at matplotlib's 72-80 it is 8-9 px

_spec = importlib.util.spec_from_file_location("run_book", ROOT / "scripts" / "run_book.py")
run_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_book)


def outputs(path: Path):
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        for out in cell.get("outputs", []):
            yield i, out


def text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def png_dpi(png: bytes) -> float | None:
    """The dpi a PNG declares in its pHYs chunk (matplotlib writes it), None if absent."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    i = 8
    while i + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[i:i + 8])
        if kind == b"pHYs":
            x, _, unit = struct.unpack(">IIB", png[i + 8:i + 17])
            return x * 0.0254 if unit == 1 else None
        if kind == b"IDAT":
            return None
        i += 12 + length
    return None


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_frozen_progress_bar_in_committed_outputs(path):
    for i, out in outputs(path):
        data = out.get("data", {})
        if run_book.WIDGET_VIEW in data:
            assert not run_book.PROGRESS_BAR.match(text(data.get("text/plain", ""))), \
                f"cell {i}: a tqdm widget saved as its text fallback (a frozen bar)"
        if out.get("output_type") == "stream":
            for line in re.split(r"[\r\n]", text(out["text"])):
                assert not run_book.PROGRESS_BAR.match(line), f"cell {i}: frozen bar {line!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_widget_or_html_placeholder_without_a_static_view(path):
    for i, out in outputs(path):
        plain = text(out.get("data", {}).get("text/plain", ""))
        assert not PLACEHOLDER.match(plain), (
            f"cell {i}: {plain[:40]!r} is all a static copy shows: give the object a readable "
            "repr, or draw a figure or table beside the widget")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_figures_are_saved_at_a_legible_dpi(path):
    dpis = [png_dpi(base64.b64decode(text(out["data"]["image/png"])))
            for _, out in outputs(path) if "image/png" in out.get("data", {})]
    low = [d for d in dpis if d is not None and d < MIN_DPI - 0.5]
    assert not low, f"{len(low)} figure(s) at {sorted(set(round(d) for d in low))} dpi: set " \
                    f'plt.rcParams["figure.dpi"] = {MIN_DPI} after lab.setup'


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_what_we_found_ends_with_a_printed_takeaway(path):
    cells = json.loads(path.read_text())["cells"]
    start = next(i for i, c in enumerate(cells) if re.search(r"^#+ .*What we found",
                                                               text(c["source"]), re.M))
    end = next((i for i in range(start + 1, len(cells)) if re.search(
        r"^#+ ", text(cells[i]["source"]), re.M) and cells[i]["cell_type"] == "markdown"),
        len(cells))
    printed = [text(o.get("text", "")) for c in cells[start:end] for o in c.get("outputs", [])]
    assert any(line.startswith("Takeaway:") for p in printed for line in p.splitlines()), \
        "the summary ends with a sentence printed from the run's values (print('Takeaway: ...'))"


def test_png_dpi_reads_what_matplotlib_wrote(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, _ = plt.subplots(figsize=(2, 1))
    fig.savefig(tmp_path / "f.png", dpi=120)
    plt.close(fig)
    assert png_dpi((tmp_path / "f.png").read_bytes()) == pytest.approx(120, abs=0.5)


def test_drop_progress_bars_keeps_everything_else():
    bar = "train: 100%|##########| 428/428 [04:38<00:00, 1.54it/s]"
    nb = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "display_data", "data": {run_book.WIDGET_VIEW: {"model_id": "x"},
                                                 "text/plain": "train:   0%|          | 0/428"}},
        {"output_type": "stream", "name": "stderr", "text": f"\r{bar}\rwarning: kept\n"},
        {"output_type": "stream", "name": "stderr", "text": f"{bar}\n"},
        {"output_type": "stream", "name": "stdout", "text": "428 steps in 278 s\n"},
        {"output_type": "display_data", "data": {run_book.WIDGET_VIEW: {"model_id": "y"},
                                                 "text/plain": "Explorer for 'a sentence'"}},
    ]}]}

    class Node(dict):
        __getattr__ = dict.get

    notebook = Node(cells=[Node(c) for c in nb["cells"]])
    assert run_book.drop_progress_bars(notebook) == 3
    kept = notebook.cells[0]["outputs"]
    assert [o.get("text", o.get("data", {}).get("text/plain")) for o in kept] == [
        "warning: kept\n", "428 steps in 278 s\n", "Explorer for 'a sentence'"]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solutions_open_on_colab_and_are_committed_with_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    first = text(cells[0]["source"])
    assert COLAB.format(repo="bigmodel-lab/bigmodel-lab", file=f"solutions/{path.name}") in first, \
        "Colab badge in the title cell"
    code = [c for c in cells if c["cell_type"] == "code"]
    assert BOOTSTRAP in text(code[0]["source"]), "first code cell installs the lab on Colab only"
    run = [c for c in code[1:] if c.get("execution_count") is not None]
    assert len(run) == len(code) - 1 and any(c.get("outputs") for c in run), \
        "committed with outputs: run it (scripts/run_book.py --inplace) before committing"
