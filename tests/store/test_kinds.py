"""Object kinds: a potential (a set of files) versioned, pushed, pulled, promoted like a dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mlds.store as S
from mlds.errors import IntegrityError, PolicyError, StoreError
from mlds.store import api
from mlds.store import manifest as mf
from mlds.store.store import Store

from .conftest import add_remote, write_dataset

META = {"code": "n2p2", "code_version": "2.3.0", "elements": ["O", "Si"], "cutoff_angstrom": 6.0,  # potential-v1
        "units": {"system": "angstrom-ev", "length": "angstrom", "energy": "eV", "cflength": 1.0, "cfenergy": 1.0},
        "dataset": {"name": "sio", "manifest": "a" * 64},
        "metrics": {"energy_rmse_per_atom_eV": {"train": 0.001, "test": 0.002},
                    "force_rmse_eV_per_angstrom": {"train": 0.05, "test": 0.06}}}
SUMMARY = {"elements": ["O", "Si"], "nelements": 2, "codes": ["n2p2"]}


def potential_files(d: Path, seed: int = 0) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    files = {"input.nn": b"# n2p2 settings\nnumber_of_elements 2\n" + bytes([seed]),
             "scaling.data": os.urandom(3000),
             "weights/weights.008.data": os.urandom(5000),
             "weights/weights.014.data": os.urandom(5000)}
    out = {}
    for rel, data in files.items():
        p = d / rel.replace("/", "_")
        p.write_bytes(data)
        out[rel] = p
    return out


def _same_files(files: dict[str, Path], outdir: Path) -> None:
    got = sorted(str(p.relative_to(outdir)) for p in outdir.rglob("*") if p.is_file())
    assert got == sorted(files)
    for rel, p in files.items():
        assert (outdir / rel).read_bytes() == p.read_bytes(), rel


def test_add_files_checkout_manifest_log_tag(local, tmp_path):
    files = potential_files(tmp_path / "run1")
    r = S.add_files("sio-nnp", files, kind="potential", metadata=META, summary=SUMMARY, message="trained")
    assert (r["version"], r["new_objects"], r["unchanged"]) == (1, 4, False)
    m = api.manifest("sio-nnp")
    assert m["kind"] == "potential" and "shards" not in m
    assert [f["path"] for f in m["files"]] == sorted(files)
    assert m["summary"]["elements"] == ["O", "Si"]
    again = S.add_files("sio-nnp", files, kind="potential", metadata=META, summary=SUMMARY)
    assert again["unchanged"] and again["version"] == 1
    out = S.checkout_files("sio-nnp@v1", tmp_path / "out")
    assert len(out) == 4
    _same_files(files, tmp_path / "out")
    # a file in the way with other content is not overwritten without force
    (tmp_path / "out" / "input.nn").write_bytes(b"mine")
    with pytest.raises(StoreError, match="force"):
        S.checkout_files("sio-nnp", tmp_path / "out")
    assert (tmp_path / "out" / "input.nn").read_bytes() == b"mine"
    S.checkout_files("sio-nnp", tmp_path / "out", force=True)
    _same_files(files, tmp_path / "out")

    files2 = potential_files(tmp_path / "run2", seed=1)
    r2 = S.add_files("sio-nnp", files2, kind="potential", metadata=META, summary=SUMMARY, message="retrained")
    assert r2["version"] == 2
    log = S.log("sio-nnp")
    assert [(e["version"], e["kind"]) for e in log] == [(2, "potential"), (1, "potential")]
    S.tag("sio-nnp@v1", "paper")
    assert api.manifest("sio-nnp@paper")["version"] == 1

    # one name space: a dataset cannot take a potential's name, nor the other way round
    with pytest.raises(StoreError, match="is a potential"):
        S.add(write_dataset(tmp_path / "d.h5", 5), "sio-nnp")
    S.add(write_dataset(tmp_path / "d.h5", 5), "sio")
    with pytest.raises(StoreError, match="is a dataset"):
        S.add_files("sio", files, kind="potential", metadata=META, summary=SUMMARY)
    with pytest.raises(StoreError, match="not a dataset"):
        S.open_ref("sio-nnp")

    rows = {r["dataset"]: r for r in S.ls()}
    assert rows["sio-nnp"]["kind"] == "potential" and rows["sio"]["kind"] == "dataset"
    hits = S.search('kind="potential" AND elements HAS "Si"')
    assert [h["dataset"] for h in hits] == ["sio-nnp"] and hits[0]["kind"] == "potential"
    assert {h["kind"] for h in S.search('elements HAS "Si"')} == {"potential", "dataset"}
    assert S.fsck()["ok"]
    assert S.gc(grace_seconds=0)["removed"] == []  # every file of every version is referenced


def test_unsafe_file_paths_are_refused(local, tmp_path):
    f = potential_files(tmp_path / "run")["input.nn"]
    for bad in ("../x", "/etc/passwd", "a//b", "a/./b", "a\\b"):
        with pytest.raises(StoreError, match="path"):
            S.add_files("p", {bad: f}, kind="potential", metadata=META, summary=SUMMARY)
    with pytest.raises(StoreError, match="unknown object kind"):
        S.add_files("p", {"x": f}, kind="model", metadata=META, summary=SUMMARY)
    # a hostile manifest naming an escaping path is rejected before anything is written
    bad = {"mlds_manifest": 1, "kind": "potential", "dataset": "p", "version": 1, "parents": [], "author": "x",
           "message": "", "created": "2024-01-01T00:00:00Z", "metadata": {}, "summary": {"elements": [], "nelements": 0},
           "files": [{"path": "../../evil", "sha256": "b" * 64, "size": 1}]}
    with pytest.raises(IntegrityError, match="escape"):
        mf.parse(mf.encode(bad), mf.sha256_bytes(mf.encode(bad)))


def test_potential_schema_is_looked_up_by_kind(local, tmp_path, monkeypatch):
    """Until schema/potential-v1.schema.json ships any object is accepted; once present it applies."""
    import json

    from mlds.format import schema as fs
    from mlds.store import kinds

    f = potential_files(tmp_path / "run")
    with pytest.raises(Exception, match="JSON object"):
        S.add_files("p", f, kind="potential", metadata=["not", "an", "object"], summary=SUMMARY)
    d = tmp_path / "schemas"
    d.mkdir()
    for p in Path(fs._schema_dir()).iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    (d / "potential-v1.schema.json").write_text(json.dumps({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://mlds.dev/schema/potential-v1.schema.json",
        "type": "object", "required": ["code"]}))
    monkeypatch.setattr(fs, "_schema_dir", lambda: d)
    fs._load.cache_clear()
    fs._registry.cache_clear()
    fs._validator_for_uri.cache_clear()
    try:
        with pytest.raises(Exception, match="code"):
            kinds.validate_metadata("potential", {"no": "code"})
        kinds.validate_metadata("potential", {"code": "n2p2"})
    finally:
        fs._load.cache_clear()
        fs._registry.cache_clear()
        fs._validator_for_uri.cache_clear()


def _push_pull_identical(local, tmp_path, remote_name, files):
    S.add_files("nnp", files, kind="potential", metadata=META, summary=SUMMARY)
    st = S.push("nnp", remote_name)
    assert st["sent_objects"] == 5  # 4 files + manifest
    assert S.push("nnp", remote_name)["sent_objects"] == 0
    fresh = Store.at_path(tmp_path / f"fresh-{remote_name}").init()
    S.pull("nnp", remote_name, store=fresh)
    out = tmp_path / f"out-{remote_name}"
    S.checkout_files("nnp", out, store=fresh)
    _same_files(files, out)
    assert S.fsck(remote_name)["ok"]
    rows = S.ls(remote_name)
    assert rows[0]["kind"] == "potential"
    assert S.search('kind="potential"', [remote_name])[0]["dataset"] == "nnp"


def test_potential_push_pull_folder_remote(local, tmp_path, config_home):
    add_remote("folder", str(tmp_path / "remote"))
    _push_pull_identical(local, tmp_path, "folder", potential_files(tmp_path / "run"))


def test_potential_push_pull_s3(local, tmp_path, s3_env, s3_bucket, config_home):
    add_remote("s3r", s3_env.url(s3_bucket, "store"))
    _push_pull_identical(local, tmp_path, "s3r", potential_files(tmp_path / "run"))


def test_potential_promote_checks_its_kinds_policy(local, tmp_path, config_home):
    files = potential_files(tmp_path / "run")
    S.add_files("nnp", files, kind="potential", metadata=META, summary=SUMMARY)
    add_remote("grp", str(tmp_path / "group"), tier="group")
    add_remote("pub", str(tmp_path / "public"), tier="public")
    S.promote("nnp", "grp")
    assert S.log("nnp", store=S.open_store("grp"))[0]["kind"] == "potential"
    problems = S.check_promotion("nnp", "pub")
    assert any("license" in p for p in problems) and any("authors" in p for p in problems)
    with pytest.raises(PolicyError, match="license"):
        S.promote("nnp", "pub")
    meta = dict(META, license="CC-BY-4.0", authors=[{"name": "A"}], description="Si-O potential")
    S.add_files("nnp", files, kind="potential", metadata=meta, summary=SUMMARY)
    S.promote("nnp", "grp")
    S.promote("nnp", "pub")
    fresh = Store.at_path(tmp_path / "fresh").init()
    S.pull("nnp", "pub", store=fresh)
    S.checkout_files("nnp", tmp_path / "o", store=fresh)
    _same_files(files, tmp_path / "o")
