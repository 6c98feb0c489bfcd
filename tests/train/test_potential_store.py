"""Potentials as store objects: register, ls/show/search, get for LAMMPS, push/pull byte for byte."""

from __future__ import annotations

import json

import pytest

from mlds import train
from mlds.cli import run as cli
from mlds.store import api
from mlds.store.local import init_store


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_register_list_get_push_pull(cu2s_run, cu2s_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLDS_STORE", cu2s_store.root)  # the CLI below works on this store
    pot = train.finish(cu2s_run.path, name="cu2s-nnp", store=cu2s_store)
    assert (pot.name, pot.version) == ("cu2s-nnp", 1) and len(pot.manifest) == 64
    m = api.manifest("cu2s-nnp@v1", store=cu2s_store)
    assert m["kind"] == "potential"
    assert sorted(f["path"] for f in m["files"]) == sorted(_files(cu2s_run.path / "potential"))
    assert m["metadata"]["dataset"]["manifest"] == cu2s_run.dataset["manifest"]
    again = train.finish(cu2s_run.path, name="cu2s-nnp", store=cu2s_store)
    assert (again.version, again.manifest) == (1, pot.manifest)  # same files and metadata: no new version

    listed = train.ls(cu2s_store)
    assert [e["name"] for e in listed] == ["cu2s-nnp"]
    assert listed[0]["force_rmse_eV_per_angstrom"] == pytest.approx(
        pot.metadata["metrics"]["force_rmse_eV_per_angstrom"]["test"])
    assert [e["name"] for e in train.trained_on("cu2s@v1", store=cu2s_store)] == ["cu2s-nnp"]
    hits = api.search('elements HAS "Cu"', [cu2s_store])
    assert {(h["dataset"], h["kind"]) for h in hits} == {("cu2s", "dataset"), ("cu2s-nnp", "potential")}
    assert [h["name"] for h in train.search('elements HAS ALL "Cu","S"', [cu2s_store])] == ["cu2s-nnp"]

    # get: the folder LAMMPS reads, and the matching lines
    capsys.readouterr()
    assert cli(["potential", "get", "cu2s-nnp@v1", "-o", str(tmp_path / "hdnnp")]) == 0
    out = capsys.readouterr().out
    assert _files(tmp_path / "hdnnp") == _files(cu2s_run.path / "potential")
    assert f"pair_style hdnnp 6 dir {tmp_path / 'hdnnp'} showew no" in " ".join(out.split())
    assert "pair_coeff * * S Cu" in out and "units metal" in out
    assert cli(["potential", "show", "cu2s-nnp", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["metadata"]["best_epoch"] == pot.metadata["best_epoch"] and shown["version"] == 1
    assert cli(["potential", "ls", "--dataset", "cu2s@v1"]) == 0
    assert "cu2s-nnp" in capsys.readouterr().out
    assert cli(["info", "cu2s@v1"]) == 0
    assert "potentials trained on it: cu2s-nnp@v1" in capsys.readouterr().out
    assert cli(["search", 'elements HAS "Cu"']) == 0  # the table says which hit is a potential
    rows = {line.split("│")[2].strip(): line for line in capsys.readouterr().out.splitlines() if line.count("│") > 3}
    assert "potential" in rows["cu2s-nnp"] and "n2p2" in rows["cu2s-nnp"] and "dataset" in rows["cu2s"]
    assert [h["dataset"] for h in api.search('codes HAS "n2p2"', [cu2s_store])] == ["cu2s-nnp"]

    # push to a remote, pull into a colleague's empty store: byte-identical files
    remote = tmp_path / "group-store"
    init_store(remote)
    api.push("cu2s-nnp@v1", str(remote), store=cu2s_store)
    colleague = init_store(tmp_path / "colleague")
    api.pull("cu2s-nnp@v1", str(remote), store=colleague)
    got = train.get("cu2s-nnp@v1", tmp_path / "pulled", store=colleague)
    assert _files(tmp_path / "pulled") == _files(cu2s_run.path / "potential")
    assert got.metadata == pot.metadata


def test_evaluate_defaults_to_the_potentials_own_test_split(cu2s_run, cu2s_store, n2p2):
    pot = train.finish(cu2s_run.path, name="cu2s-nnp", store=cu2s_store)
    r = train.evaluate("cu2s-nnp@v1", None, store=cu2s_store)
    assert r["structures"] == 2 and r["dataset"].startswith("test split of cu2s@v1")
    m = pot.metadata["metrics"]
    assert r["energy_rmse_per_atom_eV"] == pytest.approx(m["energy_rmse_per_atom_eV"]["test"], rel=1e-4)
    assert r["force_rmse_eV_per_angstrom"] == pytest.approx(m["force_rmse_eV_per_angstrom"]["test"], rel=1e-4)
