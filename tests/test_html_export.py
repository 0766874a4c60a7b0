"""The HTML pages of `make book`: titled by their notebook, readable with no network."""

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import html_export  # noqa: E402

pytest.importorskip("latex2mathml")


def test_formulas_become_mathml_and_code_and_prices_stay_as_they_are():
    mathml = {}
    md = html_export.tex_to_mathml(
        "Scores $QK^\\top$ over $$\\sqrt{d_k}$$; costs $5 and $10; `echo $HOME` stays.", mathml)
    assert "`echo $HOME`" in md and "$5 and $10" in md
    assert len(mathml) == 2
    inline, display = mathml.values()
    assert inline.startswith("<math") and 'display="inline"' in inline
    assert 'display="block"' in display and "msqrt" in display


def test_title_is_the_notebooks_heading():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "# 02 · Attention from **first** principles\n\n[![Colab](x.svg)](y)")])
    assert html_export.notebook_title(nb, "02_x") == "02 · Attention from first principles"
    assert html_export.notebook_title(nbformat.v4.new_notebook(), "02_x") == "02_x"


def _widget_notebook() -> nbformat.NotebookNode:
    png = {"output_type": "display_data", "metadata": {},
           "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}}
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_s", "IPY_MODEL_o"]}},
        "s": {"model_name": "IntSliderModel", "state": {"description": "d_k", "value": 64}},
        "o": {"model_name": "OutputModel", "state": {"outputs": [png]}},
    }
    cell = nbformat.v4.new_code_cell("build_explorer()", outputs=[
        nbformat.v4.new_output("execute_result", execution_count=1, data={
            html_export.WIDGET_VIEW: {"model_id": "box", "version_major": 2},
            "text/plain": "VBox(children=(IntSlider(value=64),))"}),
        nbformat.v4.new_output("display_data", data={
            html_export.WIDGET_VIEW: {"model_id": "gone"}, "text/plain": "HBox()"})])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 99 · Widgets"), cell])
    nb.metadata["widgets"] = {html_export.WIDGET_STATE: {"state": state}}
    return nb


def test_a_widget_becomes_its_saved_figure_and_settings_not_a_placeholder():
    page = html_export.export_html(_widget_notebook(), "99_widgets")
    assert "<title>99 · Widgets</title>" in page
    assert "VBox(children" not in page and "HBox()" not in page
    assert "d_k = 64" in page and 'src="data:image/png;base64,iVBORw0KGgo=' in page
    assert "run the notebook to use it" in page


def test_the_page_loads_nothing_from_the_network():
    nb = _widget_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("$$\\mathrm{softmax}(x)_i$$"))
    page = html_export.export_html(nb, "99_widgets")
    assert "<script src=" not in page and "cdn" not in page.lower()
    assert "<math" in page and "$$" not in page
