"""The results dashboard: this book's ledger beside the published anchors, nothing else.

Every figure shown comes from `results/ledger.jsonl` (what this book's notebooks measured)
or from `bigmodel_lab.results.ANCHORS` (published figures with citations). Nothing is typed
in here; when the ledger is empty the dashboard says which notebooks fill it.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .results import anchors, read_ledger
from .runtime import REPO_ROOT, work_dir

NOTEBOOKS = REPO_ROOT / "notebooks"  # read only; absent in a pip install (then: none listed)
TASK_NAMES = {"sst2": "SST-2", "imdb": "IMDb", "rotten_tomatoes": "Rotten Tomatoes"}


def notebooks_that_record(folder: str | Path = NOTEBOOKS) -> list[str]:
    """Notebook file names whose code calls `results.record(...)`, i.e. that fill the ledger."""
    found = []
    for path in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = "\n".join("".join(c.get("source", "")) for c in nb.get("cells", [])
                         if c.get("cell_type") == "code")
        if re.search(r"\brecord\(", code):
            found.append(path.name)
    return found


def empty_message(folder: str | Path = NOTEBOOKS) -> str:
    """What to run when the ledger holds nothing."""
    names = notebooks_that_record(folder)
    which = ", ".join(names) if names else "the fine-tuning and compression notebooks (06-11)"
    return ("The results ledger is empty: nothing has been measured yet. Run "
            f"{which} in the cpu or gpu profile (smoke runs are not recorded), e.g. "
            "`BIGMODEL_LAB_PROFILE=cpu make book`, then re-run this notebook.")


def load(path: str | Path | None = None, superseded: bool = False) -> pd.DataFrame:
    """The ledger, one row per recorded result, with a `benchmark` column (True only for hub
    data). Only the latest run of each notebook and profile is kept (the run whose outputs
    the notebook shows), unless `superseded=True`."""
    frame = read_ledger(path, current=not superseded)
    if frame.empty:
        return frame
    frame["benchmark"] = ~frame["data_source"].astype(str).str.contains(
        "offline|stand-in", case=False, regex=True)
    return frame


def _metric(frame: pd.DataFrame, name: str) -> pd.Series:
    column = f"metrics.{name}"
    if column not in frame:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce")  # a non-number is no figure to plot


LOWER_IS_BETTER = ("perplexity", "loss", "latency", "_ms", "seconds", "error")
TABLE_COLUMNS = ["source", "model", "notebook", "profile", "data", "benchmark", "accuracy",
                 "se", "metric", "value", "reference"]


def headline_metric(ledger: pd.DataFrame, task: str) -> str | None:
    """The metric a task is judged by: accuracy when its runs recorded one, else the first
    metric they all recorded (a language model records perplexity, not accuracy)."""
    if ledger.empty or "task" not in ledger:
        return "accuracy" if not anchors(task).empty else None
    rows = ledger[ledger["task"] == task]
    if _metric(rows, "accuracy").notna().any() or rows.empty:
        return "accuracy"
    names = [c.split(".", 1)[1] for c in rows.columns if c.startswith("metrics.")
             and pd.to_numeric(rows[c], errors="coerce").notna().any()]  # numbers only
    declared = rows["headline"].dropna() if "headline" in rows else pd.Series(dtype=object)
    names = [n for n in declared.iloc[::-1] if n in names][:1] + names
    full = [n for n in names if rows[f"metrics.{n}"].notna().all()]
    return (full or names or [None])[0]


def lower_is_better(metric: str | None) -> bool:
    return metric is not None and any(k in metric for k in LOWER_IS_BETTER)


def _standard_error(rows: pd.DataFrame) -> pd.Series:
    """The recorded standard error of each accuracy, else sqrt(p(1-p)/n) from the test size."""
    p = _metric(rows, "accuracy")
    n = _coalesce(rows, ["extra.n_test", "extra.n_eval"])
    return _metric(rows, "accuracy_se").fillna(np.sqrt(p * (1 - p) / n))


def task_table(ledger: pd.DataFrame, task: str) -> pd.DataFrame:
    """This book's headline metric on `task` (latest run per notebook, model, profile and data
    source) above the published anchors for the same task. `accuracy` and `se` are filled for
    accuracy tasks; `metric` and `value` name and hold the headline figure for every task."""
    rows = []
    metric = headline_metric(ledger, task)
    if not ledger.empty and "task" in ledger and metric is not None:
        ours = ledger[(ledger["task"] == task) & _metric(ledger, metric).notna()]
        ours = ours.assign(_se=_standard_error(ours)).sort_values("time").groupby(
            ["notebook", "model", "profile", "data_source"], as_index=False).tail(1)
        for _, r in ours.iterrows():
            value = float(pd.to_numeric(r[f"metrics.{metric}"], errors="coerce"))
            is_acc = metric == "accuracy"
            rows.append(dict(source="this book", model=r["model"], notebook=r["notebook"],
                             profile=r["profile"], data=r["data_source"],
                             benchmark=bool(r["benchmark"]),
                             accuracy=value if is_acc else np.nan,
                             se=r["_se"] if is_acc else np.nan,
                             metric=metric, value=value, reference=r["time"][:10]))
    if metric == "accuracy":
        for _, a in anchors(task).iterrows():
            rows.append(dict(source="published", model=a["model"], notebook="", profile="",
                             data=a["split"], benchmark=True, accuracy=a["value"], se=np.nan,
                             metric="accuracy", value=a["value"], reference=a["citation"]))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def tasks(ledger: pd.DataFrame) -> list[str]:
    """Tasks with a result in the ledger, then those with anchors only."""
    seen = list(dict.fromkeys(ledger["task"])) if "task" in ledger else []
    return seen + [t for t in anchors()["task"].unique() if t not in seen]


def best_results(ledger: pd.DataFrame) -> pd.DataFrame:
    """Per task: this book's best headline figure on the real benchmark, its gap to the best
    published figure, and (apart, never compared) its best on an offline stand-in dataset."""
    rows = []
    for task in tasks(ledger):
        table = task_table(ledger, task)
        metric = headline_metric(ledger, task)
        low = lower_is_better(metric)
        ours = table[table["source"] == "this book"]
        published = table[table["source"] == "published"]["value"].max()
        row = dict(task=task, metric=metric, runs=len(ours), best_published=published)
        for kind, part in (("benchmark", ours[ours["benchmark"].astype(bool)]),
                           ("stand_in", ours[~ours["benchmark"].astype(bool)])):
            values = part["value"].astype(float)
            best = part.loc[values.idxmin() if low else values.idxmax()] if not part.empty else None
            se = "" if best is None or pd.isna(best["se"]) else f" ± {best['se']:.4f}"
            row[f"best_{kind}"] = None if best is None else (
                f"{best['value']:.4f}{se} ({best['model']}, {best['profile']})")
            if kind == "benchmark":
                row["gap_to_published"] = (published - best["value"]
                                           if best is not None and metric == "accuracy" else None)
        row["best_stand_in"] = row["best_stand_in"] and (
            row["best_stand_in"] + ": not comparable, offline stand-in")
        rows.append(row)
    return pd.DataFrame(rows, columns=["task", "metric", "runs", "best_benchmark",
                                       "gap_to_published", "best_published", "best_stand_in"])


def plot_task(ledger: pd.DataFrame, task: str, ax=None):
    """The headline figure of every row of `task_table` (None when the table is empty: no
    empty axes): this book's runs coloured by profile, with their 95% interval where known,
    filled on benchmark data and hollow on an offline stand-in; published figures in grey."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    table = task_table(ledger, task).iloc[::-1].reset_index(drop=True)
    if table.empty:
        return None
    metric = table["metric"].iloc[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.6))
    colours = {"smoke": "tab:gray", "cpu": "tab:blue", "gpu": "tab:orange", "": "0.5"}
    for i, r in table.iterrows():
        colour = colours.get(r["profile"], "tab:purple")
        if r["se"] == r["se"]:
            ax.errorbar(r["value"], i, xerr=1.96 * r["se"], color=colour, lw=1, capsize=2)
        ax.plot(r["value"], i, "o", ms=8, color=colour,
                markerfacecolor=colour if r["benchmark"] else "white")
    labels = [f"{r['model']}" + (f" ({r['profile']}, nb {r['notebook']})" if r["notebook"]
                                 else " (published)") for _, r in table.iterrows()]
    ax.set_yticks(range(len(table)), labels, fontsize=8)
    ax.set_ylim(-0.7, len(table) - 0.3)
    ax.set_xlabel(metric + (" (bars: 95% interval)" if table["se"].notna().any() else ""))
    ours = int((table["source"] == "this book").sum())
    ax.set_title(f"{TASK_NAMES.get(task, task)}: {ours} result(s) of this book"
                 + (" vs published" if (table["source"] == "published").any() else ""),
                 fontsize=10)
    handles = [Line2D([], [], ls="", marker="o", color=colours[p], label=f"this book, {p}")
               for p in ("cpu", "gpu") if (table["profile"] == p).any()]
    handles += [Line2D([], [], ls="", marker="o", color="0.4", markerfacecolor="white",
                       label="hollow: offline stand-in data")] * bool((~table["benchmark"]).any())
    handles += [Line2D([], [], ls="", marker="o", color="0.5", label="published (benchmark)")] \
        * bool((table["source"] == "published").any())
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="x", alpha=0.3)
    return ax


