"""Ingest from a run tree on an SFTP login node (real SSH server on loopback), push to an SFTP group store."""

from __future__ import annotations

import shutil
import uuid

import pytest

from mlds.ingest import core as C
from mlds.ingest import ingest

from .conftest import make_run, source_hashes, sources_of, version_hashes

pytest.importorskip("asyncssh", reason="the SFTP test server needs asyncssh (pip install 'mlds[test]')")


@pytest.fixture
def hpc(sftp_server, tmp_path):
    """A run tree on the server (seen as /scratch/<id>) and the remote 'hpc' configured for that host."""
    from mlds.remotes.config import add_remote

    tag = uuid.uuid4().hex[:8]
    tree = sftp_server.root / "scratch" / tag
    tree.mkdir(parents=True)
    add_remote("hpc", sftp_server.url(f"/group/{tag}"), tier="group", options=sftp_server.remote_options)
    yield tree, sftp_server.url(f"/scratch/{tag}"), sftp_server.root / "group" / tag
    shutil.rmtree(tree, ignore_errors=True)


def test_remote_tree_reads_only_the_sources_and_pushes(store, testdata, hpc, monkeypatch):
    from mlds.ingest.tree import Tree
    from mlds.store.store import Store

    tree, url, group_root = hpc
    pair = make_run(tree, "water/md1", "h2o_pair")
    solo = make_run(tree, "water/md2", "h2o_novirial")
    (pair / "WAVECAR").write_bytes(b"\0" * 200_000)           # never opened: skipped by name
    (solo / "notes.log").write_text("not a calculation output\n" * 1000)  # sniffed (head only), not fetched
    fetched: list[str] = []
    real_fetch = Tree.fetch

    def counting_fetch(self, path, dest):
        fetched.append(path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1])
        return real_fetch(self, path, dest)

    monkeypatch.setattr(Tree, "fetch", counting_fetch)
    # options (key file, known hosts) come from the configured remote on the same host: no --option needed
    r = ingest([url], "water", store=store, push="hpc", workers=1, settle=0.05)
    assert r.ok and r.pushed.keys() == {"water"}
    # the pair's two files are fetched (they are compared to find the one to read); nothing else is copied
    assert sorted(fetched) == ["md1/OUTCAR", "md1/vasprun.xml", "md2/vasprun.xml"]
    assert version_hashes("water@v1", store) == source_hashes(pair / "OUTCAR") + source_hashes(solo / "vasprun.xml")
    paths = sorted(s["path"] for s in sources_of("water@v1", store))
    assert paths == [f"{url}/water/md1/OUTCAR", f"{url}/water/md2/vasprun.xml"]  # provenance names the remote file
    assert Store.at_path(group_root).read_ref("water", "latest") == store.read_ref("water", "latest")

    # second pass over SFTP: stat only, nothing fetched, nothing made
    fetched.clear()
    r2 = ingest([url], "water", store=store, push="hpc", workers=1, settle=0.05)
    assert fetched == [] and r2.versions == {} and r2.count(C.UP_TO_DATE) == 2


def test_remote_tree_in_worker_processes_and_a_vanishing_folder(store, testdata, hpc, monkeypatch):
    from mlds.ingest import tree as T

    tree, url, _ = hpc
    runs = [make_run(tree, f"r{i}", lay) for i, lay in enumerate(["h2o_pair", "h2o_tribox", "h2o_novirial"])]
    gone = make_run(tree, "r9", "lips_md")
    real_walk = T.Tree._walk_fs

    def walk_with_removal(self, top, skip):
        for entry in real_walk(self, top, skip):
            if entry.loc.endswith("/r2/vasprun.xml"):
                shutil.rmtree(gone)  # removed on the cluster while we walk
            yield entry

    monkeypatch.setattr(T.Tree, "_walk_fs", walk_with_removal)
    r = ingest([url], "water", store=store, workers=2, settle=0.05)  # each worker opens its own SSH connection
    assert [p.reason for p in r.problems] == ["folder disappeared during the walk"]
    expected = [h for d, f in zip(runs, ["OUTCAR", "vasprun.xml", "vasprun.xml"]) for h in source_hashes(d / f)]
    assert version_hashes("water@v1", store) == expected
