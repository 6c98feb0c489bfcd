"""The import/convert/export pipeline through the CLI: empty sources, duplicates, labels, merges and subsets."""

from __future__ import annotations

import json
import re

import ase.io
import numpy as np

import mlds
from mlds.demo import example_path
from tests.cli.conftest import no_traceback
from tests.conftest import data_file


def _row(run, path) -> str:
    """The summary-table line of one source (shown relative to the sources' common folder)."""
    for line in run.out.splitlines():
        shown = line.split("│")[0].strip()
        if "│" in line and shown and str(path).endswith(shown):
            return line
    raise AssertionError(f"no row for {path} in:\n{run.out}")


def test_zero_frame_sources_are_reported_and_an_empty_result_writes_nothing(mlds_many, tmp_path):
    aborted = data_file("custodian/tests/files/large_cell_real_optlay/OUTCAR")       # killed before step 1
    interrupted = data_file("aiida-quantumespresso/tests/parsers/fixtures/pw/failed_interrupted_relax/aiida.out")
    unconverged = data_file("dpdata/tests/poscars/OUTCAR.ch4.1step")              # its only step hit NELM
    good = data_file("dpdata/tests/poscars/OUTCAR.h2o.md.10")
    spin = data_file("custodian/tests/files/potim/OUTCAR")                         # ISPIN=2: magnetic moments
    mixed, empty, none_selected, spin_h5, spin_xyz = mlds_many(
        ["import", aborted, interrupted, unconverged, good, "-o", "mixed.h5"],
        ["import", aborted, interrupted, unconverged, "-o", "empty.h5"],
        ["export", "mixed.h5", "-o", "sub.xyz", "--elements", "Fe"],
        ["import", spin, "-o", "spin.h5", "-q"],
        ["export", "spin.h5", "-o", "spin.xyz", "-q"],
    )
    assert mixed.code == 0, mixed
    assert "0 frames: no complete ionic step" in _row(mixed, aborted)
    assert "0 frames:" in _row(mixed, interrupted) and "0 frames:" in _row(mixed, unconverged)
    assert "scf-unconverged: 1" in _row(mixed, unconverged) and "0 frames" not in _row(mixed, good)
    assert "3 source(s) gave no frame" in mixed.err
    with mlds.open(tmp_path / "mixed.h5") as ds:
        assert len(ds) == 10
        kept = {s["path"]: s["frames_kept"] for s in ds.metadata["sources"]}
        assert kept[str(aborted)] == 0 and kept[str(good)] == 10
    for r, what in ((empty, "no frames to write"), (none_selected, "no frame selected")):
        assert r.code == 2 and what in r.err and len(r.err_lines) == 1 and no_traceback(r), r
    assert "no complete ionic step" in empty.err
    assert not (tmp_path / "empty.h5").exists() and not (tmp_path / "sub.xyz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    # magnetic moments survive VASP -> dataset -> extxyz
    assert spin_h5.code == 0 and spin_xyz.code == 0, (spin_h5, spin_xyz)
    with mlds.open(tmp_path / "spin.h5") as ds:
        magmoms = ds.array("magmoms")
    back = ase.io.read(tmp_path / "spin.xyz", ":")
    np.testing.assert_array_equal(np.concatenate([a.get_initial_magnetic_moments() for a in back]), magmoms)
    assert np.abs(magmoms).max() > 0


def test_one_source_per_run_and_duplicates_counted(mlds_many, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "OUTCAR").symlink_to(data_file("dpdata/tests/poscars/OUTCAR.h2o.md.10"))
    (run / "vasprun.xml").symlink_to(data_file("dpdata/tests/poscars/vasprun.h2o.md.10.xml"))
    cu = example_path("cu3au_emt.extxyz")
    folder, dedup, kept, info_kept, info_json, info_dedup = mlds_many(
        ["import", "run", "-o", "run.h5"],
        ["import", cu, cu, "-o", "d.h5"],
        ["import", cu, cu, "-o", "k.h5", "--keep-duplicates", "-q"],
        ["info", "k.h5"],
        ["info", "k.h5", "--json"],
        ["info", "d.h5"],
    )
    assert folder.code == 0 and "wrote 10 frames" in folder.out, folder
    assert "same calculation as OUTCAR" in folder.out and "1 file(s) not read" in folder.out
    assert dedup.code == 0 and "wrote 24 frames" in dedup.out and "24 duplicate(s) skipped" in dedup.out, dedup
    with mlds.open(tmp_path / "d.h5") as ds:
        second = ds.metadata["sources"][1]
        assert second["frames_kept"] == 0 and second["frames_dropped"] == {"duplicate": 24}
    assert kept.code == 0 and "wrote 48 frames" in kept.out, kept
    assert "24 frame(s) repeat an earlier one" in info_kept.out, info_kept
    assert json.loads(info_json.out)["summary"]["duplicates"]["frames"] == 24
    assert re.search(r"duplicates\s+none", info_dedup.out), info_dedup


def test_labels_merge_subset_and_split(mlds_many, tmp_path):
    images = ase.io.read(example_path("nial_emt.extxyz"), ":")
    for i, atoms in enumerate(images):
        atoms.info["config_type"] = "bulk" if i % 2 else "strained_bulk"
        atoms.info["config_weight"] = 1.0 + i
        atoms.set_initial_magnetic_moments(np.linspace(0, 1, len(atoms)) * i)
    ase.io.write(tmp_path / "labels.xyz", images, format="extxyz")
    runs = mlds_many(
        ["import", "labels.xyz", "-o", "l.h5", "--test-fraction", "0.25", "--seed", "3"],
        ["convert", example_path("cu3au_emt.extxyz"), "l.h5", "-o", "m.h5"],       # merge a file and a dataset
        ["export", "m.h5", "-o", "sub.h5", "--elements", "Ni,Al"],                   # a subset
        ["export", "m.h5", "-o", "some.xyz", "--frames", "0:3,30"],
        ["export", "sub.h5", "-o", "back.xyz"],
        ["export", "sub.h5", "-o", "input.data"],
        ["validate", "m.h5"],
        ["validate", "sub.h5"],
        ["export", "m.h5", "-o", "train.xyz", "--test-fraction", "0.3", "--seed", "5", "--label", "set=train"],
        ["export", "m.h5", "-o", "test.xyz", "--test-fraction", "0.3", "--seed", "5", "--label", "set=test"],
    )
    assert all(r.code == 0 for r in runs), runs
    with mlds.open(tmp_path / "m.h5") as m, mlds.open(tmp_path / "sub.h5") as sub:
        assert len(m) == 40 and len(sub) == 16
        assert [s["path"] for s in m.metadata["sources"]][0] == str(example_path("cu3au_emt.extxyz"))
        assert [s["path"] for s in sub.metadata["sources"]] == ["labels.xyz"]  # the subset keeps only its sources
        assert sub.metadata["sources"][0]["frames_kept"] == 16
        infos = [f.info for f in sub]
    assert [i["config_type"] for i in infos] == ["bulk" if i % 2 else "strained_bulk" for i in range(16)]
    assert [i["config_weight"] for i in infos] == [1.0 + i for i in range(16)]
    sets = [i["set"] for i in infos]
    assert set(sets) == {"train", "test"}
    back = ase.io.read(tmp_path / "back.xyz", ":")
    assert [a.info["config_type"] for a in back] == [i["config_type"] for i in infos]
    assert [a.info["set"] for a in back] == sets
    for a, orig in zip(back, ase.io.read(tmp_path / "labels.xyz", ":")):  # as written (ASE rounds to 1e-8)
        np.testing.assert_array_equal(a.get_initial_magnetic_moments(), orig.get_initial_magnetic_moments())
    blocks = (tmp_path / "input.data").read_text().split("begin")[1:]
    assert [b.split("\n", 1)[0].strip() for b in blocks] == [f"set={s}" for s in sets]
    assert len(ase.io.read(tmp_path / "some.xyz", ":")) == 4
    # a train/test split as two files, one command each: the same seed tags the same frames
    train, test = (ase.io.read(tmp_path / f"{name}.xyz", ":") for name in ("train", "test"))
    assert len(train) + len(test) == 40 and len(test) > 0
    assert {a.info["set"] for a in train} == {"train"} and {a.info["set"] for a in test} == {"test"}
    key = lambda a: a.positions.tobytes()  # noqa: E731
    assert not {key(a) for a in train} & {key(a) for a in test}


def test_hash_look_ahead_keeps_frames_and_errors_in_order(tmp_path, monkeypatch):
    """convert hashes the frames of a file 64 at a time once the source's calculation is known; the
    frames, duplicates and an error late in the file come out exactly as when hashing one by one."""
    import pytest

    import mlds.convert as conv
    from mlds.errors import FormatError

    text = data_file("dpdata/tests/poscars/vasprun.h2o.md.10.xml").read_text()
    a, b = text.index("<calculation>"), text.rindex("</calculation>") + len("</calculation>")
    blocks = text[a:b]
    body = "\n".join(blocks.replace("-28.3", f"-2{k}.3") for k in range(9))  # 90 steps, some repeated
    good = tmp_path / "good.xml"
    good.write_text(text[:a] + body + text[b:])
    i = body.rindex("</scstep>")
    bad = tmp_path / "bad.xml"
    bad.write_text(text[:a] + body[:i] + "</scstepX>" + body[i + 9:] + text[b:])

    def run(ahead: int):
        monkeypatch.setattr(conv, "_AHEAD", ahead)
        seen = []
        out = tmp_path / f"out{ahead}.h5"
        res = conv.convert([good], out, on_frame=lambda: seen.append(1))
        with mlds.open(out) as ds:
            energies = ds.array("energy", 0, len(ds)).tobytes()
        seen_bad = []
        with pytest.raises(FormatError) as exc:
            conv.convert([bad], tmp_path / f"bad{ahead}.h5", on_frame=lambda: seen_bad.append(1))
        return res.n_frames, res.duplicates, len(seen), energies, len(seen_bad), str(exc.value)

    assert run(64) == run(1)
