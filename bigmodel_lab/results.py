"""The results ledger (one JSON line per experiment) and the published figures beside it."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runtime import SOURCES, Config, versions, work_dir


def ledger_path() -> Path:
    """$BIGMODEL_LAB_LEDGER when set (tests use it), else results/ledger.jsonl under
    `runtime.work_dir()`: the clone's committed ledger, or, for a pip install (Colab), the
    working directory's results/ (never site-packages)."""
    if os.environ.get("BIGMODEL_LAB_LEDGER", "").strip():
        return Path(os.environ["BIGMODEL_LAB_LEDGER"])
    return work_dir() / "results" / "ledger.jsonl"


def record(
    cfg: Config,
    *,
    task: str,
    model: str,
    metrics: dict[str, float],
    data_source: str | None = None,
    train_seconds: float | None = None,
    peak_memory_mb: float | None = None,
    extra: dict[str, Any] | None = None,
    force: bool = False,
) -> dict | None:
    """Append one experiment to the ledger and return the entry.

    Smoke and rehearsal runs are not recorded (they would drown the real figures) unless
    `force=True`.
    The append holds an exclusive file lock, so two notebooks can record at once. Every entry
    carries the id of its run (one per `lab.setup` call) and names its headline metric (the
    first key of `metrics`): a later run of the same notebook in
    the same profile supersedes all its earlier rows (see `mark_superseded`).
    """
    entry = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run": run_id(cfg),
        "notebook": cfg.notebook,
        "task": task,
        "model": model,
        "data_source": data_source or SOURCES.get("data", "n/a"),
        "profile": cfg.profile,
        "device": cfg.device,
        "metrics": {k: _plain(v) for k, v in metrics.items()},
        "headline": next(iter(metrics), None),  # the first metric given is the one to show
        "train_seconds": _plain(train_seconds),
        "peak_memory_mb": _plain(peak_memory_mb),
        "seed": cfg.seed,
        "versions": versions(),
        "extra": {k: _plain(v) for k, v in (extra or {}).items()},
    }
    if cfg.profile in ("smoke", "rehearsal") and not force:  # rehearsal: gpu code, toy sizes
        return entry
    path = ledger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        _lock(f)
        f.write(line)
        f.flush()
    return entry


_RUNS: dict[int, tuple[Config, str]] = {}  # id(cfg) -> (cfg, run id); holding cfg keeps id unique


def run_id(cfg: Config) -> str:
    """The id of the run `cfg` belongs to: one per `lab.setup` call (so one per Run All)."""
    known = _RUNS.get(id(cfg))
    if known is None or known[0] is not cfg:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        known = _RUNS[id(cfg)] = (cfg, f"{stamp}-{cfg.notebook}-{uuid.uuid4().hex[:6]}")
    return known[1]


LEGACY_GAP_MINUTES = 20  # rows recorded before run ids: a longer pause starts a new run


def mark_superseded(frame):
    """Add `run` (filled in for old rows) and `superseded` columns to a ledger frame.

    A notebook's rows in one profile belong to runs; only the latest run counts, so a table
    never mixes a figure from today's run with one from a run whose outputs were overwritten.
    Rows written before entries carried a run id are grouped by time: a pause of more than
    LEGACY_GAP_MINUTES between two rows of the same notebook and profile starts a new run.
    """
    import pandas as pd

    if frame.empty:
        return frame.assign(run=pd.Series(dtype=object), superseded=pd.Series(dtype=bool))
    frame = frame.copy()
    if "run" not in frame:
        frame["run"] = None
    when = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    frame["superseded"] = False
    for _, group in frame.groupby(["notebook", "profile"], sort=False):
        order = when[group.index].sort_values(kind="stable")
        legacy = group.loc[order.index, "run"].isna()
        gaps = order.diff() > pd.Timedelta(minutes=LEGACY_GAP_MINUTES)
        session = (gaps | ~legacy).cumsum()  # a new legacy session at each long pause
        runs = group.loc[order.index, "run"].where(~legacy, "legacy-" + session.astype(str))
        frame.loc[order.index, "run"] = runs
        latest = runs.iloc[-1]
        frame.loc[order.index, "superseded"] = (runs != latest).to_numpy()
    return frame


