"""Bad input for mlds train: one line, exit 2, no run folder, nothing registered."""

from __future__ import annotations

import pytest

from mlds.cli import run as cli
from tests.conftest import data_file


@pytest.fixture
def no_forces_file(tmp_path):
    from mlds.convert import convert

    out = tmp_path / "si-scf.h5"
    convert([data_file("q-e/test-suite/pw_scf/scf.benchmark.out")], out)  # scf without forces
    return out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return " ".join(err.split())


@pytest.mark.parametrize("args, message", [
    (["--test-fraction", "0.01"], "empty test split: 20 frame(s) x test_fraction 0.01 gives 0 test frame(s)"),
    (["--cutoff", "-1"], "cutoff must be a positive number"),
    (["--preset", "huge"], "unknown preset 'huge'"),
])
def test_bad_options(cu2s_file, n2p2, tmp_path, capsys, args, message):
    assert cli(["train", "n2p2", str(cu2s_file), "-w", str(tmp_path / "run"), *args]) == 2
    assert message in _one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_elements_not_covered(cu2s_file, n2p2, tmp_path, capsys):
    s = tmp_path / "s.toml"
    s.write_text('elements = ["Cu"]\n')
    assert cli(["train", "n2p2", str(cu2s_file), "-s", str(s), "-w", str(tmp_path / "run")]) == 2
    assert "the data has element S that the settings do not cover" in _one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_too_little_memory_is_estimated_before_anything_runs(cu2s_file, n2p2, tmp_path, capsys):
    s = tmp_path / "s.toml"
    s.write_text('preset = "quick"\n[checks]\nmemory_limit_gib = 0.01\n')
    assert cli(["train", "n2p2", str(cu2s_file), "-s", str(s), "-w", str(tmp_path / "run")]) == 2
    err = _one_line_error(capsys)
    assert "training needs ~114" in err and "MiB to keep the symmetry functions of 2880 atoms" in err
    assert "more than the 10.24 MiB available" in err and "--on MACHINE" in err
    assert not (tmp_path / "run").exists()
    # --dry-run still writes the folder and shows the estimate
    assert cli(["train", "n2p2", str(cu2s_file), "--preset", "quick", "-w", str(tmp_path / "dry"), "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "estimate 114" in out and "nnp-scaling 100" in out and "nnp-train" in out
    assert (tmp_path / "dry" / "job.sh").is_file() and not (tmp_path / "dry" / "steps").exists()


def test_dataset_without_forces(no_forces_file, n2p2, tmp_path, capsys):
    assert cli(["train", "n2p2", str(no_forces_file), "-w", str(tmp_path / "run"), "--test-fraction", "0.5"]) == 2
    err = _one_line_error(capsys)
    assert err.endswith("si-scf.h5 has no forces; n2p2 training here fits energies and forces")
    assert not (tmp_path / "run").exists()


def test_unknown_dataset_and_unfinished_runs(n2p2, cu2s_file, tmp_path, capsys):
    assert cli(["train", "n2p2", "nosuch@v1", "-w", str(tmp_path / "run")]) == 2
    assert "nosuch" in _one_line_error(capsys)
    assert cli(["train", "finish", str(tmp_path)]) == 2
    assert "not a training run folder" in _one_line_error(capsys)
    assert cli(["train", "n2p2", str(cu2s_file), "--preset", "quick", "-w", str(tmp_path / "dry"), "--dry-run"]) == 0
    capsys.readouterr()
    assert cli(["train", "finish", str(tmp_path / "dry")]) == 2
    assert "the training job is not started" in _one_line_error(capsys)
    assert cli(["train", "n2p2", str(cu2s_file), "--preset", "quick", "-w", str(tmp_path / "dry")]) == 2
    assert "exists and is not an empty folder" in _one_line_error(capsys)


def test_potential_commands_name_what_is_missing(cu2s_store, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MLDS_STORE", cu2s_store.root)
    for args in (["potential", "show", "nosuch"], ["potential", "get", "nosuch@v1", "-o", str(tmp_path / "x")]):
        assert cli(args) == 2
        assert "no potential named 'nosuch' (mlds potential ls lists them)" in _one_line_error(capsys)
    assert cli(["potential", "show", "cu2s"]) == 2  # a dataset by that name is not a potential
    assert "cu2s is a dataset, not a potential" in _one_line_error(capsys)
    assert not (tmp_path / "x").exists()
