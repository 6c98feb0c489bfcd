"""`mlds convert`: folders and globs in, any writer out, per-file summary, nothing partial on failure."""

from __future__ import annotations

import numpy as np

import mlds
from mlds.cli import run
from tests.conftest import data_file


def test_folder_to_mlds_with_summary(tmp_path, capsys):
    folder = data_file("dpdata/tests/poscars/OUTCAR.ch4.unconverged").parent
    out = tmp_path / "vasp.h5"
    assert run(["convert", str(folder), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sources" in text and "3 dropped by the readers" in text
    with mlds.open(out) as ds:
        sources = ds.metadata["sources"]
        by_name = {s["path"].rsplit("/", 1)[-1]: s for s in sources}
        assert by_name["OUTCAR.ch4.unconverged"]["frames_dropped"] == {"scf-unconverged": 2}
        assert by_name["OUTCAR.ch4.1step"]["frames_kept"] == 0
        kept = sum(s["frames_kept"] for s in sources)
        assert kept == len(ds) > 0
        assert all(len(s["sha256"]) == 64 for s in sources)
        # provenance of every frame: source index and ionic step
        src = ds.array("source")
        assert src.min() >= 0 and src.max() < len(sources)
        assert (ds.array("source_step") >= 0).all()


def test_glob_to_n2p2_with_split(tmp_path, capsys):
    pattern = str(data_file("dpdata/tests/poscars/OUTCAR.h2o.md.10").parent / "OUTCAR.h2o.*")
    out = tmp_path / "input.data"
    assert run(["convert", pattern, "-o", str(out), "--to", "n2p2", "--test-fraction", "0.3", "--seed", "1"]) == 0
    text = out.read_text()
    assert text.count("begin") == 10
    assert "set=test" in text and "set=train" in text
    back = tmp_path / "back.h5"
    assert run(["convert", str(out), "-o", str(back), "--from", "n2p2", "--units", "angstrom-ev"]) == 0
    with mlds.open(back) as ds:
        assert len(ds) == 10


def test_failure_leaves_no_output(tmp_path, capsys):
    good = data_file("dpdata/tests/poscars/OUTCAR.h2o.md.10")
    bad = tmp_path / "OUTCAR"
    lines = good.read_text().splitlines(keepends=True)
    # corrupt one number inside the first force block
    for i, line in enumerate(lines):
        if "TOTAL-FORCE" in line:
            parts = lines[i + 2].split()
            parts[3] = "1.2.3"
            lines[i + 2] = "  ".join(parts) + "\n"
            break
    bad.write_text("".join(lines))
    out = tmp_path / "out.h5"
    code = run(["convert", str(good), str(bad), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(bad) in err and "Traceback" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OUTCAR"]


def test_unknown_format_is_one_line(tmp_path, capsys):
    junk = tmp_path / "notes.txt"
    junk.write_text("just some text\n")
    code = run(["convert", str(junk), "-o", str(tmp_path / "x.h5")])
    err = capsys.readouterr().err
    assert code == 2 and "notes.txt" in err and len(err.strip().splitlines()) == 1


def test_energies_survive_n2p2_and_aenet_round_trips(tmp_path):
    src = data_file("dpdata/tests/poscars/OUTCAR.h2o.md.10")
    from mlds.convert import convert

    convert([src], tmp_path / "a.h5")

    from mlds.convert import export_dataset

    export_dataset(tmp_path / "a.h5", tmp_path / "input.data", "n2p2", units="bohr-hartree")
    export_dataset(tmp_path / "a.h5", tmp_path / "xsf", "aenet")
    convert([tmp_path / "input.data"], tmp_path / "b.h5", from_fmt="n2p2", reader_options={"units": "bohr-hartree"})
    convert([tmp_path / "xsf" / "generate.in"], tmp_path / "c.h5", from_fmt="aenet-generate")
    with mlds.open(tmp_path / "a.h5") as a, mlds.open(tmp_path / "b.h5") as b, mlds.open(tmp_path / "c.h5") as c:
        for other in (b, c):
            assert len(other) == len(a)
            np.testing.assert_allclose(other.array("energy"), a.array("energy"), rtol=1e-12)
            np.testing.assert_allclose(other.array("forces"), a.array("forces"), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(other.array("positions"), a.array("positions"), rtol=1e-12, atol=1e-12)


def test_provenance_lists_the_steps_kept(tmp_path):
    """ch4.unconverged: steps 0 and 1 hit NELM and are dropped, step 2 is kept."""
    from mlds.convert import convert

    convert([data_file("dpdata/tests/poscars/OUTCAR.ch4.unconverged")], tmp_path / "a.h5")
    convert([data_file("dpdata/tests/poscars/OUTCAR.h2o.md.10")], tmp_path / "b.h5")
    with mlds.open(tmp_path / "a.h5") as a, mlds.open(tmp_path / "b.h5") as b:
        assert a.metadata["sources"][0]["steps_kept"] == "2"
        assert list(a.array("source_step")) == [2]
        assert b.metadata["sources"][0]["steps_kept"] == "0-9"


def test_steps_kept_compact_ranges():
    from mlds.io.registry import SourceReport

    r = SourceReport(path="x", format="y")
    for s in (0, 1, 2, 5, 7, 8):
        r.keep_step(s)
    assert r.steps_kept() == "0-2,5,7-8"
    r.keep_step(3)  # out of order: no compact form claimed
    assert r.steps_kept() is None

