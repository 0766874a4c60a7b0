"""Run notebooks headless, in order, in the current profile: `make book` / `make outputs`.

Each notebook runs in its own process (so its peak memory can be read), is written to
build/notebooks/ (and back into notebooks/ with --inplace) and exported to build/html/.
Ends with a table: notebook, status, seconds, peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("BIGMODEL_LAB_BUILD_DIR", ROOT / "build"))  # the browser test: a temp dir


def peak_children_mb() -> float:
    """Largest resident set of any finished child (the kernel), in MB."""
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return rss / 1024 / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, kB on Linux


# A tqdm bar as text: "train:  37%|###7      | 158/428 [01:02<01:46, 2.5it/s]".
PROGRESS_BAR = re.compile(r"^[^|\n]*\d+%\|.*\|\s*[\d.]+[kMG]?/[\d.?]+[kMG]?")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def drop_progress_bars(nb) -> int:
    """Remove tqdm bars from the outputs; return how many outputs were dropped or trimmed.

    A bar is live feedback: saved into the notebook it is frozen at whatever state the kernel
    last sent (the widget's text fallback is its first state, "0%|"), which is what GitHub and
    the HTML export show. The cells print what the bar measured (steps, seconds) themselves.
    """
    changed = 0
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if out.get("output_type") == "display_data" and WIDGET_VIEW in data \
                    and PROGRESS_BAR.match(str(data.get("text/plain", ""))):
                changed += 1
                continue
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                lines = re.split(r"(?<=[\r\n])", out["text"])
                clean = "".join(line for line in lines if not PROGRESS_BAR.match(line.strip("\r\n")))
                clean = re.sub(r"(^|\n)\r+|\r+(?=\n|$)", r"\1", clean)
                if clean != out["text"]:
                    changed += 1
                    if not clean.strip():
                        continue
                    out["text"] = clean
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    return changed


def run_one(path: Path, inplace: bool, timeout: int, html: bool) -> dict:
    """Execute one notebook in this process; the kernel is our child."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start, status = time.perf_counter(), "ok"
    try:
        client.execute()
    except CellExecutionError as err:
        status = "failed"
        print(str(err)[-2000:], file=sys.stderr)
    seconds = time.perf_counter() - start
    drop_progress_bars(nb)
    out = BUILD / "notebooks" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    if inplace and status == "ok":
        nbformat.write(nb, path)
    if html:  # titled by the notebook, readable offline (no CDN): see html_export.py
        from html_export import export_html

        (BUILD / "html").mkdir(parents=True, exist_ok=True)
        (BUILD / "html" / path.with_suffix(".html").name).write_text(
            export_html(nb, path.stem), encoding="utf-8")
    return {"notebook": path.name, "status": status, "seconds": round(seconds, 1),
            "peak_mb": round(peak_children_mb())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--inplace", action="store_true", help="write outputs into notebooks/")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--no-html", action="store_true")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.one:  # child process: run a single notebook, print its row as JSON
        print(json.dumps(run_one(paths[0], args.inplace, args.timeout, not args.no_html)))
        return 0
    rows = []
    for path in paths:
        print(f"running {path.name} ...", flush=True)
        cmd = [sys.executable, __file__, "--one", str(path), "--timeout", str(args.timeout)]
        cmd += ["--inplace"] * args.inplace + ["--no-html"] * args.no_html
        done = subprocess.run(cmd, capture_output=True, text=True)
        try:
            row = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            row = {"notebook": path.name, "status": "crashed", "seconds": None, "peak_mb": None}
        if row["status"] != "ok":
            print(done.stderr[-3000:], file=sys.stderr)
        rows.append(row)
        print(f"  {row['status']} in {row['seconds']} s, peak {row['peak_mb']} MB", flush=True)
    print(f"\n{'notebook':48} {'status':8} {'seconds':>8} {'peak MB':>8}")
    for r in rows:
        print(f"{r['notebook']:48} {r['status']:8} {r['seconds']!s:>8} {r['peak_mb']!s:>8}")
    total = sum(r["seconds"] or 0 for r in rows)
    print(f"{'total':48} {'':8} {total:8.1f} {max((r['peak_mb'] or 0) for r in rows):8}")
    BUILD.mkdir(exist_ok=True)
    (BUILD / "book.json").write_text(json.dumps(rows, indent=1))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
