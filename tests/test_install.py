"""The install never pulls CUDA wheels by itself, and the torch pin lives in one place."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import ensure_torch  # noqa: E402


def test_torch_is_pinned_in_exactly_one_file():
    pin = (ROOT / "requirements" / "torch-cpu.txt").read_text().strip()
    assert re.fullmatch(r"torch==\d+\.\d+\.\d+", pin)
    for name in ("pyproject.toml", "Makefile", "environment.yml", "binder/environment.yml",
                 "binder/postBuild"):
        assert "torch==" not in (ROOT / name).read_text(), name


def test_installers_reference_the_pin_file():
    for name in ("environment.yml", "binder/postBuild"):
        assert "requirements/torch-cpu.txt" in (ROOT / name).read_text(), name
    assert "ensure_torch.py" in (ROOT / "Makefile").read_text()


@pytest.mark.parametrize("gpu,reachable,expect_cpu_index", [
    (False, True, True), (False, False, False), (True, True, False)])
def test_torch_install_command(monkeypatch, gpu, reachable, expect_cpu_index):
    monkeypatch.setattr(ensure_torch.sys, "platform", "linux")
    monkeypatch.setattr(ensure_torch.shutil, "which", lambda _: "/usr/bin/nvidia-smi" if gpu else None)
    monkeypatch.setattr(ensure_torch, "reachable", lambda host: reachable)
    cmd = ensure_torch.install_command()
    assert str(ensure_torch.PIN_FILE) in cmd
    assert (ensure_torch.CPU_INDEX in cmd) is expect_cpu_index


def test_ci_runs_the_readme_test_command():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    assert ci == ["make test"]
    assert "make test" in (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands_and_lists_every_notebook():
    from bigmodel_lab.book import CHAPTERS, readme_table

    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert "make lab" in first_block and "make test" in first_block
    assert readme_table() in readme
    assert len(CHAPTERS) == 18


def test_every_install_route_uses_the_lock():
    for name in ("Makefile", "environment.yml", "binder/postBuild"):
        assert "requirements/constraints.txt" in (ROOT / name).read_text(), name
    lock = (ROOT / "requirements" / "constraints.txt").read_text()
    assert "make lock" in lock and "\ntorch==" not in lock


def test_python_range_is_the_same_in_pyproject_and_the_early_check():
    import subprocess
    import sys

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.11,<3.14"' in pyproject
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_python.py")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr  # this interpreter is inside the range