def read_ledger(path: str | os.PathLike | None = None, current: bool = False):
    """The ledger as a pandas DataFrame, metrics flattened into columns (empty if none).

    Columns `run` and `superseded` say which run each row belongs to and whether a later run
    of the same notebook and profile replaced it; `current=True` keeps only the rows that are
    not superseded (the runs whose outputs the notebooks show).
    """
    import pandas as pd

    path = Path(path) if path else ledger_path()
    if not path.exists():
        return pd.DataFrame()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    frame = mark_superseded(pd.json_normalize(rows))
    if current:
        frame = frame[~frame["superseded"]].reset_index(drop=True)
    return frame


def _lock(f) -> None:
    try:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file is closed
    except ImportError:  # pragma: no cover - Windows: appends of one line are near-atomic
        pass


def _plain(value: Any) -> Any:
    """numpy / torch scalars -> plain Python numbers, so the ledger stays readable JSON."""
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, RuntimeError):
            pass
    if isinstance(value, float):
        return round(value, 6)
    return value


@dataclass(frozen=True)
class Anchor:
    """A published figure, with where it was published."""

    task: str  # sst2, imdb, rotten_tomatoes
    model: str
    metric: str
    value: float
    split: str
    citation: str


ANCHORS: tuple[Anchor, ...] = (
    Anchor("sst2", "BERT-base", "accuracy", 0.927, "GLUE dev",
           "Sanh et al. 2019, DistilBERT, Table 1 (arXiv:1910.01108)"),
    Anchor("sst2", "DistilBERT", "accuracy", 0.913, "GLUE dev",
           "Sanh et al. 2019, DistilBERT, Table 1; distilbert-base-uncased model card"),
    Anchor("sst2", "BERT-base", "accuracy", 0.935, "GLUE test",
           "Devlin et al. 2019, BERT, Table 1 (arXiv:1810.04805)"),
    Anchor("imdb", "BERT-base", "accuracy", 0.9346, "test",
           "Sanh et al. 2019, DistilBERT, Table 2 (arXiv:1910.01108)"),
    Anchor("imdb", "DistilBERT", "accuracy", 0.9282, "test",
           "Sanh et al. 2019, DistilBERT, Table 2 (arXiv:1910.01108)"),
    Anchor("imdb", "NBSVM-bi", "accuracy", 0.9122, "test",
           "Wang & Manning 2012, Baselines and Bigrams, Table 3 (ACL)"),
    Anchor("imdb", "Maas et al. word vectors", "accuracy", 0.8889, "test",
           "Maas et al. 2011, Learning Word Vectors for Sentiment Analysis, Table 2 (ACL)"),
    Anchor("imdb", "SA-LSTM (pretrained LSTM)", "accuracy", 0.9276, "test",
           "Dai & Le 2015, Semi-supervised Sequence Learning, IMDB test error 7.24% (NeurIPS)"),
    Anchor("rotten_tomatoes", "NBSVM-bi", "accuracy", 0.794, "10-fold CV",
           "Wang & Manning 2012, Baselines and Bigrams, Table 3 (RT-s)"),
    Anchor("rotten_tomatoes", "CNN-non-static (Kim)", "accuracy", 0.815, "10-fold CV",
           "Kim 2014, Convolutional Neural Networks for Sentence Classification, Table 2 (MR)"),
)


def anchors(task: str | None = None):
    """Published figures as a DataFrame, optionally for one task."""
    import pandas as pd

    frame = pd.DataFrame([a.__dict__ for a in ANCHORS])
    return frame if task is None else frame[frame["task"] == task].reset_index(drop=True)


def beside_anchors(task: str | tuple[str, ...], runs, data_source: str, is_benchmark: bool,
                   metric: str = "accuracy"):
    """This run's results beside the published figures for `task` (or several), one table.

    `runs` maps a model name to its value of `metric` (or is a list of (model, value) pairs).
    Every row says where its number comes from: "this run" with the data source (and
    "offline stand-in, not the benchmark" when it is not the benchmark), or the citation.
    """
    import pandas as pd

    pairs = list(runs.items()) if isinstance(runs, dict) else list(runs)
    where = f"this run: {data_source}"
    if not is_benchmark:
        where += " [offline stand-in, not the benchmark]"
    ours = [{"task": "this run", "model": m, metric: round(float(v), 4), "split": "our test split",
             "source": where} for m, v in pairs]
    tasks = (task,) if isinstance(task, str) else tuple(task)
    table = anchors()
    table = table[table["task"].isin(tasks) & (table["metric"] == metric)]
    published = [{"task": a.task, "model": a.model, metric: a.value, "split": a.split,
                  "source": f"published: {a.citation}"} for a in table.itertuples()]
    return pd.DataFrame(ours + published, columns=["task", "model", metric, "split", "source"])
