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
    """After installing the browser of the browser test (only when missing), nothing else."""
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    assert ci[-1] == "make test" and ci.count("make test") == 1
    setup = ci[:-1]
    assert setup == [] or (setup[0].startswith("if ! command -v chromium") and setup[-1] == "fi"
                           and all("apt-get" in line for line in setup[1:-1])), setup
    assert all("chromium chromium-driver" in line for line in setup if "apt-get install" in line)
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


# ------------------------------------------------------------ torch: never CUDA by accident
def _report(name: str, version: str, requires: list[str] | None = None) -> dict:
    return {"install": [{"metadata": {"name": name, "version": version,
                                      "requires_dist": requires or []}}]}


CUDA_TORCH = _report("torch", "2.13.0", [
    "filelock", 'nvidia-cublas-cu12==12.8.4.1; platform_system == "Linux"',
    'nvidia-cudnn-cu12==9.10.2.21; platform_system == "Linux"',
    'nvidia-nccl-cu12==2.27.3; platform_system == "Windows"', 'optree; extra == "optree"'])


@pytest.mark.parametrize("report,expected", [
    (CUDA_TORCH, ["nvidia-cublas-cu12", "nvidia-cudnn-cu12"]),
    (_report("torch", "2.13.0+cu126"), ["torch==2.13.0+cu126"]),
    (_report("torch", "2.13.0+cpu", ["filelock", "sympy>=1.13.3"]), []),
    (_report("nvidia-cublas-cu12", "12.8.4.1"), ["nvidia-cublas-cu12==12.8.4.1"]),
])
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="markers name Linux")
def test_cuda_packages_reads_the_install_plan(monkeypatch, report, expected):
    monkeypatch.setattr(ensure_torch.sys, "platform", "linux")
    assert ensure_torch.cuda_packages(report) == expected


@pytest.fixture
def no_torch_on_a_cpu_linux_box(monkeypatch):
    """No torch installed, Linux without nvidia-smi, PyTorch's CPU index unreachable."""
    monkeypatch.setattr(ensure_torch.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(ensure_torch.sys, "platform", "linux")
    monkeypatch.setattr(ensure_torch.shutil, "which", lambda _: None)
    monkeypatch.setattr(ensure_torch, "reachable", lambda host: False)
    monkeypatch.delenv(ensure_torch.ALLOW_CUDA, raising=False)
    installs = []
    monkeypatch.setattr(ensure_torch.subprocess, "check_call", installs.append)
    return installs


def test_install_stops_with_a_fix_before_fetching_a_cuda_torch(monkeypatch,
                                                               no_torch_on_a_cpu_linux_box):
    monkeypatch.setattr(ensure_torch, "dry_run", lambda cmd: CUDA_TORCH)
    with pytest.raises(SystemExit) as stop:
        ensure_torch.main()
    message = str(stop.value)
    assert "CUDA build" in message and "nvidia-cublas-cu12" in message
    assert "HTTPS_PROXY" in message and "--index-url" in message  # the fixes
    assert f"{ensure_torch.ALLOW_CUDA}=1 make install" in message
    assert no_torch_on_a_cpu_linux_box == []  # nothing was installed


def test_install_goes_on_when_pips_own_configuration_offers_a_cpu_torch(
        monkeypatch, no_torch_on_a_cpu_linux_box):
    # e.g. a wheel folder or a mirror in pip.conf holding torch==X+cpu: keep that working.
    monkeypatch.setattr(ensure_torch, "dry_run", lambda cmd: _report("torch", "2.13.0+cpu"))
    ensure_torch.main()
    [cmd] = no_torch_on_a_cpu_linux_box
    assert str(ensure_torch.PIN_FILE) in cmd and "-q" not in cmd  # pip shows its progress


def test_the_cuda_build_can_still_be_asked_for(monkeypatch, no_torch_on_a_cpu_linux_box):
    monkeypatch.setenv(ensure_torch.ALLOW_CUDA, "1")
    monkeypatch.setattr(ensure_torch, "dry_run", lambda cmd: pytest.fail("no dry run needed"))
    ensure_torch.main()
    assert len(no_torch_on_a_cpu_linux_box) == 1


def test_dry_run_asks_pip_for_a_report_without_installing(monkeypatch):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return ensure_torch.subprocess.CompletedProcess(cmd, 0, stdout='{"install": []}')

    monkeypatch.setattr(ensure_torch.subprocess, "run", fake_run)
    assert ensure_torch.dry_run(["pip", "install", "-r", "x"]) == {"install": []}
    assert {"--dry-run", "--report", "-"} <= set(seen["cmd"])


# ------------------------------------------------------------------ the early Python check
def test_python_check_names_the_supported_versions_and_the_fix():
    import check_python

    pyproject = 'requires-python = ">=3.11,<3.14"\n'
    assert check_python.problem((3, 12, 1), "/usr/bin/python3", pyproject) is None
    message = check_python.problem((3, 10, 12), "/usr/bin/python3", pyproject)
    assert "needs Python 3.11, 3.12 or 3.13" in message and "3.10.12" in message
    assert "make PYTHON=python3.13 lab" in message


# ------------------------------------------------------------------------------ make lab
def test_lab_command_opens_the_repository_root_on_notebook_00_and_allows_root():
    import lab

    as_root = lab.lab_command(["--no-browser"], euid=0)
    assert f"--ServerApp.root_dir={ROOT}" in as_root
    assert "--LabApp.default_url=/lab/tree/notebooks/00_welcome.ipynb" in as_root
    assert "--allow-root" in as_root and as_root[-1] == "--no-browser"
    assert as_root[:4] == [sys.executable, "-m", "jupyter", "lab"]  # this env's JupyterLab
    assert "--allow-root" not in lab.lab_command([], euid=1000)
    assert (ROOT / lab.FIRST_NOTEBOOK).exists()
    assert "scripts/lab.py $(JUPYTER_ARGS)" in (ROOT / "Makefile").read_text()


def test_lab_env_puts_the_repos_jupyter_folder_first():
    import os

    import lab

    env = lab.lab_env({"JUPYTER_PATH": "/mine", "HOME": "/root"})
    assert env["JUPYTER_PATH"] == os.pathsep.join([str(ROOT / "jupyter"), "/mine"])
    assert env["JUPYTER_CONFIG_PATH"] == str(ROOT / "jupyter") and env["HOME"] == "/root"


def test_lab_settings_turn_autosave_off():
    import json

    overrides = json.loads((ROOT / "jupyter" / "labconfig" /
                            "default_setting_overrides.json").read_text())
    assert overrides["@jupyterlab/docmanager-extension:plugin"]["autosave"] is False


def test_every_notebook_carries_the_kernelspec_the_lab_offers():
    """Else JupyterLab rewrites the notebook's metadata (and dirties it) when it opens it."""
    import json

    spec = json.loads((ROOT / "jupyter" / "kernels" / "python3" / "kernel.json").read_text())
    assert spec["argv"][0] == "python"  # jupyter_client runs it with the server's interpreter
    expected = {"name": "python3", "display_name": spec["display_name"],
                "language": spec["language"]}
    wrong = {}
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        found = json.loads(path.read_text())["metadata"].get("kernelspec")
        if found != expected:
            wrong[str(path.relative_to(ROOT))] = found
    assert not wrong, f"kernelspec should be {expected}: {wrong}"
