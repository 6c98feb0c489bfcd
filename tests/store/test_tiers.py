"""Tier policies: group completeness and immutable tags; public requirements, group presence, path stripping."""

from __future__ import annotations

import pytest

import mlds.store as S
from mlds.errors import PolicyError
from mlds.store import manifest as mf
from mlds.store.store import Store

from .conftest import add_remote, group_meta, public_meta, write_dataset


def test_promote_to_group_lists_every_missing_field(local, tmp_path, config_home, capsys):
    add_remote("lab", str(tmp_path / "lab"), tier="group")
    meta = group_meta()
    del meta["calculations"][0]["code_version"]
    del meta["calculations"][0]["smearing"]
    S.add(write_dataset(tmp_path / "a.h5", 10, meta), "sio")
    problems = S.check_promotion("sio@v1", "lab")
    assert any("code_version" in p for p in problems) and any("smearing" in p for p in problems)
    with pytest.raises(PolicyError) as exc:
        S.promote("sio@v1", "lab")
    lines = str(exc.value).splitlines()
    assert any("code_version" in l for l in lines) and any("smearing" in l for l in lines)
    # the CLI says the same, every field on its own line, and exits non-zero
    from mlds.cli import run

    assert run(["promote", "sio@v1", "--to", "lab"]) != 0
    err = capsys.readouterr().err
    assert "code_version" in err and "smearing" in err
    # a plain push is held to the same policy
    with pytest.raises(PolicyError):
        S.push("sio", "lab")
    assert S.ls("lab") == []


def test_group_tags_are_immutable(local, tmp_path, config_home):
    lab = add_remote("lab", str(tmp_path / "lab"), tier="group")
    S.add(write_dataset(tmp_path / "a.h5", 10, group_meta()), "sio")
    S.tag("sio@v1", "paper")
    S.promote("sio@paper", "lab")
    assert lab.read_ref("sio", "paper") == lab.read_ref("sio", "v1")
    S.add(write_dataset(tmp_path / "b.h5", 12, group_meta()), "sio")
    S.tag("sio@v2", "paper", force=True)  # fine locally (personal)
    with pytest.raises(PolicyError, match="immutable"):
        S.push("sio", "lab", "paper")
    S.push("sio", "lab")  # latest may move
    assert lab.read_ref("sio", "latest") == lab.read_ref("sio", "v2")
    assert lab.read_ref("sio", "paper") == lab.read_ref("sio", "v1")


def test_public_requires_group_presence_and_strips_paths(local, tmp_path, config_home, http_mirror_factory):
    add_remote("lab", str(tmp_path / "lab"), tier="group")
    pub = add_remote("pub", str(tmp_path / "pub"), tier="public")
    S.add(write_dataset(tmp_path / "a.h5", 10, group_meta()), "sio")
    problems = S.check_promotion("sio@v1", "pub")
    assert {p.split(":")[0] for p in problems} >= {"metadata.license", "metadata.authors", "metadata.description"}
    S.add(write_dataset(tmp_path / "a.h5", 10, public_meta()), "sio")
    with pytest.raises(PolicyError, match="group"):
        S.promote("sio@v2", "pub")
    S.promote("sio@v2", "lab")
    assert S.check_promotion("sio@v2", "pub") == []
    res = S.promote("sio@v2", "pub")
    h = pub.read_ref("sio", "v2")
    assert h == res["manifest"] != local.read_ref("sio", "v2")
    m = mf.load(pub, h)
    assert m["metadata"]["sources"][0]["path"] == "OUTCAR"
    assert m["promoted_from"] == local.read_ref("sio", "v2") and m["parents"] == []
    assert m["shards"] == mf.load(local, local.read_ref("sio", "v2"))["shards"]  # same bytes, no copy needed
    raw = b"".join(p.read_bytes() for p in (tmp_path / "pub").rglob("*") if p.is_file())
    assert b"/home/alice" not in raw  # no local path anywhere in the public store
    # readable without credentials, over the HTTP mirror
    mirror = http_mirror_factory(tmp_path / "pub")
    fresh = Store.at_path(tmp_path / "reader").init()
    S.pull("sio", mirror.url, store=fresh)
    with S.open_ref("sio", store=fresh) as ds:
        assert len(ds) == 10 and ds.metadata["sources"][0]["path"] == "OUTCAR"


def test_public_latest_follows_successive_promotions(local, tmp_path, config_home):
    add_remote("lab", str(tmp_path / "lab"), tier="group")
    pub = add_remote("pub", str(tmp_path / "pub"), tier="public")
    S.add(write_dataset(tmp_path / "a.h5", 10, public_meta()), "sio")
    S.promote("sio@v1", "lab")
    S.promote("sio@v1", "pub")
    S.add(write_dataset(tmp_path / "b.h5", 14, public_meta()), "sio")
    S.push("sio", "lab")
    S.push("sio", "pub")  # latest: derived v1 -> derived v2 is a fast-forward via promoted_from
    assert pub.read_ref("sio", "latest") == pub.read_ref("sio", "v2") != pub.read_ref("sio", "v1")
    assert mf.load(pub, pub.read_ref("sio", "latest"))["promoted_from"] == local.read_ref("sio", "v2")
    assert S.fsck("pub")["ok"]


def test_open_missing_ref_creates_nothing(tmp_path, monkeypatch):
    from mlds.errors import StoreError

    monkeypatch.setenv("MLDS_STORE", str(tmp_path / "nowhere"))
    with pytest.raises(StoreError, match="no dataset"):
        S.open_ref("nothing@v1")
    assert not (tmp_path / "nowhere").exists()
