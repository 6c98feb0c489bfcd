"""The settings compatibility key on settings the real readers record."""

from __future__ import annotations

import copy

import pytest

from mlds.format.settings_key import compatible, describe, settings_fields, settings_key
from tests.conftest import data_file


def _settings(rel: str) -> dict:
    from mlds.io.registry import open_reader

    r = open_reader(data_file(rel))
    for _ in r:
        pass
    return r.report.settings


@pytest.fixture(scope="module")
def vasp_h2o(testdata) -> dict:
    return _settings("dpdata/tests/poscars/OUTCAR.h2o.md.10")


def test_same_run_in_two_forms_has_one_key(testdata):
    pairs = [("dpdata/tests/poscars/OUTCAR.h2o.md.10", "dpdata/tests/poscars/vasprun.h2o.md.10.xml"),
             ("aiida-quantumespresso/tests/parsers/fixtures/pw/default/aiida.out",
              "aiida-quantumespresso/tests/parsers/fixtures/pw/default/data-file-schema.xml")]
    for a, b in pairs:
        sa, sb = _settings(a), _settings(b)
        assert settings_key(sa) == settings_key(sb), (a, b)
        assert compatible(sa, sb) == (True, "")


@pytest.mark.parametrize("change, why", [
    (lambda s: s.update(functional="PBEsol"), "functional"),
    (lambda s: s.update(plane_wave_cutoff_eV=s["plane_wave_cutoff_eV"] + 50), "cutoff"),
    (lambda s: s["smearing"].update(width_eV=0.1), "smearing"),
    (lambda s: s.update(smearing={"method": "methfessel-paxton", "order": 1, "width_eV": 0.05}), "smearing"),
    (lambda s: s.update(spin_polarized=True), "spin"),
    (lambda s: s.update(code="Quantum ESPRESSO"), "code"),
    (lambda s: s["pseudopotentials"][0].update(name="PAW_PBE O_h 06Feb2004"), "pseudopotential"),
    (lambda s: s["extra"].update(LDAU=True, LDAUL=[2, -1], LDAUU=[4.0, 0.0], LDAUJ=[0.0, 0.0]), "+U"),
])
def test_each_listed_setting_changes_the_key(vasp_h2o, change, why):
    other = copy.deepcopy(vasp_h2o)
    change(other)
    assert settings_key(other) != settings_key(vasp_h2o)
    ok, reason = compatible(vasp_h2o, other)
    assert not ok and why in reason


def test_what_does_not_matter_keeps_the_key(vasp_h2o):
    other = copy.deepcopy(vasp_h2o)
    other["kpoints"] = {"mesh": [4, 4, 4]}          # a mesh belongs to a cell
    other["code_version"] = "6.4.2"
    other["extra"]["EDIFF"] = 1e-4
    other["plane_wave_cutoff_eV"] += 1e-9           # printed precision / unit conversions
    other["pseudopotentials"] = list(reversed(other["pseudopotentials"]))  # order of species
    assert settings_key(other) == settings_key(vasp_h2o)


def test_pseudopotentials_compared_per_shared_element(vasp_h2o):
    """H-only frames with the same H potential are compatible with H2O frames; a different O potential is not."""
    h_only = copy.deepcopy(vasp_h2o)
    h_only["pseudopotentials"] = [p for p in h_only["pseudopotentials"] if p["element"] == "H"]
    assert settings_key(h_only) != settings_key(vasp_h2o)  # the key is exact ...
    assert compatible(h_only, vasp_h2o) == (True, "")      # ... compatibility looks at shared elements
    other_o = copy.deepcopy(vasp_h2o)
    next(p for p in other_o["pseudopotentials"] if p["element"] == "O")["name"] = "PAW_PBE O_s 07Sep2000"
    assert compatible(other_o, vasp_h2o)[0] is False


def test_hubbard_from_vasp_tags_follows_species_order(vasp_h2o):
    u = copy.deepcopy(vasp_h2o)
    species = [p["element"] for p in u["pseudopotentials"]]
    u["extra"].update(LDAU=".TRUE.", LDAUL="2 -1", LDAUU="4.0 0.0", LDAUJ="0 0")
    fields = settings_fields(u)
    assert fields["hubbard"] == {species[0]: [2.0, 4.0, 0.0]}
    assert "+U" in describe(u) and species[0] in describe(u)


def test_vasp_vdw_seen_but_unnamed_is_part_of_the_functional(testdata):
    ge = _settings("dpdata/tests/poscars/OUTCAR.Ge.vdw")
    plain = copy.deepcopy(ge)
    plain.get("extra", {}).pop("vdw_correction", None)
    assert settings_key(ge) != settings_key(plain)


def test_key_shape_and_description(vasp_h2o):
    key = settings_key(vasp_h2o)
    assert key.startswith("sk1-") and len(key) == 20
    text = describe(vasp_h2o)
    for part in ("VASP", "PBE", "800 eV", "gaussian", "PAW_PBE O"):
        assert part in text
    assert settings_key(None) == settings_key({})
