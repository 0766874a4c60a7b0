"""The dashboard shows the ledger beside the anchors, and nothing that is in neither."""

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bigmodel_lab import dashboard, results
from bigmodel_lab.runtime import Config

RUNS: dict = {}  # (notebook, profile, run) -> the Config of that run (one per lab.setup call)


def record(notebook, model, accuracy, profile="cpu", task="sst2", data="offline stand-in",
           run="first", **metrics):
    cfg = RUNS.setdefault((notebook, profile, run), Config(notebook=notebook, profile=profile,
                                                           device="cpu"))
    results.record(cfg, task=task, model=model, metrics={"accuracy": accuracy, **metrics},
                   data_source=data, train_seconds=12.5, peak_memory_mb=900.0)


def test_empty_ledger_names_the_notebooks_to_run(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["lab.results.record(cfg, task='sst2')"]}]}
    (tmp_path / "06_finetuning.ipynb").write_text(json.dumps(nb))
    (tmp_path / "02_attention.ipynb").write_text(json.dumps({"cells": []}))
    ledger = dashboard.load()
    assert ledger.empty
    message = dashboard.empty_message(tmp_path)
    assert "06_finetuning.ipynb" in message and "02_attention" not in message
    page = dashboard.export_html(ledger, tmp_path / "report.html", notebooks=tmp_path)
    assert "06_finetuning.ipynb" in page.read_text()


def test_task_table_puts_latest_run_beside_anchors_and_marks_stand_ins():
    record("06", "MiniLM", 0.80)
    record("06", "MiniLM", 0.83, run="second")  # rerun: only the latest is shown
    record("06", "MiniLM", 0.91, profile="gpu", data="nyu-mll/glue/sst2 from the hub")
    table = dashboard.task_table(dashboard.load(), "sst2")
    ours = table[table["source"] == "this book"].set_index("profile")
    assert ours.loc["cpu", "accuracy"] == 0.83 and not ours.loc["cpu", "benchmark"]
    assert ours.loc["gpu", "benchmark"]
    published = table[table["source"] == "published"]
    assert len(published) == len(results.anchors("sst2"))


def test_every_accuracy_shown_comes_from_the_ledger_or_the_anchors():
    record("06", "MiniLM", 0.8123)
    record("07", "TF-IDF + LR", 0.8811, task="imdb")
    ledger = dashboard.load()
    allowed = set(ledger["metrics.accuracy"]) | set(results.anchors()["value"])
    for task in dashboard.tasks(ledger):
        assert set(dashboard.task_table(ledger, task)["accuracy"]) <= allowed


def test_variants_use_latency_and_size_columns_and_report_which():
    record("09", "fp32", 0.85, latency_ms=40.0, size_mb=90.0)
    record("09", "int8", 0.845, latency_ms=15.0, size_mb=25.0)
    record("06", "no latency", 0.86)
    frame, used = dashboard.variants(dashboard.load())
    assert used == {"latency": "metrics.latency_ms", "size": "metrics.size_mb"}
    assert sorted(frame["model"]) == ["fp32", "int8"]


def test_variants_measured_at_different_batch_shapes_are_kept_apart():
    cfg = Config(notebook="11", profile="cpu", device="cpu")
    for model, batch, length in [("a", 32, 128), ("b", 32, 64)]:
        results.record(cfg, task="sst2", model=model, data_source="offline",
                       metrics={"accuracy": 0.8, "latency_ms": 10.0},
                       extra={"bench_batch": batch, "bench_len": length})
    frame, _ = dashboard.variants(dashboard.load())
    assert sorted(frame["shape"]) == ["32 x 128", "32 x 64"]
    assert len(list(frame.groupby(dashboard.GROUP))) == 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 100), st.floats(0, 1)), min_size=1, max_size=12))
def test_pareto_front_points_are_undominated_and_the_rest_dominated(points):
    latency, accuracy = map(np.array, zip(*points))
    front = dashboard.pareto_front(latency, accuracy)
    assert front.any()
    for i in range(len(points)):
        dominated = ((latency <= latency[i]) & (accuracy >= accuracy[i])
                     & ((latency < latency[i]) | (accuracy > accuracy[i])))
        assert front[i] == (not dominated.any())


