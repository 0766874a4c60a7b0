"""The HTML pages `make book` writes: titled by their notebook, readable offline.

nbconvert's default page loads MathJax, require.js and the widget manager from CDNs, so
offline its formulas show as raw TeX and its widgets as nothing. Here formulas become
MathML (which browsers draw natively), each widget becomes the static outputs saved in the
notebook's widget state (its figure or HTML, and a line with its settings), and the
template (templates/offline.html.j2) loads no script at all.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

TEMPLATES = Path(__file__).resolve().parent / "templates"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# Code (fenced or inline) is left alone; then $$display$$ and $inline$ math, where an inline
# formula opens on a non-space, closes on a non-space and is not followed by a digit ($5).
_CODE_OR_MATH = re.compile(
    r"(?P<code>```.*?```|~~~.*?~~~|`[^`\n]+`)"
    r"|(?<!\\)\$\$(?P<display>.+?)(?<!\\)\$\$"
    r"|(?<![\\$])\$(?P<inline>[^\s$](?:[^$\n]*?[^\s\\$])?)\$(?!\d)",
    re.S,
)


def notebook_title(nb, fallback: str) -> str:
    """The text of the notebook's first `# ` heading, else `fallback`."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return re.sub(r"[*_`]", "", line[2:]).strip()
    return fallback


def tex_to_mathml(markdown: str, mathml: dict[str, str]) -> str:
    """`markdown` with each formula replaced by a placeholder; `mathml` maps them to MathML."""
    from latex2mathml.converter import convert

    def swap(match: re.Match) -> str:
        if match.group("code"):
            return match.group(0)
        display = match.group("display") is not None
        tex = match.group("display") if display else match.group("inline")
        try:
            html = convert(tex.strip(), display="block" if display else "inline")
        except Exception:  # a construct latex2mathml lacks: show the TeX itself
            html = f"<code>{tex}</code>"
        key = f"BIGMODELLABMATH{len(mathml):05d}X"
        mathml[key] = html
        return key

    return _CODE_OR_MATH.sub(swap, markdown)


def _widget_fallback(model_id: str, state: dict) -> list[dict]:
    """Static outputs for one widget: saved figures/HTML of its parts, and its settings."""
    outputs, settings, seen = [], [], set()

    def walk(mid: str) -> None:
        if mid in seen or mid not in state:
            return
        seen.add(mid)
        model = state[mid]
        name, s = model.get("model_name", ""), model.get("state", {})
        if name == "OutputModel":
            outputs.extend(o for o in s.get("outputs", []) if o.get("output_type") != "error")
        elif name in ("HTMLModel", "HTMLMathModel") and s.get("value"):
            outputs.append({"output_type": "display_data", "metadata": {},
                            "data": {"text/html": s["value"]}})
        elif "value" in s and s.get("description"):
            settings.append(f"{s['description']} = {s['value']}")
        for child in s.get("children", []):
            walk(str(child).removeprefix("IPY_MODEL_"))

    walk(model_id)
    note = ("Interactive widget (run the notebook to use it); saved with "
            + (", ".join(settings) if settings else "its default settings") + ".")
    return [nbformat.v4.new_output("display_data", data={"text/html": f"<p><i>{note}</i></p>"}),
            *(nbformat.from_dict(o) for o in outputs)]


def static_widgets(nb) -> None:
    """Replace every widget view in `nb` by its static fallback; drop the widget state."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        new = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                new.append(out)
            elif view.get("model_id") in state:
                new.extend(_widget_fallback(view["model_id"], state))
            else:
                new.append(nbformat.v4.new_output("display_data", data={
                    "text/html": "<p><i>Interactive widget: run the notebook to use it.</i></p>"}))
        cell.outputs = new
    nb.metadata.pop("widgets", None)


def export_html(nb, fallback_title: str) -> str:
    """The offline page for an executed notebook (the notebook itself is left unchanged)."""
    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    title = notebook_title(nb, fallback_title)
    nb.metadata["title"] = title
    static_widgets(nb)
    mathml: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = tex_to_mathml(cell.source, mathml)
    exporter = HTMLExporter(template_name="lab", extra_template_paths=[str(TEMPLATES)],
                            template_file="offline.html.j2")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    for key, html in mathml.items():
        body = body.replace(key, html)
    return body