# ------------------------------------------------------------------- compression Pareto front
def _first_column(frame: pd.DataFrame, patterns: tuple[str, ...]) -> str | None:
    for pattern in patterns:
        for column in frame.columns:
            if re.fullmatch(pattern, column) and frame[column].notna().any():
                return column
    return None


LATENCY_COLUMNS = (r"metrics\.latency_ms", r"metrics\.latency_median_ms",
                   r"metrics\.median_ms", r"(metrics|extra)\..*latency.*_ms")
SIZE_COLUMNS = (r"metrics\.size_mb", r"(metrics|extra)\..*size_mb")
VARIANT_COLUMNS = ["notebook", "task", "model", "profile", "device", "shape", "threads",
                   "data_source", "accuracy", "latency_ms", "size_mb", "time"]
# latencies are comparable within one group: one machine, one batch shape, one thread count
GROUP = ["task", "profile", "device", "shape", "threads"]


def _coalesce(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """The first non-missing value of `columns`, row by row (NaN when none has one)."""
    out = pd.Series(np.nan, index=frame.index, dtype=float)
    for column in columns:
        if column in frame:
            out = out.fillna(pd.to_numeric(frame[column], errors="coerce"))
    return out


def variants(ledger: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str | None]]:
    """Runs that have accuracy and latency (the compression variants and inference engines),
    with the ledger columns used for each axis."""
    empty = pd.DataFrame(columns=VARIANT_COLUMNS)
    if ledger.empty:
        return empty, {"latency": None, "size": None}
    latency = _first_column(ledger, LATENCY_COLUMNS)
    size = _first_column(ledger, SIZE_COLUMNS)
    if latency is None:
        return empty, {"latency": None, "size": size}
    frame = ledger[_metric(ledger, "accuracy").notna() & ledger[latency].notna()].copy()
    frame["accuracy"] = frame["metrics.accuracy"]
    frame["latency_ms"] = frame[latency]
    frame["size_mb"] = _coalesce(frame, ["metrics.size_mb", "extra.size_mb"])
    # Latencies compare only at one batch shape: batch x length, as the notebooks recorded it.
    batch = _coalesce(frame, ["extra.bench_batch", "extra.batch_size"])
    length = _coalesce(frame, ["extra.bench_len", "extra.seq_len"])
    frame["shape"] = [f"{int(b)} x {int(t)}" if b == b and t == t else "unknown"
                      for b, t in zip(batch, length)]
    threads = _coalesce(frame, ["extra.threads"])
    frame["threads"] = [str(int(n)) if n == n else "unknown" for n in threads]
    keep = VARIANT_COLUMNS
    frame = frame.sort_values("time").groupby(["task", "model", "profile", "device", "shape",
                                               "threads"], as_index=False).tail(1)
    return frame[keep].reset_index(drop=True), {"latency": latency, "size": size}