def test_export_html_is_standalone_with_tables_figures_and_costs(tmp_path):
    record("09", "fp32", 0.85, latency_ms=40.0, size_mb=90.0)
    record("09", "int8", 0.845, latency_ms=15.0, size_mb=25.0)
    page = dashboard.export_html(dashboard.load(), tmp_path / "build" / "report.html")
    text = page.read_text()
    assert text.count("data:image/png;base64,") >= 2  # task plots + the Pareto plot
    assert "Compression and inference variants" in text and "metrics.latency_ms" in text
    assert "0.845" in text and "Run costs" in text and "Sanh et al. 2019" in text
    assert "<script" not in text and "<link" not in text  # nothing fetched when opened


def test_empty_ledger_gives_empty_tables_with_their_columns():
    ledger = dashboard.load()
    frame, used = dashboard.variants(ledger)
    assert frame.empty and "latency_ms" in frame.columns and used["latency"] is None
    assert list(frame.groupby(dashboard.GROUP)) == []
    assert dashboard.run_costs(ledger).empty and dashboard.summary(ledger).empty
    assert len(dashboard.task_table(ledger, "sst2")) == len(results.anchors("sst2"))


def test_best_results_sets_only_benchmark_runs_against_published():
    record("06", "MiniLM", 0.95)  # offline stand-in: higher, but a different test set
    record("06", "MiniLM", 0.90, profile="gpu", data="nyu-mll/glue/sst2 from the hub")
    row = dashboard.best_results(dashboard.load()).set_index("task").loc["sst2"]
    assert row["best_benchmark"].startswith("0.9000")
    assert np.isclose(row["gap_to_published"], results.anchors("sst2")["value"].max() - 0.90)
    assert row["best_stand_in"].startswith("0.9500") and "not comparable" in row["best_stand_in"]


def test_a_rerun_supersedes_every_row_of_the_previous_run_of_that_notebook_and_profile():
    record("08", "dense", 0.840, latency_ms=675.0)
    record("08", "18 of 72 heads removed", 0.844, latency_ms=600.8)
    record("08", "36 of 72 heads removed", 0.820, latency_ms=560.0)
    record("09", "int8", 0.85, latency_ms=15.0)  # another notebook: untouched
    record("08", "dense", 0.840, latency_ms=680.3, run="second")
    record("08", "18 of 72 heads removed", 0.847, latency_ms=612.3, run="second")
    everything = dashboard.load(superseded=True)
    assert everything["superseded"].sum() == 3 and len(everything) == 6
    ledger = dashboard.load()
    assert set(ledger["run"]) == {results.run_id(RUNS[("08", "cpu", "second")]),
                                  results.run_id(RUNS[("09", "cpu", "first")])}
    frame, _ = dashboard.variants(ledger)
    heads = frame.set_index("model").loc["18 of 72 heads removed"]
    assert (heads["accuracy"], heads["latency_ms"]) == (0.847, 612.3)
    assert "36 of 72 heads removed" not in set(frame["model"])  # not mixed in from the old run
    assert dashboard.summary(ledger).set_index("notebook").loc["08", "rows"] == 2


def test_rows_without_a_run_id_are_grouped_into_runs_by_time(tmp_path):
    rows = [("2026-11-27T01:00:00+00:00", 0.80), ("2026-11-27T01:09:00+00:00", 0.81),
            ("2026-11-27T02:30:00+00:00", 0.83), ("2026-11-27T02:31:00+00:00", 0.84)]
    path = tmp_path / "old.jsonl"
    path.write_text("".join(json.dumps({"time": t, "notebook": "08", "profile": "cpu",
                                        "task": "sst2", "model": f"m{i}", "data_source": "x",
                                        "metrics": {"accuracy": a}}) + "\n"
                            for i, (t, a) in enumerate(rows)))
    frame = results.read_ledger(path)
    assert frame["superseded"].tolist() == [True, True, False, False]
    assert frame["run"].nunique() == 2
    assert results.read_ledger(path, current=True)["metrics.accuracy"].tolist() == [0.83, 0.84]


