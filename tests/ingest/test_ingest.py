"""mlds.ingest on run trees of real files: exactly which frames land in which version."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from mlds.ingest import core as C
from mlds.ingest import ingest, parse_rules

from .conftest import OLD, make_run, source_hashes, sources_of, truncated_copy, version_hashes

FAST = {"workers": 1, "settle": 0.05}


def _status(result, path) -> str:
    return next(o.status for o in result.outcomes if o.path == str(path))


def test_first_pass_second_pass_changed_and_new_run(store, tree):
    h2o = make_run(tree, "water/md1", "h2o_pair")
    nov = make_run(tree, "water/md2", "h2o_novirial")
    r1 = ingest([tree], "mix", store=store, **FAST)
    assert r1.ok
    # one version, holding every frame each chosen source yields, once; vasprun.xml of the pair is not read
    assert set(r1.versions) == {"mix"} and r1.versions["mix"]["version"] == 1
    expected = source_hashes(h2o / "OUTCAR") + source_hashes(nov / "vasprun.xml")
    assert version_hashes("mix@v1", store) == expected
    assert _status(r1, h2o / "vasprun.xml") == C.NOT_READ
    srcs = {s["path"]: s for s in sources_of("mix@v1", store)}
    assert set(srcs) == {str(h2o / "OUTCAR"), str(nov / "vasprun.xml")}
    # provenance records which copy of the run was read and which was left out
    assert srcs[str(h2o / "OUTCAR")]["same_run_not_read"][0]["path"] == str(h2o / "vasprun.xml")
    lips = nov  # the run touched below

    # second pass on the unchanged tree: nothing read, no version
    r2 = ingest([tree], "mix", store=store, **FAST)
    assert r2.versions == {} and r2.count(C.UP_TO_DATE) == 2 and store.read_ref("mix", "v2") is None

    # a touched but unchanged file is hashed, found identical, and not converted
    os.utime(lips / "vasprun.xml", (OLD, OLD + 10))
    r3 = ingest([tree], "mix", store=store, **FAST)
    assert r3.versions == {} and _status(r3, lips / "vasprun.xml") == C.UP_TO_DATE

    # a new run adds exactly its frames, appended after the old ones
    tri = make_run(tree, "water/md3", "h2o_tribox")
    r4 = ingest([tree], "mix", store=store, **FAST)
    added = source_hashes(tri / "vasprun.xml")
    assert r4.versions["mix"]["version"] == 2 and r4.versions["mix"]["n_frames_added"] == len(added)
    assert version_hashes("mix@v2", store) == expected + added
    assert version_hashes("mix@v1", store) == expected  # the old version is untouched


def test_dropped_steps_reported_per_source(store, tree):
    ch4 = make_run(tree, "ch4/run", "ch4")
    r = ingest([tree], "ch4", store=store, **FAST)
    out = next(o for o in r.outcomes if o.path == str(ch4 / "OUTCAR"))
    assert out.status == C.ADDED and out.frames == len(source_hashes(ch4 / "OUTCAR")) == 1
    assert sum(out.dropped.values()) == 2  # two SCF-unconverged MD steps, with the reader's reason
    assert sources_of("ch4@v1", store)[0]["frames_dropped"] == out.dropped


def test_run_that_grows_adds_only_its_new_frames(store, tree):
    """An interrupted OUTCAR read for its complete steps; when it continues, only the new steps are added."""
    run = tree / "h2o"
    full = run / "OUTCAR"
    truncated_copy("dpdata/tests/poscars/OUTCAR.h2o.md.10", full, 0.55, old=True)
    early = source_hashes(full)
    assert 0 < len(early) < 10
    r1 = ingest([tree], "w", store=store, **FAST)
    assert version_hashes("w@v1", store) == early
    shutil.copyfile(make_run(tree.parent / "src", "x", "h2o_pair") / "OUTCAR", full)  # the run went on and finished
    r2 = ingest([tree], "w", store=store, **FAST)
    rep = r2.versions["w"]
    complete = source_hashes(full)
    assert rep["n_frames_added"] == len(complete) - len(early)
    assert rep["duplicates_skipped"] == len(early)
    assert version_hashes("w@v2", store) == complete  # every frame once, in step order
    assert r1.ok and r2.ok


def test_unfinished_run_waits_until_finished_or_stopped(store, tree):
    out = tree / "md" / "OUTCAR"
    truncated_copy("dpdata/tests/poscars/OUTCAR.h2o.md.10", out, 0.55)  # fresh mtime: a running job
    r1 = ingest([tree], "w", store=store, **FAST)
    assert _status(r1, out) == C.RUNNING and r1.versions == {}
    # a job that keeps writing is not read even when its mtime is old: the file changes within --settle
    os.utime(out, (OLD, OLD))
    import threading

    def append_later():
        time.sleep(0.1)
        with open(out, "ab") as fh:
            fh.write(b" ")
    t = threading.Thread(target=append_later)
    t.start()
    r2 = ingest([tree], "w", store=store, workers=1, settle=0.5)
    t.join()
    assert _status(r2, out) == C.RUNNING and r2.versions == {}
    # once it finished (closing block written), it is read in full
    shutil.copyfile(make_run(tree.parent / "src", "x", "h2o_pair") / "OUTCAR", out)
    r3 = ingest([tree], "w", store=store, **FAST)
    assert version_hashes("w@v1", store) == source_hashes(out)
    assert r3.ok


def test_broken_file_listed_once_and_retried_only_when_changed(store, tree):
    bad = make_run(tree, "aborted", "aborted")
    good = make_run(tree, "ok", "lips_md")
    garbage = tree / "junk" / "OUTCAR"
    garbage.parent.mkdir()
    garbage.write_bytes(b" vasp.5.4.4 (build)\n POTCAR: PAW_PBE Si\n" + os.urandom(3000))
    os.utime(garbage, (OLD, OLD))
    r1 = ingest([tree], "d", store=store, **FAST)
    failed = {o.path: o.reason for o in r1.failed}
    assert set(failed) == {str(bad / "OUTCAR"), str(bad / "vasprun.xml"), str(garbage)}
    assert all(failed.values()) and not r1.ok          # each with its reason; the batch went on
    assert version_hashes("d@v1", store) == source_hashes(good / "OUTCAR")
    r2 = ingest([tree], "d", store=store, **FAST)
    assert r2.failed == [] and r2.count(C.FAILED_BEFORE) == 3 and r2.ok
    # the broken file is replaced: it is read again; a byte-identical copy of an ingested file is up to date
    shutil.copyfile(good / "OUTCAR", garbage)
    r3 = ingest([tree], "d", store=store, **FAST)
    assert r3.versions == {} and _status(r3, garbage) == C.UP_TO_DATE and r3.ok
    # another file with the same frames: read, every frame already stored, so no version is needed ...
    with open(garbage, "ab") as fh:
        fh.write(b"\n")
    r4 = ingest([tree], "d", store=store, **FAST)
    assert r4.versions == {} and _status(r4, garbage) == C.NO_NEW_FRAMES
    # ... and the next pass does not read it again
    r5 = ingest([tree], "d", store=store, **FAST)
    assert _status(r5, garbage) == C.UP_TO_DATE and r5.versions == {}


def test_file_failing_half_way_leaves_no_frames(store, tree):
    """A reader error after some frames (VASP's '****' overflow in a force table): the file fails as a whole,
    and its first frames, already streamed to the shared staging file, never reach the version."""
    a = make_run(tree, "a", "h2o_novirial")
    bad = make_run(tree, "b", "h2o_pair")
    c = make_run(tree, "c", "h2o_tribox")
    (bad / "vasprun.xml").unlink()
    data = (bad / "OUTCAR").read_bytes()
    i = 0
    for _ in range(6):
        i = data.index(b"TOTAL-FORCE", i + 1)
    j = data.index(b"\n", data.index(b"-----", i)) + 1  # first row of the 6th force table
    (bad / "OUTCAR").write_bytes(data[:j + 40] + b"*" * 13 + data[j + 53:])
    os.utime(bad / "OUTCAR", (OLD, OLD))
    r = ingest([tree], "w", store=store, **FAST)
    assert _status(r, bad / "OUTCAR") == C.FAILED and "corrupt number" in r.failed[0].reason
    assert version_hashes("w@v1", store) == source_hashes(a / "vasprun.xml") + source_hashes(c / "vasprun.xml")
    assert [s["path"] for s in sources_of("w@v1", store)] == [str(a / "vasprun.xml"), str(c / "vasprun.xml")]


def test_same_file_in_two_runs_is_stored_once(store, tree):
    a = make_run(tree, "a", "lips_md")
    make_run(tree, "b", "lips_md")
    r = ingest([tree], "d", store=store, **FAST)
    assert version_hashes("d@v1", store) == source_hashes(a / "OUTCAR")
    assert r.versions["d"]["duplicates_skipped"] == len(source_hashes(a / "OUTCAR"))


def test_qe_pair_reads_the_text_output(store, tree):
    run = make_run(tree, "si", "qe_si_pair")
    r = ingest([tree], "si", store=store, **FAST)
    assert _status(r, run / "aiida.save" / "data-file-schema.xml") == C.NOT_READ
    assert version_hashes("si@v1", store) == source_hashes(run / "aiida.out")


def test_rules_by_folder_and_formula(store, tree):
    make_run(tree, "water/md1", "h2o_pair")
    lips = make_run(tree, "lips/run1", "lips_md")
    si = make_run(tree, "si/md", "qe_si_md")
    rules = parse_rules([{"path": "water/**", "dataset": "water"}, {"dataset": "{formula}-{system}"}])
    r = ingest([tree], store=store, rules=rules, **FAST)
    from ase.formula import Formula

    from mlds.io.registry import open_reader

    first = next(iter(open_reader(lips / "OUTCAR")))
    lips_name = next(n for n in r.versions if n.endswith("-Li-P-S"))
    # {formula} is the reduced composition of the run's first frame
    assert Formula(lips_name.split("-")[0]).count() == Formula.from_list(first.symbols).reduce()[0].count()
    assert set(r.versions) == {"water", lips_name, "Si-Si"}
    assert version_hashes(f"{lips_name}@v1", store) == source_hashes(lips / "OUTCAR")
    assert version_hashes("Si-Si@v1", store) == source_hashes(si / "pw.out")
    r2 = ingest([tree], store=store, rules=rules, **FAST)
    assert r2.versions == {}
    # a rule that matches no run: the run is listed, nothing is made
    r3 = ingest([tree / "water"], store=store, rules=parse_rules([{"path": "nowhere/**", "dataset": "x"}]), **FAST)
    assert r3.versions == {} and {o.status for o in r3.outcomes} >= {C.UNROUTED}


def test_rules_from_project_config(store, tree, tmp_path, monkeypatch):
    make_run(tree, "lips/run1", "lips_md")
    proj = tmp_path / "proj"
    (proj / ".mlds").mkdir(parents=True)
    (proj / ".mlds" / "config.toml").write_text('[ingest]\nrules = [ { elements = ["Li", "P", "S"], dataset = "LPS" } ]\n')
    monkeypatch.chdir(proj)
    r = ingest([tree], store=store, **FAST)
    assert set(r.versions) == {"LPS"}
    (proj / ".mlds" / "config.toml").write_text('[ingest]\nrules = [ { dataset = "{nope}" } ]\n')
    from mlds.ingest.rules import RuleError

    with pytest.raises(RuleError, match="unknown placeholder"):
        ingest([tree], store=store, **FAST)


def test_different_settings_are_kept_apart(store, tree):
    """Frames of another cutoff/functional never enter the dataset: they go to a settings sibling."""
    from mlds.format.settings_key import settings_key
    from mlds.store import manifest as mf

    h2o = make_run(tree, "a_h2o", "h2o_pair")      # VASP PBE 800 eV
    tio = make_run(tree, "b_tio", "tio_pair")      # VASP PBE 350 eV, Methfessel-Paxton
    si = make_run(tree, "c_si", "qe_si_md")        # Quantum ESPRESSO LDA
    r = ingest([tree], "mix", store=store, **FAST)
    assert version_hashes("mix@v1", store) == source_hashes(h2o / "OUTCAR")
    siblings = sorted(n for n in r.versions if n != "mix")
    assert len(siblings) == 2 and all(n.startswith("mix.sk-") for n in siblings)
    got = sorted(version_hashes(f"{n}@v1", store) for n in siblings)
    assert got == sorted([source_hashes(tio / "OUTCAR"), source_hashes(si / "pw.out")])
    for name in ["mix", *siblings]:  # one settings key per dataset
        m = mf.load(store, store.read_ref(name, "latest"))
        assert len({settings_key(c) for c in m["metadata"]["calculations"]}) == 1
    notes = [o.reason for o in r.outcomes if o.dataset in siblings]
    assert any("cutoff 800 eV vs 350 eV" in n for n in notes)
    # a later compatible run goes to the sibling that holds its settings, not to a new one
    tio2 = tree / "d_tio2"
    shutil.copytree(tio, tio2)
    with open(tio2 / "OUTCAR", "ab") as fh:
        fh.write(b"\n")  # another file (other sha256), same frames
    r2 = ingest([tree], "mix", store=store, **FAST)
    assert set(r2.versions) <= set(siblings) and _status(r2, tio2 / "OUTCAR") == C.NO_NEW_FRAMES


def test_folder_disappearing_mid_walk(store, tree, monkeypatch):
    from mlds.ingest import tree as T

    keep = make_run(tree, "a", "lips_md")
    gone = make_run(tree, "b", "h2o_pair")
    real_scandir = os.scandir

    def vanishing_scandir(path):
        if isinstance(path, str) and path == str(gone):
            shutil.rmtree(gone)  # removed by its owner between listing the parent and listing it
        return real_scandir(path)

    monkeypatch.setattr(T.os, "scandir", vanishing_scandir)
    r = ingest([tree], "d", store=store, **FAST)
    assert [p.reason for p in r.problems] == ["folder disappeared during the walk"]
    assert version_hashes("d@v1", store) == source_hashes(keep / "OUTCAR")


def test_file_removed_between_walk_and_conversion(store, tree, monkeypatch):
    from mlds.ingest import worker as W

    keep = make_run(tree, "a", "lips_md")
    gone = make_run(tree, "b", "tio_pair")
    real = W.convert_run

    def convert_after_removal(task, *args):
        if task.folder == str(gone):
            shutil.rmtree(gone)
        return real(task, *args)

    monkeypatch.setattr(W, "convert_run", convert_after_removal)
    r = ingest([tree], "d", store=store, **FAST)
    assert {o.status for o in r.outcomes if o.path.startswith(str(gone))} == {C.VANISHED}
    assert version_hashes("d@v1", store) == source_hashes(keep / "OUTCAR")


def test_parallel_workers_match_serial(store, tree):
    runs = [make_run(tree, f"r{i}", lay) for i, lay in enumerate(["h2o_tribox", "h2o_pair", "h2o_novirial"])]
    r = ingest([tree], "par", store=store, workers=2, settle=0.05)
    expected = [h for d, f in zip(runs, ["vasprun.xml", "OUTCAR", "vasprun.xml"]) for h in source_hashes(d / f)]
    assert version_hashes("par@v1", store) == expected  # deterministic order whatever finished first
    assert r.ok


def test_index_lives_in_the_store_and_claims_nothing(store, tree):
    """Deleting the dataset makes its runs count as new again: 'ingested' comes from manifests, not the index."""
    run = make_run(tree, "a", "lips_md")
    ingest([tree], "d", store=store, **FAST)
    assert (store.root and os.path.isfile(os.path.join(store.root, "ingest", "index.json")))
    for tag in list(store.list_refs("d")):
        store.delete_ref("d", tag)
    r = ingest([tree], "d", store=store, **FAST)
    assert version_hashes("d@latest", store) == source_hashes(run / "OUTCAR") and r.versions["d"]["version"] == 1


def test_nested_paths_read_once_and_removed_runs_leave_the_index(store, tree):
    import json

    a = make_run(tree, "a", "h2o_novirial")
    b = make_run(tree, "b", "h2o_tribox")
    r = ingest([tree, tree / "a", tree / "a" / "vasprun.xml"], "w", store=store, **FAST)
    assert version_hashes("w@v1", store) == source_hashes(a / "vasprun.xml") + source_hashes(b / "vasprun.xml")
    assert len(sources_of("w@v1", store)) == 2
    index = os.path.join(store.root, "ingest", "index.json")
    assert str(b / "vasprun.xml") in json.loads(open(index).read())["files"]
    shutil.rmtree(b)  # the run folder is deleted: its entries leave the index; its frames stay in v1
    ingest([tree], "w", store=store, **FAST)
    data = json.loads(open(index).read())
    assert str(b / "vasprun.xml") not in data["files"] and str(b) not in data["runs"]
    assert str(a / "vasprun.xml") in data["files"]
    assert r.ok and version_hashes("w@latest", store) == version_hashes("w@v1", store)