def pareto_front(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point beats: none is both at least as fast and at
    least as accurate, and strictly better in one of the two."""
    latency, accuracy = np.asarray(latency, float), np.asarray(accuracy, float)
    keep = np.ones(len(latency), dtype=bool)
    for i in range(len(latency)):
        better = ((latency <= latency[i]) & (accuracy >= accuracy[i])
                  & ((latency < latency[i]) | (accuracy > accuracy[i])))
        keep[i] = not better.any()
    return keep


def plot_pareto(frame: pd.DataFrame, ax=None):
    """Accuracy against latency of each variant (one task, profile, device and batch shape at a
    time, since latencies are only comparable on one machine at one shape), front marked.
    Each variant has its own marker, named in the legend beside the axes, so no two labels
    can overlap however close the points are."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    frame = frame.reset_index(drop=True)
    front = pareto_front(frame["latency_ms"], frame["accuracy"])
    markers = "osD^vP*Xh<>p"
    for i, r in frame.iterrows():
        size = "" if pd.isna(r.get("size_mb")) else f", {r['size_mb']:.0f} MB"
        ax.plot(r["latency_ms"], r["accuracy"], markers[i % len(markers)], ms=8,
                color=plt.cm.tab10(i % 10), markeredgecolor="k" if front[i] else "none",
                label=f"{r['model']}{size}" + (" (front)" if front[i] else ""))
    order = np.argsort(frame["latency_ms"].to_numpy()[front])
    ax.plot(frame["latency_ms"].to_numpy()[front][order],
            frame["accuracy"].to_numpy()[front][order], "k--", lw=1, label="Pareto front")
    ax.set_xlabel("latency per batch (ms)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{int(front.sum())} of {len(frame)} variants are on the Pareto front",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=0.3)
    return ax


# ------------------------------------------------------------------- run costs
def run_costs(ledger: pd.DataFrame) -> pd.DataFrame:
    """Training time and peak memory of every recorded run that logged them."""
    if ledger.empty:
        return pd.DataFrame(columns=["notebook", "model", "task", "profile", "device",
                                     "train_seconds", "peak_memory_mb"])
    cols = ["notebook", "model", "task", "profile", "device", "train_seconds", "peak_memory_mb"]
    frame = ledger[[c for c in cols if c in ledger]].copy()
    has = frame[[c for c in ("train_seconds", "peak_memory_mb") if c in frame]].notna().any(axis=1)
    return frame[has].sort_values(["notebook", "model"]).reset_index(drop=True)


def summary(ledger: pd.DataFrame) -> pd.DataFrame:
    """Per notebook and profile: the run shown (its id and time) and how many rows it recorded."""
    if ledger.empty:
        return pd.DataFrame(columns=["notebook", "profile", "run", "rows", "recorded"])
    return (ledger.groupby(["notebook", "profile"]).agg(run=("run", "last"), rows=("time", "size"),
                                                        recorded=("time", "max"))
            .reset_index())


# ------------------------------------------------------------------- standalone HTML report
def _figure_html(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="",
                         border=0, classes="table")


def export_html(ledger: pd.DataFrame, path: str | Path | None = None,
                notebooks: str | Path = NOTEBOOKS) -> Path:
    """Write a standalone HTML report (tables and embedded figures) and return its path
    (default build/results_dashboard.html under `runtime.work_dir()`, never site-packages)."""
    import matplotlib.pyplot as plt

    path = Path(path) if path else work_dir() / "build" / "results_dashboard.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = ["<h1>bigmodel-lab results</h1>",
             f"<p>Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC from "
             "results/ledger.jsonl and the published anchors in bigmodel_lab/results.py. "
             "Hollow markers: offline stand-in data, not the benchmark.</p>"]
    if ledger.empty:
        parts.append(f"<p><b>{html.escape(empty_message(notebooks))}</b></p>")
    else:
        parts += ["<h2>Runs</h2>", _table_html(summary(ledger))]
    for task in tasks(ledger):
        parts.append(f"<h2>{html.escape(TASK_NAMES.get(task, task))}</h2>")
        parts.append(_table_html(task_table(ledger, task)))
        ax = plot_task(ledger, task)
        if ax is not None:
            parts.append(_figure_html(ax.figure))
            plt.close(ax.figure)
    frame, used = variants(ledger)
    if not frame.empty:
        parts.append("<h2>Compression and inference variants</h2>")
        parts.append(f"<p>Latency column: {used['latency']}; size column: {used['size']}.</p>")
        for (task, profile, device, shape, threads), group in frame.groupby(GROUP):
            parts.append(f"<h3>{html.escape(str(task))}, {profile} profile, {device}, "
                         f"batch {shape} tokens, {threads} thread(s)</h3>")
            parts.append(_table_html(group.drop(columns=["time"])))
            if len(group) > 1:
                ax = plot_pareto(group)
                parts.append(_figure_html(ax.figure))
                plt.close(ax.figure)
    costs = run_costs(ledger)
    if not costs.empty:
        parts += ["<h2>Run costs</h2>", _table_html(costs)]
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto} "
             ".table{border-collapse:collapse;font-size:90%} "
             ".table td,.table th{padding:2px 8px;border-bottom:1px solid #ddd}")
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>bigmodel-lab "
                    f"results</title><style>{style}</style></head><body>{''.join(parts)}"
                    "</body></html>", encoding="utf-8")
    return path