def test_one_setup_is_one_run_and_the_next_setup_is_another():
    a, b = Config(notebook="06", profile="cpu", device="cpu"), Config(notebook="06",
                                                                       profile="cpu", device="cpu")
    assert results.run_id(a) == results.run_id(a) != results.run_id(b)
    assert "06" in results.run_id(a)


def test_a_task_without_accuracy_shows_its_own_metric_not_an_empty_plot():
    cfg = Config(notebook="05", profile="cpu", device="cpu")
    results.record(cfg, task="language modelling", model="tiny GPT", data_source="offline",
                   metrics={"val_perplexity": 31.5, "bigram_perplexity": 60.2})
    ledger = dashboard.load()
    table = dashboard.task_table(ledger, "language modelling")
    assert table["metric"].tolist() == ["val_perplexity"] and table["value"].tolist() == [31.5]
    ax = dashboard.plot_task(ledger, "language modelling")
    assert "1 result" in ax.get_title() and "no run" not in ax.get_title()
    best = dashboard.best_results(ledger).set_index("task").loc["language modelling"]
    assert best["runs"] == 1 and best["best_stand_in"].startswith("31.5000")
    assert dashboard.plot_task(dashboard.load(), "a task nobody ran and nobody published") is None


def test_task_plot_has_a_legend_for_every_marker_meaning_and_intervals():
    record("06", "MiniLM", 0.84, accuracy_se=0.0126)
    record("06", "MiniLM", 0.91, profile="gpu", data="nyu-mll/glue/sst2 from the hub")
    ax = dashboard.plot_task(dashboard.load(), "sst2")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("stand-in" in t for t in legend) and any("published" in t for t in legend)
    assert any("cpu" in t for t in legend) and any("gpu" in t for t in legend)
    assert "95% interval" in ax.get_xlabel()
    assert all(t.get_fontsize() >= 8 for t in ax.get_yticklabels())


def test_pareto_plot_names_variants_in_a_legend_not_overlapping_annotations():
    record("08", "dense", 0.840, latency_ms=675.0, size_mb=90.0)
    record("08", "18 of 72 heads removed", 0.844, latency_ms=674.0, size_mb=80.0)
    frame, _ = dashboard.variants(dashboard.load())
    ax = dashboard.plot_pareto(frame)
    assert not ax.texts  # no annotation to collide with another
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("18 of 72 heads removed") for t in legend) and "Pareto front" in legend


def test_variants_timed_with_other_thread_counts_are_kept_apart():
    for notebook, threads in (("09", 2), ("10", 1)):
        cfg = Config(notebook=notebook, profile="cpu", device="cpu")
        results.record(cfg, task="sst2", model=f"int8 ({notebook})", data_source="offline",
                       metrics={"accuracy": 0.8, "latency_ms": 10.0},
                       extra={"bench_batch": 32, "bench_len": 128, "threads": threads})
    frame, _ = dashboard.variants(dashboard.load())
    assert sorted(frame["threads"]) == ["1", "2"]
    assert len(list(frame.groupby(dashboard.GROUP))) == 2


def test_new_notebooks_with_their_own_tasks_and_metrics_need_no_dashboard_change(tmp_path):
    cfg = Config(notebook="17", profile="cpu", device="cpu")
    results.record(cfg, task="steering an LLM (DPO)", model="SmolLM2 + DPO", data_source="offline",
                   metrics={"positive_rate": 0.71, "judge": "MiniLM classifier", "kl": 0.8},
                   extra={"n_eval": 100})
    ledger = dashboard.load()
    assert "steering an LLM (DPO)" in dashboard.tasks(ledger)
    table = dashboard.task_table(ledger, "steering an LLM (DPO)")
    assert table["metric"].tolist() == ["positive_rate"] and table["value"].tolist() == [0.71]
    assert dashboard.plot_task(ledger, "steering an LLM (DPO)") is not None
    assert dashboard.best_results(ledger).set_index("task").loc["steering an LLM (DPO)", "runs"] == 1
    assert "steering an LLM" in dashboard.export_html(ledger, tmp_path / "r.html").read_text()
