"""Search: the filter parser (including errors) and search across two remotes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlds.store as S
from mlds.store.query import QueryError, matches, parse

from .conftest import group_meta, write_dataset

ENTRY = {"name": "sio", "elements": ["O", "Si"], "nelements": 2, "nframes": 150, "natoms": 900,
         "codes": ["VASP"], "functionals": ["PBE"], "formulas": ["SiO2"], "size": 10_000}


@pytest.mark.parametrize("q,expected", [
    ('elements HAS ALL "Si","O"', True),
    ('elements HAS ALL "Si","O","H"', False),
    ('elements HAS ANY "H","O"', True),
    ('elements HAS ONLY "Si","O","H"', True),
    ('elements HAS ONLY "Si"', False),
    ('elements HAS "Si"', True),
    ("nelements<=3", True),
    ("nelements>2", False),
    ('code="VASP"', True),
    ('code="vasp"', True),
    ('functional="PBE" AND code!="QE"', True),
    ("nframes>=100 AND nframes<200", True),
    ('NOT elements HAS "Si"', False),
    ('elements HAS "H" OR nframes=150', True),
    ('elements HAS "H" OR nframes=150 AND code="QE"', False),  # AND binds tighter
    ('(elements HAS "H" OR nframes=150) AND code="VASP"', True),
    ('NOT (code="QE" OR functional="LDA")', True),
    ('formula HAS "SiO2"', True),
    ('name="sio" and nframes > 1e2', True),
    ("energy_per_atom_min < 0", False),  # missing value never matches
])
def test_filter_semantics(q, expected):
    assert matches(parse(q), ENTRY) is expected


@pytest.mark.parametrize("q,msg", [
    ('elements HAS ALL "Si",', "unexpected token end of filter at column 23"),
    ("nelements <= ", "unexpected token end of filter at column 14"),
    ('elements HAS ALL "Si" "O"', "unexpected token '\"O\"' at column 23"),
    ("(nelements<3", "unexpected token end of filter at column 13 (expected ')')"),
    ("nelements<3)", "unexpected token ')' at column 12"),
    ("AND nelements<3", "unexpected token 'AND' at column 1"),
    ('nelements="3"', "unexpected token '\"3\"' at column 11"),
    ("colour=\"red\"", "unknown field 'colour' at column 1"),
    ('code < "VASP"', "needs a numeric field"),
    ('nframes HAS "x"', "HAS needs a list field"),
    ('elements HAS "Si', "unterminated string starting at column 14"),
    ("nframes ~ 3", "unexpected character '~' at column 9"),
    ("", "empty filter"),
])
def test_filter_errors(q, msg):
    with pytest.raises(QueryError) as exc:
        parse(q)
    assert msg in str(exc.value)


def test_search_across_two_remotes(local, tmp_path, config_home):
    from .conftest import add_remote

    add_remote("a", str(tmp_path / "ra"))
    add_remote("b", str(tmp_path / "rb"))
    S.add(write_dataset(tmp_path / "sio.h5", 12, group_meta("sio")), "sio")
    S.add(write_dataset(tmp_path / "cu.h5", 30, {"name": "cu"}, elements=(29,)), "cu")
    S.add(write_dataset(tmp_path / "sih.h5", 20, {"name": "sih"}, elements=(14, 1)), "sih")
    S.push("sio", "a")
    S.push("cu", "a")
    S.push("sih", "b")
    hits = S.search('elements HAS "Si"', ["a", "b"])
    assert sorted((h["remote"], h["dataset"]) for h in hits) == [("a", "sio"), ("b", "sih")]
    hits = S.search('elements HAS ONLY "Cu" OR (code="VASP" AND nframes>=10)', ["a", "b"])
    assert sorted(h["dataset"] for h in hits) == ["cu", "sio"]
    assert S.search("nelements>=3", ["a", "b"]) == []
    # the catalog is a cache: delete it and rebuild from refs + manifests
    (tmp_path / "ra" / "catalog.json").unlink()
    assert S.search('elements HAS "Si"', ["a"]) == []
    S.rebuild_catalog("a")
    assert [h["dataset"] for h in S.search('elements HAS "Si"', ["a"])] == ["sio"]
    rows = S.ls("a")
    assert [(r["dataset"], sorted(r["refs"])) for r in rows] == [("cu", ["latest", "v1"]), ("sio", ["latest", "v1"])]


# -- property: rendering any filter AST and parsing it back gives the same AST --------------

_elements = st.lists(st.sampled_from(["H", "O", "Si", "Cu", "Fe"]), min_size=1, max_size=3)
_leaf = st.one_of(
    st.tuples(st.just("has"), st.just("elements"), st.sampled_from(["ALL", "ANY", "ONLY"]), _elements),
    st.tuples(st.just("cmp"), st.sampled_from(["nelements", "nframes"]), st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
              st.integers(0, 10**6)),
    st.tuples(st.just("cmp"), st.just("codes"), st.sampled_from(["=", "!="]), st.sampled_from(["VASP", "QE", 'a "q"'])),
)
_tree = st.recursive(_leaf, lambda kids: st.one_of(
    st.tuples(st.just("not"), kids),
    st.tuples(st.sampled_from(["and", "or"]), kids, kids)), max_leaves=8)


def _render(node) -> str:
    kind = node[0]
    if kind == "has":
        return f"{node[1]} HAS {node[2]} " + ",".join(f'"{v}"' for v in node[3])
    if kind == "cmp":
        v = node[3]
        val = str(v) if isinstance(v, int) else '"' + v.replace('"', '\\"') + '"'
        return f"{node[1]}{node[2]}{val}"
    if kind == "not":
        return f"NOT ({_render(node[1])})"
    return f"({_render(node[1])}) {kind.upper()} ({_render(node[2])})"


@settings(max_examples=150, deadline=None)
@given(_tree)
def test_render_parse_round_trip(tree):
    got = parse(_render(tree))
    norm = lambda n: (n if n[0] != "has" else (n[0], n[1], n[2], list(n[3])))  # noqa: E731
    assert _walk(got, norm) == _walk(tree, norm)


def _walk(n, f):
    if n[0] == "not":
        return ("not", _walk(n[1], f))
    if n[0] in ("and", "or"):
        return (n[0], _walk(n[1], f), _walk(n[2], f))
    return f(n)
