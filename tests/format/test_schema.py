"""Metadata JSON Schemas (schema/*.schema.json) and mlds.format.schema."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from mlds.errors import FormatError, ValidationError
from mlds.format import schema as S

REPO = Path(__file__).resolve().parents[2]
SHA = hashlib.sha256(b"OUTCAR bytes").hexdigest()

UNITS = {
    "energy": "eV",
    "length": "angstrom",
    "force": "eV/angstrom",
    "stress": "eV/angstrom^3",
    "charge": "e",
    "constants": "CODATA 2018",
}

COMPLETE_CALC = {
    "code": "VASP",
    "code_version": "6.4.2",
    "functional": "PBE",
    "plane_wave_cutoff_eV": 520.0,
    "kpoints": {"mesh": [4, 4, 4], "shift": [0, 0, 0]},
    "smearing": {"method": "methfessel-paxton", "order": 1, "width_eV": 0.2},
    "spin_polarized": False,
    "pseudopotentials": [{"element": "Ti", "name": "PAW_PBE Ti_pv 07Sep2000"},
                         {"element": "O", "file": "POTCAR.O", "sha256": SHA}],
    "extra": {"ISMEAR": 1, "SIGMA": 0.2, "EDIFF": 1e-6},
}

SOURCE = {
    "path": "OUTCAR",
    "sha256": SHA,
    "format": "vasp-outcar",
    "code": "VASP",
    "calculation": 0,
    "frames_kept": 9,
    "frames_dropped": {"unconverged": 1},
    "steps_kept": "0-7,9",
    "warnings": ["NWRITE=0: forces printed for 2 of 10 steps"],
}


def base_meta() -> dict:
    return {"units": dict(UNITS)}


def group_meta() -> dict:
    return {
        "name": "TiO2-rutile",
        "units": dict(UNITS),
        "calculations": [copy.deepcopy(COMPLETE_CALC)],
        "sources": [copy.deepcopy(SOURCE)],
        "created_with": "mlds 0.1.0",
    }


def public_meta() -> dict:
    meta = group_meta()
    meta.update(
        description="Rutile TiO2 MD at 300-1500 K, PBE.",
        license="CC-BY-4.0",
        authors=[{"name": "A. Researcher", "orcid": "0000-0002-1825-0097",
                  "affiliation": "Somewhere University", "email": "a.researcher@example.org"}],
        keywords=["TiO2", "MD"],
        extra={"project": "demo"},
    )
    return meta


# --------------------------------------------------------------------------- the schema files

SCHEMA_NAMES = ["metadata-v1", "metadata-public-v1", "calculation-v1", "calculation-complete-v1"]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_files_are_valid_draft_2020_12_with_ids(name):
    schema = S.load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://mlds.dev/schema/{name}.schema.json"
    assert (REPO / "schema" / f"{name}.schema.json").is_file()


def test_load_schema_accepts_short_names_files_and_ids_and_returns_copies():
    a = S.load_schema("metadata")
    assert a == S.load_schema("metadata-v1.schema.json") == S.load_schema("https://mlds.dev/schema/metadata-v1.schema.json")
    a["title"] = "changed"
    assert S.load_schema("metadata")["title"] != "changed"
    with pytest.raises(KeyError):
        S.load_schema("no-such-schema")


def test_units_in_schema_match_spec_module_if_present():
    spec = pytest.importorskip("mlds.format.spec")
    consts = {k: v["const"] for k, v in S.load_schema("metadata")["$defs"]["units"]["properties"].items()}
    assert consts == UNITS
    if hasattr(spec, "default_units"):
        assert spec.default_units() == UNITS
        S.validate_metadata({"units": spec.default_units()})
    if hasattr(spec, "SPEC_VERSION"):
        header = (REPO / "spec" / "format-v1.md").read_text(encoding="utf-8").splitlines()[0]
        assert f"(spec {spec.SPEC_VERSION})" in header


# --------------------------------------------------------------------------- valid examples

@pytest.mark.parametrize("level", ["base", "personal", "group", "public"])
def test_valid_examples_pass(level):
    S.validate_metadata(public_meta(), level=level)
    assert S.missing_for_level(public_meta(), level) == []


def test_minimal_base_metadata_is_only_units():
    S.validate_metadata(base_meta())
    assert S.missing_for_level(base_meta(), "base") == []


def test_unknown_keys_are_accepted_for_forward_compatibility():
    meta = public_meta()
    meta["added_in_1_3"] = {"anything": 1}
    meta["calculations"][0]["hubbard_u"] = {"Ti": 4.0}
    meta["sources"][0]["reader_version"] = "2"
    meta["units"]["time"] = "fs"
    S.validate_metadata(meta, level="public")


def test_provenance_from_source_report_validates():
    from mlds.io.registry import SourceReport

    rep = SourceReport(path="/scratch/u/run1/OUTCAR", format="vasp-outcar", sha256=SHA, code="VASP", kept=3)
    rep.drop("ml_step", 10)
    rep.warn("something odd")
    meta = base_meta()
    meta["sources"] = [rep.to_provenance()]
    S.validate_metadata(meta)


@pytest.mark.parametrize("kpoints", [
    {"mesh": [1, 1, 1]},
    {"mesh": [6, 6, 1], "shift": [0.5, 0.5, 0]},
    {"n_kpoints": 10},
    {"density_per_inv_angstrom": 4.5},
    {"mesh": [3, 3, 3], "n_kpoints": 4},
])
def test_kpoints_forms(kpoints):
    meta = group_meta()
    meta["calculations"][0]["kpoints"] = kpoints
    S.validate_metadata(meta, level="group")


@pytest.mark.parametrize("smearing", [
    {"method": "tetrahedron"},
    {"method": "none"},
    {"method": "other"},
    {"method": "gaussian", "width_eV": 0.0},
    {"method": "fermi-dirac", "width_eV": 0.025},
])
def test_smearing_forms_complete(smearing):
    meta = group_meta()
    meta["calculations"][0]["smearing"] = smearing
    S.validate_metadata(meta, level="group")


@pytest.mark.parametrize("lic", ["CC-BY-4.0", "CC0-1.0", "MIT", "Apache-2.0", "GPL-2.0-or-later", "GPL-2.0+",
                                 "MIT OR Apache-2.0", "Apache-2.0 WITH LLVM-exception", "LicenseRef-group-internal"])
def test_license_forms(lic):
    meta = public_meta()
    meta["license"] = lic
    S.validate_metadata(meta, level="public")


def test_orcid_url_form_and_empty_steps_kept():
    meta = public_meta()
    meta["authors"][0]["orcid"] = "https://orcid.org/0000-0001-5109-370X"
    meta["sources"][0]["steps_kept"] = ""
    S.validate_metadata(meta, level="public")


# --------------------------------------------------------------------------- violations

def _set(meta, dotted, value):
    """Set (or with value=DEL, delete) a key by a path like 'calculations.0.kpoints'."""
    parts = [int(p) if p.isdigit() else p for p in dotted.split(".")]
    obj = meta
    for p in parts[:-1]:
        obj = obj[p]
    if value is DEL:
        del obj[parts[-1]]
    else:
        obj[parts[-1]] = value
    return meta


DEL = object()

VIOLATIONS = [
    # (level, dotted path, new value, expected message start, expected words)
    ("base", "calculations.0.plane_wave_cutoff_eV", -5,
     "metadata.calculations[0].plane_wave_cutoff_eV: -5", "minimum of 0"),
    ("base", "calculations.0.plane_wave_cutoff_eV", 0, "metadata.calculations[0].plane_wave_cutoff_eV: 0", "minimum"),
    ("base", "units", DEL, "metadata.units:", "missing"),
    ("base", "units.energy", "Ry", "metadata.units.energy:", '"Ry" must be "eV"'),
    ("base", "units.constants", "CODATA 2006", "metadata.units.constants:", "CODATA 2018"),
    ("base", "units.stress", DEL, "metadata.units.stress:", "missing"),
    ("base", "name", "my dataset", "metadata.name:", "slug"),
    ("base", "name", "../escape", "metadata.name:", "slug"),
    ("base", "license", "CC BY 4.0", "metadata.license:", "SPDX"),
    ("base", "authors.0.orcid", "1234", "metadata.authors[0].orcid:", "ORCID"),
    ("base", "authors.0.email", "not-an-email", "metadata.authors[0].email:", "e-mail"),
    ("base", "authors.0.name", DEL, "metadata.authors[0].name:", "missing"),
    ("base", "keywords", "TiO2", "metadata.keywords:", "not of type 'array'"),
    ("base", "calculations.0.code", DEL, "metadata.calculations[0].code:", "missing"),
    ("base", "calculations.0.kpoints", {}, "metadata.calculations[0].kpoints:", "mesh, n_kpoints"),
    ("base", "calculations.0.kpoints", {"mesh": [4, 4]}, "metadata.calculations[0].kpoints.mesh:", "too short"),
    ("base", "calculations.0.kpoints", {"mesh": [4, 4, 0]}, "metadata.calculations[0].kpoints.mesh[2]:", "minimum"),
    ("base", "calculations.0.kpoints", {"n_kpoints": 4, "shift": [0.5, 0.5, 0.5]},
     "metadata.calculations[0].kpoints:", "shift"),
    ("base", "calculations.0.smearing.method", "cold", "metadata.calculations[0].smearing.method:", "cold"),
    ("base", "calculations.0.smearing.width_eV", -0.1, "metadata.calculations[0].smearing.width_eV:", "minimum"),
    ("base", "calculations.0.spin_polarized", "yes", "metadata.calculations[0].spin_polarized:", "boolean"),
    ("base", "calculations.0.pseudopotentials.0.element", "Xx",
     "metadata.calculations[0].pseudopotentials[0].element:", "chemical symbol"),
    ("base", "calculations.0.pseudopotentials.1.sha256", "abc",
     "metadata.calculations[0].pseudopotentials[1].sha256:", "sha256"),
    ("base", "calculations.0.pseudopotentials.1.md5", "XYZ",
     "metadata.calculations[0].pseudopotentials[1].md5:", "md5"),
    ("base", "sources.0.sha256", DEL, "metadata.sources[0].sha256:", "missing"),
    ("base", "sources.0.sha256", "", "metadata.sources[0].sha256:", "sha256"),
    ("base", "sources.0.sha256", SHA.upper(), "metadata.sources[0].sha256:", "sha256"),
    ("base", "sources.0.format", DEL, "metadata.sources[0].format:", "missing"),
    ("base", "sources.0.frames_kept", -1, "metadata.sources[0].frames_kept:", "minimum"),
    ("base", "sources.0.frames_kept", DEL, "metadata.sources[0].frames_kept:", "missing"),
    ("base", "sources.0.frames_dropped", {"unconverged": -2},
     'metadata.sources[0].frames_dropped.unconverged:', "minimum"),
    ("base", "sources.0.steps_kept", "0..9", "metadata.sources[0].steps_kept:", "ranges"),
    ("base", "sources.0.steps_kept", "5-2", "metadata.sources[0].steps_kept:", "ascending"),
    ("base", "sources.0.steps_kept", "0-4,3", "metadata.sources[0].steps_kept:", "ascending"),
    ("base", "sources.0.calculation", 1, "metadata.sources[0].calculation:", "not an index"),
    ("base", "sources.0.calculation", -1, "metadata.sources[0].calculation:", "minimum"),
    ("base", "extra", [], "metadata.extra:", "object"),
    ("group", "calculations.0.code_version", DEL, "metadata.calculations[0].code_version:", "missing"),
    ("group", "calculations.0.kpoints", DEL, "metadata.calculations[0].kpoints:", "missing"),
    ("group", "calculations.0.smearing", {"width_eV": 0.1}, "metadata.calculations[0].smearing.method:", "missing"),
    ("group", "calculations.0.smearing", {"method": "gaussian"},
     "metadata.calculations[0].smearing.width_eV:", "missing"),
    ("group", "calculations.0.pseudopotentials", [], "metadata.calculations[0].pseudopotentials:", "empty"),
    ("group", "calculations.0.pseudopotentials", [{"element": "Ti"}],
     "metadata.calculations[0].pseudopotentials[0]:", "name or a file"),
    ("group", "calculations", [], "metadata.calculations:", "empty"),
    ("group", "calculations", DEL, "metadata.calculations:", "missing"),
    ("public", "license", DEL, "metadata.license:", "missing"),
    ("public", "license", "NOASSERTION", "metadata.license:", "not a license"),
    ("public", "authors", [], "metadata.authors:", "empty"),
    ("public", "description", "", "metadata.description:", "empty"),
    ("public", "description", "   ", "metadata.description:", "text"),
    ("public", "sources.0.path", "/home/me/run1/OUTCAR", "metadata.sources[0].path:", "directory"),
    ("public", "sources.0.path", "run1\\OUTCAR", "metadata.sources[0].path:", "directory"),
]


@pytest.mark.parametrize("level,dotted,value,start,words", VIOLATIONS,
                         ids=[f"{v[0]}:{v[1]}={'DEL' if v[2] is DEL else v[2]!r}"[:80] for v in VIOLATIONS])
def test_violation_names_the_field(level, dotted, value, start, words):
    meta = public_meta()
    if dotted == "calculations":  # keep the sources' index valid at the laxer levels
        del meta["sources"][0]["calculation"]
    meta = _set(meta, dotted, value if value is DEL else copy.deepcopy(value))
    with pytest.raises(ValidationError) as exc:
        S.validate_metadata(meta, level=level, path="data.mlds.h5")
    msg = str(exc.value)
    assert isinstance(exc.value, FormatError)
    assert "\n" not in msg
    assert msg.startswith("data.mlds.h5: " + start), msg
    assert words in msg, msg
    assert exc.value.path == "data.mlds.h5"
    # the same problem is listed by missing_for_level, at that level and every stricter one
    levels = ["base", "group", "public"]
    if dotted.endswith(".path"):  # stripped by the public tier policy itself, not "missing"
        assert S.missing_for_level(meta, "public") == []
        return
    for lv in levels[levels.index(level):]:
        lines = S.missing_for_level(meta, lv)
        assert any(line.startswith(start) and words in line for line in lines), (lv, lines)
    # ... and not at a laxer one (violations are listed with the laxest level that rejects them)
    for lv in levels[:levels.index(level)]:
        S.validate_metadata(meta, level=lv)


def test_message_without_path_and_counts_further_problems():
    meta = public_meta()
    meta["calculations"][0]["plane_wave_cutoff_eV"] = -5
    meta["license"] = "bad license"
    with pytest.raises(ValidationError) as exc:
        S.validate_metadata(meta)
    assert str(exc.value).startswith("<input>: metadata.")
    assert "(and 1 more problem)" in str(exc.value)


def test_non_object_metadata():
    with pytest.raises(ValidationError, match=r"metadata: \[\] is not of type 'object'"):
        S.validate_metadata([])


def test_unknown_level():
    with pytest.raises(ValueError, match="unknown metadata level"):
        S.validate_metadata(base_meta(), level="gold")


# --------------------------------------------------------------------------- missing_for_level

GROUP_FIELDS = ["code_version", "functional", "kpoints", "plane_wave_cutoff_eV",
                "pseudopotentials", "smearing", "spin_polarized"]


def test_missing_for_level_group_lists_exactly_the_missing_settings():
    meta = base_meta()
    meta["calculations"] = [{"code": "VASP"}, dict(COMPLETE_CALC, functional=None)]
    del meta["calculations"][1]["functional"]
    assert S.missing_for_level(meta, "group") == (
        [f"metadata.calculations[0].{f}: required but missing" for f in GROUP_FIELDS]
        + ["metadata.calculations[1].functional: required but missing"]
    )
    assert S.missing_for_level(meta, "base") == []


def test_missing_for_level_group_without_calculations():
    assert S.missing_for_level(base_meta(), "group") == ["metadata.calculations: required but missing"]


def test_missing_for_level_public_lists_group_and_public_fields():
    meta = group_meta()
    meta["sources"][0]["path"] = "/home/me/OUTCAR"
    del meta["calculations"][0]["smearing"]
    assert S.missing_for_level(meta, "group") == ["metadata.calculations[0].smearing: required but missing"]
    assert S.missing_for_level(meta, "public") == [
        "metadata.authors: required but missing",
        "metadata.calculations[0].smearing: required but missing",
        "metadata.description: required but missing",
        "metadata.license: required but missing",
    ]  # the directory in the path is not listed: promote strips it


def test_public_paths_are_stripped_by_promote_but_rejected_when_stored():
    meta = public_meta()
    meta["sources"][0]["path"] = "/home/me/run1/OUTCAR"
    assert S.missing_for_level(meta, "public") == []
    with pytest.raises(ValidationError, match=r"metadata.sources\[0\].path: .* contains a directory"):
        S.validate_metadata(meta, level="public")
    try:
        from mlds.store.policy import strip_paths
    except ImportError:
        return
    S.validate_metadata(strip_paths(meta), level="public")


def test_missing_for_level_public_only_public_fields():
    meta = group_meta()
    assert S.missing_for_level(meta, "public") == [
        "metadata.authors: required but missing",
        "metadata.description: required but missing",
        "metadata.license: required but missing",
    ]
    meta.update(authors=[], description="", license="NONE")
    assert S.missing_for_level(meta, "public") == [
        "metadata.authors: must not be empty (at least 1 required)",
        "metadata.description: must not be empty",
        'metadata.license: "NONE" is not a license (a public dataset needs one)',
    ]


def test_validate_calculation_helper():
    S.validate_calculation(COMPLETE_CALC, complete=True)
    S.validate_calculation({"code": "VASP"})
    with pytest.raises(ValidationError, match=r"metadata.calculations\[2\].functional: required but missing"):
        S.validate_calculation({"code": "VASP"} | {k: COMPLETE_CALC[k] for k in GROUP_FIELDS if k != "functional"},
                               complete=True, index=2)


def test_cli(tmp_path, capsys):
    p = tmp_path / "meta.json"
    p.write_text(json.dumps(group_meta()))
    assert S.main([str(p), "--level", "group"]) == 0
    assert S.main([str(p), "--level", "public"]) == 1
    out = capsys.readouterr().out
    assert "metadata.license: required but missing" in out


# --------------------------------------------------------------------------- spec document consistency

def test_spec_mentions_every_unit_string_and_schema_file():
    spec = (REPO / "spec" / "format-v1.md").read_text(encoding="utf-8")
    for unit in ["1", "angstrom", "eV", "eV/angstrom", "eV/angstrom^3", "e", "mu_B"]:
        assert f'`"{unit}"`' in spec
    for name in SCHEMA_NAMES:
        assert f"{name}.schema.json" in spec
    assert re.search(r"^# .*\(spec 1\.\d+\.\d+\)$", spec.splitlines()[0])


def test_spec_example_metadata_validates_public():
    """The metadata in the worked example (spec §14.1) is valid at the public level."""
    spec = (REPO / "spec" / "format-v1.md").read_text(encoding="utf-8")
    marker = 'ATTRIBUTE "metadata" { ... DATA { (0): "'
    block = spec[spec.index(marker) + len(marker):]
    block = block[: block.index('" } }')]
    meta = json.loads("".join(line.strip() for line in block.splitlines()))
    S.validate_metadata(meta, level="public")


# --------------------------------------------------------------------------- property-based

SYMBOLS = S.load_schema("calculation")["$defs"]["element"]["enum"]

hex64 = st.binary(min_size=0, max_size=16).map(lambda b: hashlib.sha256(b).hexdigest())
md5 = st.binary(max_size=8).map(lambda b: hashlib.md5(b).hexdigest())
text = st.text(min_size=1, max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def _optional(required: dict, optional: dict):
    return st.fixed_dictionaries(required, optional=optional)


kpoints_st = st.one_of(
    _optional({"mesh": st.lists(st.integers(1, 24), min_size=3, max_size=3)},
              {"shift": st.lists(st.sampled_from([0, 0.5, 0.25]), min_size=3, max_size=3),
               "n_kpoints": st.integers(1, 10000)}),
    st.fixed_dictionaries({"n_kpoints": st.integers(1, 10000)}),
    st.fixed_dictionaries({"density_per_inv_angstrom": st.floats(0.01, 50)}),
)

smearing_st = st.one_of(
    _optional({"method": st.sampled_from(["gaussian", "methfessel-paxton", "marzari-vanderbilt", "fermi-dirac"]),
               "width_eV": st.floats(0, 2)}, {"order": st.integers(0, 3)}),
    st.fixed_dictionaries({"method": st.sampled_from(["tetrahedron", "none", "other"])}),
)

pseudo_st = st.builds(
    lambda el, name, extra: {"element": el, **name, **extra},
    st.sampled_from(SYMBOLS),
    st.one_of(st.fixed_dictionaries({"name": text}), st.fixed_dictionaries({"file": text}),
              st.fixed_dictionaries({"name": text, "file": text})),
    st.fixed_dictionaries({}, optional={"md5": md5, "sha256": hex64}),
)

complete_calc_st = _optional(
    {"code": st.sampled_from(["VASP", "Quantum ESPRESSO", "CP2K"]),
     "code_version": st.from_regex(r"\A[0-9]\.[0-9](\.[0-9])?\Z"),
     "functional": st.sampled_from(["PBE", "PBEsol", "r2SCAN", "HSE06", "PBE+D3"]),
     "plane_wave_cutoff_eV": st.floats(1e-3, 5000),
     "kpoints": kpoints_st,
     "smearing": smearing_st,
     "spin_polarized": st.booleans(),
     "pseudopotentials": st.lists(pseudo_st, min_size=1, max_size=4)},
    {"extra": st.dictionaries(st.text(max_size=8), st.one_of(finite, st.integers(), text, st.booleans()), max_size=4)},
)

# a base-level calculation: any subset of the complete one's keys, plus code
calc_st = complete_calc_st.flatmap(
    lambda c: st.sets(st.sampled_from(sorted(set(c) - {"code"}))).map(
        lambda drop: {k: v for k, v in c.items() if k not in drop}))

author_st = _optional({"name": text}, {
    "orcid": st.from_regex(r"\A(https://orcid\.org/)?[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{3}[0-9X]\Z"),
    "affiliation": st.text(max_size=30),
    "email": st.from_regex(r"\A[a-z0-9._]{1,10}@[a-z0-9-]{1,10}\.[a-z]{2,4}\Z"),
})


def source_st(n_calc: int):
    opt = {
        "path": st.from_regex(r"\A[A-Za-z0-9._-]{1,20}\Z"),
        "code": text,
        "frames_dropped": st.dictionaries(text, st.integers(0, 1000), max_size=3),
        "steps_kept": st.lists(st.integers(0, 50), unique=True, max_size=10).map(
            lambda xs: ",".join(str(x) for x in sorted(xs))),
        "warnings": st.lists(st.text(max_size=40), max_size=3),
    }
    if n_calc:
        opt["calculation"] = st.integers(0, n_calc - 1)
    return _optional({"sha256": hex64, "format": st.sampled_from(["vasp-outcar", "vasp-xml", "qe-pw", "extxyz"]),
                      "frames_kept": st.integers(0, 10**6)}, opt)


@st.composite
def metadata_st(draw, level="base"):
    calcs = draw(st.lists(complete_calc_st if level != "base" else calc_st,
                          min_size=1 if level != "base" else 0, max_size=3))
    meta = {"units": dict(UNITS)}
    if calcs or draw(st.booleans()):
        meta["calculations"] = calcs
    optional = {
        "name": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,30}\Z"),
        "description": st.text(max_size=50),
        "license": st.sampled_from(["CC-BY-4.0", "CC0-1.0", "MIT", "LicenseRef-x", "MIT OR Apache-2.0"]),
        "authors": st.lists(author_st, max_size=3),
        "keywords": st.lists(text, max_size=4),
        "sources": st.lists(source_st(len(calcs)), max_size=4),
        "created_with": st.just("mlds 0.1.0"),
        "extra": st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    }
    for key, strat in optional.items():
        if draw(st.booleans()):
            meta[key] = draw(strat)
    if level == "public":
        meta["license"] = draw(optional["license"])
        meta["authors"] = draw(st.lists(author_st, min_size=1, max_size=3))
        meta["description"] = draw(st.text(min_size=1, max_size=50).filter(lambda s: s.strip() != ""))
    return meta


_hyp = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_hyp
@given(metadata_st("base"))
def test_random_valid_base_metadata_validates(meta):
    S.validate_metadata(meta)
    assert S.missing_for_level(meta, "base") == []
    json.dumps(meta, allow_nan=False)  # strict JSON, as the spec requires


@_hyp
@given(metadata_st("group"))
def test_random_complete_metadata_validates_at_group(meta):
    S.validate_metadata(meta, level="group")
    assert S.missing_for_level(meta, "group") == []


@_hyp
@given(metadata_st("public"))
def test_random_public_metadata_validates_at_public(meta):
    S.validate_metadata(meta, level="public")
    assert S.missing_for_level(meta, "public") == []


@_hyp
@given(metadata_st("group"), st.data())
def test_removing_a_required_group_field_is_reported(meta, data):
    i = data.draw(st.integers(0, len(meta["calculations"]) - 1))
    field = data.draw(st.sampled_from(GROUP_FIELDS))
    del meta["calculations"][i][field]
    S.validate_metadata(meta, level="base")
    assert f"metadata.calculations[{i}].{field}: required but missing" in S.missing_for_level(meta, "group")
    with pytest.raises(ValidationError, match=re.escape(f"metadata.calculations[")):
        S.validate_metadata(meta, level="group")
