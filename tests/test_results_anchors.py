from bigmodel_lab.results import ANCHORS, beside_anchors


def test_results_beside_anchors_mark_an_offline_stand_in():
    table = beside_anchors(("sst2", "rotten_tomatoes"), {"ours": 0.8}, "RT offline", False)
    ours = table[table["task"] == "this run"]
    assert ours["source"].str.contains("not the benchmark").all()
    published = table[table["task"] != "this run"]
    assert len(published) == sum(a.task in ("sst2", "rotten_tomatoes") for a in ANCHORS)
    assert published["source"].str.startswith("published: ").all()


def test_a_benchmark_run_is_not_marked_as_a_stand_in():
    table = beside_anchors("imdb", [("ours", 0.9)], "stanfordnlp/imdb from the hub", True)
    assert not table["source"].str.contains("stand-in").any()
