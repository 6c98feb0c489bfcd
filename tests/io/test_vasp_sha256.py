"""SourceReport.sha256 of the VASP readers, which hash the file while reading it (one pass).

Whatever happens while reading (full read, truncated file, early stop, error), the digest is
the SHA-256 of the file's bytes.
"""

from __future__ import annotations

import hashlib

import pytest

import mlds.util
from mlds.errors import FormatError
from mlds.io.registry import open_reader
from mlds.io.vasp_outcar import VaspOutcarReader
from mlds.io.vasp_xml import VaspXmlReader
from tests.conftest import data_file as tf

P = "dpdata/tests/poscars/"
FILES = [(P + "OUTCAR.h2o.md.10", VaspOutcarReader), (P + "vasprun.h2o.md.10.xml", VaspXmlReader),
         ("custodian/tests/files/npt_common/OUTCAR", VaspOutcarReader),
         (P + "vasprun.h2o.md.tribox.xml", VaspXmlReader)]


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("rel,cls", FILES)
def test_sha256_one_pass(rel, cls, monkeypatch):
    path = tf(rel)
    assert cls.hashes_while_reading
    # a full read needs no second pass over the file
    monkeypatch.setattr(mlds.util, "sha256_file", lambda p: pytest.fail("file hashed a second time"))
    reader = open_reader(path)
    assert type(reader) is cls
    frames = list(reader)
    assert frames
    assert reader.report.sha256 == _digest(path)


@pytest.mark.parametrize("rel,cls", FILES)
@pytest.mark.parametrize("frac", [0.37, 0.81])
def test_sha256_truncated(rel, cls, frac, tmp_path):
    data = tf(rel).read_bytes()
    cut = tmp_path / tf(rel).name
    cut.write_bytes(data[: int(len(data) * frac)])
    reader = cls(cut)
    try:
        list(reader)
    except FormatError:
        pass
    assert reader.report.sha256 == hashlib.sha256(data[: int(len(data) * frac)]).hexdigest()


@pytest.mark.parametrize("rel,cls", FILES)
def test_sha256_early_stop(rel, cls):
    path = tf(rel)
    reader = cls(path)
    it = iter(reader)
    next(it)
    it.close()  # stopped after one frame: the digest still covers the whole file
    assert reader.report.sha256 == _digest(path)


def test_sha256_on_format_error(tmp_path):
    src = tf(P + "OUTCAR.h2o.md.10").read_text()
    bad = src.replace("ions per type =", "ions per type = 9", 1)
    path = tmp_path / "OUTCAR"
    path.write_text(bad)
    reader = VaspOutcarReader(path)
    with pytest.raises(FormatError):
        list(reader)
    assert reader.report.sha256 == _digest(path)


def test_sha256_crlf_and_preset(tmp_path):
    path = tmp_path / "vasprun.xml"
    path.write_bytes(tf(P + "vasprun.h2o.md.10.xml").read_bytes().replace(b"\n", b"\r\n"))
    reader = VaspXmlReader(path)
    assert len(list(reader)) == 10
    assert reader.report.sha256 == _digest(path)
    preset = VaspXmlReader(path)
    preset.report.sha256 = "0" * 64  # a digest set before reading is kept
    list(preset)
    assert preset.report.sha256 == "0" * 64
