import dataclasses
import platform

import numpy as np
import pytest
import torch

import bigmodel_lab as lab
from bigmodel_lab import profiles, runtime


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("BIGMODEL_LAB_PROFILE", "gpu")
    assert lab.resolve_profile() == "gpu"


def test_unset_profile_means_smoke_on_ci(monkeypatch):
    monkeypatch.delenv("BIGMODEL_LAB_PROFILE", raising=False)
    monkeypatch.setenv("CI", "true")
    assert lab.resolve_profile() == "smoke"


def test_unset_profile_off_ci_follows_cuda(monkeypatch):
    monkeypatch.delenv("BIGMODEL_LAB_PROFILE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(runtime, "_cuda_available", lambda: True)
    assert lab.resolve_profile() == "gpu"
    monkeypatch.setattr(runtime, "_cuda_available", lambda: False)
    assert lab.resolve_profile() == "cpu"


def test_unknown_profile_names_the_valid_ones(monkeypatch):
    monkeypatch.setenv("BIGMODEL_LAB_PROFILE", "turbo")
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        lab.setup("00", quiet=True)


def test_unknown_notebook_id_lists_known_ids():
    with pytest.raises(ValueError, match="Known ids: 00"):
        lab.setup("99", profile="smoke", quiet=True)


def test_setup_returns_frozen_config_with_profile_row():
    cfg = lab.setup("00", profile="smoke", quiet=True)
    assert cfg.profile == "smoke" and cfg.device in ("cpu", "cuda", "mps")
    assert cfg.n_train == profiles.SETTINGS["00"]["smoke"]["n_train"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.profile = "gpu"


def test_missing_setting_says_where_settings_live():
    cfg = lab.setup("00", profile="smoke", quiet=True)
    with pytest.raises(AttributeError, match="profiles.py"):
        _ = cfg.learning_rate


def test_setup_seeds_python_numpy_and_torch():
    lab.setup("00", profile="smoke", seed=7, quiet=True)
    a = (np.random.rand(), torch.rand(1).item())
    lab.setup("00", profile="smoke", seed=7, quiet=True)
    assert a == (np.random.rand(), torch.rand(1).item())


def test_card_shows_profile_device_and_versions(capsys):
    lab.setup("00", profile="smoke")
    out = capsys.readouterr().out
    for word in ("profile smoke", "device", "torch", "transformers", "datasets", "python"):
        assert word in out


def test_every_notebook_row_has_all_three_profiles():
    for notebook, rows in profiles.SETTINGS.items():
        assert set(rows) == set(profiles.PROFILES), notebook


@pytest.mark.skipif(platform.system() != "Linux", reason="glibc tuning applies on Linux only")
def test_freed_memory_goes_back_to_the_system_on_linux():
    assert runtime.return_freed_memory() is True


def test_setup_tunes_the_allocator_only_for_notebooks_that_train(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "return_freed_memory", lambda: calls.append(1) or True)
    lab.setup("07", profile="smoke", quiet=True)
    lab.setup("09", profile="smoke", quiet=True)
    assert calls == [1] and "07" in profiles.LEAN_MEMORY and "09" not in profiles.LEAN_MEMORY


def test_card_names_the_package_that_differs_from_the_lock(tmp_path):
    from importlib import metadata

    from bigmodel_lab import runtime

    assert runtime.read_lock(), "requirements/constraints.txt should exist (make lock writes it)"
    # A lock of exactly what is installed, with one version changed by hand.
    installed = {}
    for d in metadata.distributions():  # as lock_differences reads them: no vendored copies
        if d.metadata["Name"] and "_vendor" not in str(getattr(d, "_path", "")):
            installed.setdefault(d.metadata["Name"], d.version)
    lines = [f"{name}=={'0.0.1' if name.lower() == 'numpy' else ver}"
             for name, ver in installed.items()]
    lock = tmp_path / "constraints.txt"
    lock.write_text("\n".join(lines) + "\n")
    status = runtime.lock_status(lock)
    assert status.startswith("1 package(s) differ"), status
    assert "numpy" in status and "locked 0.0.1" in status and "make install" in status


def test_card_says_when_the_installed_set_matches_the_lock(tmp_path):
    from bigmodel_lab import runtime

    lock = tmp_path / "constraints.txt"
    import numpy

    lock.write_text(f"# a comment\nnumpy=={numpy.__version__}\n")
    assert runtime.lock_status(lock).startswith("installed packages match the lock")
    assert "no lock file" in runtime.lock_status(tmp_path / "missing.txt")


def test_lock_leaves_torch_out_so_cuda_users_keep_their_build():
    from bigmodel_lab import runtime

    assert not {"torch", "triton"} & set(runtime.read_lock())
    assert not [n for n in runtime.read_lock() if n.startswith("nvidia-")]


@pytest.mark.parametrize("kwargs, fix", [
    ({"profile": 123}, "Pass e.g. profile='cpu'"),
    ({"notebook_id": 6}, r"lab.setup\('06'\)"),
    ({"seed": "0"}, "seed=0"),
])
def test_wrong_argument_types_of_setup_say_what_to_pass(kwargs, fix):
    from bigmodel_lab import setup

    with pytest.raises(TypeError, match=fix):
        setup(**{"notebook_id": "06", "quiet": True, **kwargs})


def test_replace_folder_keeps_the_old_copy_when_the_write_fails(tmp_path):
    from bigmodel_lab.runtime import replace_folder

    def write(text):
        def fill(new):
            (new / "data.txt").write_text(text)
            (new / "done").write_text("")
        return fill

    folder = replace_folder(tmp_path / "x", write("old"), "done")

    def broken(new):
        (new / "data.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        replace_folder(folder, broken, "done")
    assert (folder / "data.txt").read_text() == "old"
    with pytest.raises(RuntimeError, match="mark"):  # a writer that forgets the mark
        replace_folder(folder, lambda new: (new / "data.txt").write_text("no mark"), "done")
    assert (folder / "data.txt").read_text() == "old"
    replace_folder(folder, write("new"), "done")
    assert (folder / "data.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_recovery_brings_back_the_old_copy_when_the_new_one_is_incomplete(tmp_path):
    from bigmodel_lab.runtime import recover_interrupted_write

    (tmp_path / ".x.old").mkdir()
    (tmp_path / ".x.old" / "data.txt").write_text("old")
    (tmp_path / ".x.new").mkdir()  # no mark: incomplete
    recover_interrupted_write(tmp_path / "x", "done")
    assert (tmp_path / "x" / "data.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_slow_bf16_is_named_with_the_fix(monkeypatch, capsys):
    model = torch.nn.Linear(4, 4)
    assert runtime.warn_if_bf16_is_slow(model) is None  # fp32 weights: nothing to say
    model = model.to(torch.bfloat16)
    monkeypatch.setattr(runtime, "bf16_slowdown", lambda: 4.0)
    assert runtime.warn_if_bf16_is_slow(model) == 4.0
    out = capsys.readouterr().out
    assert "4.0x slower" in out and "model.to(torch.float32)" in out
    monkeypatch.setattr(runtime, "bf16_slowdown", lambda: 0.5)  # AMX / AVX-512 BF16: quiet
    assert runtime.warn_if_bf16_is_slow(model) == 0.5
    assert capsys.readouterr().out == ""


def test_bf16_slowdown_is_a_positive_ratio():
    assert runtime.bf16_slowdown((8, 16, 8), repeats=1) > 0
