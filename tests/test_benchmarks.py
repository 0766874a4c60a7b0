import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import readme  # noqa: E402


def test_readme_shows_the_last_measured_benchmarks():
    bench = json.loads((ROOT / "results" / "bench.json").read_text())
    assert readme.render(bench) in (ROOT / "README.md").read_text(), (
        "README benchmark table is out of date: run python benchmarks/readme.py")
