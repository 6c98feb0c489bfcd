"""Every labelled file in the shared test data is recognised by content and converts."""

from __future__ import annotations

import pytest

import mlds
from mlds.convert import convert
from mlds.format.schema import validate_metadata
from mlds.io.registry import detect
from tests.conftest import data_file

# (path, reader picked by content, frames kept, reader options)
CASES = [
    ("dpdata/tests/poscars/OUTCAR.h2o.md.10", "vasp-outcar", 10, {}),
    ("dpdata/tests/poscars/OUTCAR.ch4.1step", "vasp-outcar", 0, {}),
    ("dpdata/tests/poscars/OUTCAR.ch4.unconverged", "vasp-outcar", 1, {}),
    ("dpdata/tests/poscars/6362_OUTCAR", "vasp-outcar", 2, {}),
    ("dpdata/tests/poscars/OUTCAR.Ge.vdw", "vasp-outcar", 1, {}),
    ("dpdata/tests/poscars/Ti-O-Ti-v6/OUTCAR", "vasp-outcar", 1, {}),
    ("custodian/tests/files/potim/OUTCAR", "vasp-outcar", 3, {}),
    ("custodian/tests/files/npt_common/OUTCAR", "vasp-outcar", 10, {}),
    ("custodian/tests/files/large_cell_real_optlay/OUTCAR", "vasp-outcar", 0, {}),
    ("dpdata/tests/poscars/vasprun.h2o.md.10.xml", "vasp-xml", 10, {}),
    ("dpdata/tests/poscars/vasprun.h2o.md.tribox.xml", "vasp-xml", 3, {}),
    ("dpdata/tests/poscars/vasprun.h2o.md.novirial.xml", "vasp-xml", 3, {}),
    ("dpdata/tests/poscars/vasprun.Ge.vdw.xml", "vasp-xml", 1, {}),
    ("dpdata/tests/poscars/Ti-O-Ti-v6/vasprun.xml", "vasp-xml", 1, {}),
    ("custodian/tests/files/large_cell_real_optlay/vasprun.xml", "vasp-xml", 0, {}),
    ("q-e/test-suite/pw_scf/scf.benchmark.out", "qe-pw", 1, {}),
    ("q-e/test-suite/pw_lsda/lsda.benchmark.out", "qe-pw", 1, {}),
    ("q-e/test-suite/pw_relax/relax2.benchmark.out", "qe-pw", 15, {}),
    ("q-e/test-suite/pw_md/md.benchmark.out", "qe-pw", 50, {}),
    ("q-e/test-suite/pw_vc-relax/vc-md1.benchmark.out", "qe-pw", 10, {}),
    ("dpdata/tests/qe.scf/02.out", "qe-pw", 1, {}),
    ("dpdata/tests/qe.scf/na.out", "qe-pw", 1, {}),
    ("dpdata/tests/qe.scf/Al.out", "qe-pw", 1, {}),
    ("aiida-quantumespresso/tests/parsers/fixtures/pw/default/aiida.out", "qe-pw", 1, {}),
    ("aiida-quantumespresso/tests/parsers/fixtures/pw/relax_success/aiida.out", "qe-pw", 1, {}),
    ("aiida-quantumespresso/tests/parsers/fixtures/pw/failed_interrupted_relax/aiida.out", "qe-pw", 0, {}),
    ("aiida-quantumespresso/tests/parsers/fixtures/pw/default/data-file-schema.xml", "qe-xml", 1, {}),
    ("aiida-quantumespresso/tests/parsers/fixtures/pw/relax_success/data-file-schema.xml", "qe-xml", 1, {}),
    ("dpdata/tests/xyz/xyz_unittest.xyz", "extxyz", 3, {}),
    ("dpdata/tests/xyz/xyz_B5C7_novirials.xyz", "extxyz", 1, {}),
    ("aenet-python/notebooks/xsf-TiO2/structure-001.xsf", "aenet-xsf", 1, {}),
    ("aenet-python/notebooks/xsf-TiO2/structure-002.xsf", "aenet-xsf", 1, {}),
    ("aenet-python/notebooks/xsf-TiO2/structure-008.xsf", "aenet-xsf", 1, {}),
    ("aenet-python/notebooks/TiO2-cell.xsf", "aenet-xsf", 1, {}),
    ("aenet/unittests/Cu-dimer-forces/dimer-x02.5.xsf", "aenet-xsf", 1, {}),
    ("n2p2/examples/nnp-train/Cu2S_PBE/input.data", "n2p2", 20, {"units": "angstrom-ev"}),
    ("n2p2/examples/nnp-train/H2O_RPBE-D3/input.data", "n2p2", 20, {"units": "bohr-hartree"}),
    ("dpdata/tests/n2p2/input.data", "n2p2", 2, {"units": "bohr-hartree"}),
]


@pytest.mark.parametrize("relpath,fmt,n_frames,options", CASES, ids=[c[0] for c in CASES])
def test_detect_and_convert(tmp_path, relpath, fmt, n_frames, options):
    path = data_file(relpath)
    assert detect(path).name == fmt
    if n_frames == 0:  # nothing to write: an error naming the reason, and no file (issue 8)
        from mlds.convert import EmptyOutputError

        with pytest.raises(EmptyOutputError) as err:
            convert([path], tmp_path / "out.h5", reader_options=options)
        assert not (tmp_path / "out.h5").exists()
        assert err.value.result.sources[0].empty_reason, "an empty result must say why"
        return
    result = convert([path], tmp_path / "out.h5", reader_options=options)
    assert result.n_frames == n_frames
    with mlds.open(tmp_path / "out.h5") as ds:
        assert len(ds) == n_frames
        # the pipeline skips the writer's jsonschema pass for reader-built metadata: it must be valid
        validate_metadata(ds.metadata, level="base")
        (source,) = ds.metadata["sources"]
        assert source["format"] == fmt and source["frames_kept"] == n_frames
        if n_frames == 0:
            assert source.get("warnings") or source.get("frames_dropped"), "an empty result must say why"


def test_ml_ab_is_refused_with_one_line(tmp_path):
    """The script-generated ML_AB file is not a format mlds claims to read."""
    from mlds.errors import FormatError

    path = data_file("kirbymad-mace-fall-2025/ML_AB")
    with pytest.raises(FormatError):
        convert([path], tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()
