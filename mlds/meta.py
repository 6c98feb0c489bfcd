"""Dataset metadata from the command line: options, ``--meta FILE.json``, ``KEY=VALUE`` edits.

``mlds import --license/--author/--description/--meta`` and ``mlds meta set``
build metadata here, and :func:`fix_hint` names the command that fixes each
problem a tier policy reports, so a refusal says what to type next.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

from mlds.errors import FormatError, OptionError

_AUTHOR = re.compile(r"^\s*(?P<name>[^<(]+?)\s*(?:<(?P<email>[^>]*)>)?\s*(?:\((?P<orcid>[^)]*)\))?\s*$")


def parse_author(text: str) -> dict[str, str]:
    """``"Jane Doe <jane@lab.org> (0000-0002-1825-0097)"`` -> an author object (email and ORCID optional)."""
    m = _AUTHOR.match(text or "")
    if not m or not m.group("name").strip():
        raise OptionError(f"--author {text!r}: write 'Name', 'Name <email>' or 'Name <email> (ORCID)'")
    out = {"name": m.group("name").strip()}
    if m.group("email"):
        out["email"] = m.group("email").strip()
    if m.group("orcid"):
        out["orcid"] = m.group("orcid").strip()
    return out


def load_meta_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object of metadata keys (``name``, ``license``, ``authors``, ``calculations``, ...)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError(p, "no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FormatError(p, f"cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise FormatError(p, f"not valid JSON: {err.msg}", line=err.lineno) from None
    if not isinstance(data, dict):
        raise FormatError(p, "must hold a JSON object of metadata keys")
    return data


def from_options(*, meta_file: str | os.PathLike | None = None, name: str | None = None,
                 license: str | None = None, authors: Iterable[str] = (), description: str | None = None,
                 ) -> dict[str, Any]:
    """Metadata given on the command line: the file first, then the single options over it."""
    meta = load_meta_file(meta_file) if meta_file else {}
    if name:
        meta["name"] = name
    if license:
        meta["license"] = license
    authors = list(authors or [])
    if authors:
        meta["authors"] = [parse_author(a) for a in authors]
    if description:
        meta["description"] = description
    return meta


# ----------------------------------------------------------------------------- KEY=VALUE edits
def parse_assignment(text: str) -> tuple[list[str | int], Any]:
    """``calculations.0.plane_wave_cutoff_eV=520`` -> (path, value); the value is JSON when it parses."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise OptionError(f"{text!r}: write KEY=VALUE, e.g. license=CC-BY-4.0 or calculations.0.functional=PBE")
    path: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    if path[-1] in _TEXT_KEYS and not raw.lstrip().startswith(('"', "[", "{")):
        return path, raw  # code_version=6.4 stays the text "6.4"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return path, value


# keys whose values are text in the schema, even when they look like numbers
_TEXT_KEYS = {"name", "description", "license", "code", "code_version", "functional", "method", "email", "orcid",
              "affiliation", "element", "file", "md5", "sha256"}


def assign(meta: dict[str, Any], path: list[str | int], value: Any) -> None:
    """Set ``meta[path] = value``, creating objects and extending lists by one as needed."""
    if path and path[0] == "sources":
        raise OptionError("the provenance (sources) is recorded by mlds and cannot be edited")
    target: Any = meta
    for i, part in enumerate(path):
        last = i == len(path) - 1
        nxt: Any = {} if last or not isinstance(path[i + 1], int) else []
        if isinstance(part, int):
            if not isinstance(target, list):
                raise OptionError(f"{'.'.join(map(str, path[:i]))} is not a list")
            if part == len(target):
                target.append(nxt)
            elif part > len(target):
                raise OptionError(f"{'.'.join(map(str, path[:i + 1]))}: index {part} is past the end "
                                  f"(the list has {len(target)} entries)")
            if last:
                target[part] = value
            else:
                if target[part] is None:
                    target[part] = nxt
                target = target[part]
        else:
            if not isinstance(target, dict):
                raise OptionError(f"{'.'.join(map(str, path[:i]))} is not an object")
            if last:
                target[part] = value
            else:
                if not isinstance(target.get(part), (dict, list)):
                    target[part] = nxt
                target = target[part]


def updated(meta: dict[str, Any], changes: dict[str, Any], assignments: Iterable[str] = (),
            unset: Iterable[str] = ()) -> dict[str, Any]:
    """A copy of ``meta`` with ``changes`` (top-level keys), ``KEY=VALUE`` assignments and removals applied."""
    out = copy.deepcopy(meta)
    if "sources" in changes:
        raise OptionError("the provenance (sources) is recorded by mlds and cannot be edited")
    out.update(copy.deepcopy(changes))
    for text in assignments:
        path, value = parse_assignment(text)
        assign(out, path, value)
    for key in unset:
        path = [int(p) if p.isdigit() else p for p in key.split(".")]
        parent: Any = out
        try:
            for part in path[:-1]:
                parent = parent[part]
            del parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            raise OptionError(f"--unset {key}: no such key") from None
    return out


# ----------------------------------------------------------------------------- policy hints
_TOP_FIX = {
    "license": "--license SPDX-ID (e.g. CC-BY-4.0)",
    "authors": "--author 'Name <email>'",
    "description": "--description 'what the data are'",
    "name": "name=NAME",
}


def fix_hint(problem: str, dataset: str | None = None) -> str:
    """The command that fixes one line of :func:`mlds.format.schema.missing_for_level` output."""
    who = dataset or "NAME"
    m = re.match(r"^metadata\.([A-Za-z_]+)(?:\[(\d+)\])?(?:\.([A-Za-z_.\[\]0-9]+))?", problem)
    if not m:
        if "no group-tier remote is configured" in problem:
            return "mlds remote add group URL --tier group"
        if "group-tier remote" in problem:
            return f"mlds promote {who}@TAG --to GROUP-REMOTE"
        return f"mlds meta set {who} KEY=VALUE"
    top, index, rest = m.group(1), m.group(2), m.group(3)
    if top in _TOP_FIX and index is None:
        return f"mlds meta set {who} {_TOP_FIX[top]}"
    if top == "calculations":
        if index is None:
            return f"mlds meta set {who} --meta settings.json (a 'calculations' list), or calculations.0.code=VASP ..."
        field = _field_of(problem, rest)
        example = _EXAMPLES.get(field.split(".")[0], "VALUE")
        return f"mlds meta set {who} calculations.{index}.{field}={example}"
    if top == "authors" and index is not None:
        return f"mlds meta set {who} --author 'Name <email>' (replaces the list)"
    return f"mlds meta set {who} {top}=VALUE"


_EXAMPLES = {
    "code": "VASP", "code_version": "6.4.2", "functional": "PBE", "plane_wave_cutoff_eV": "520",
    "kpoints": '\'{"mesh":[4,4,4]}\'', "smearing": '\'{"method":"gaussian","width_eV":0.05}\'',
    "spin_polarized": "false", "pseudopotentials": '\'[{"element":"Si","name":"PAW_PBE Si"}]\'',
}


def _field_of(problem: str, rest: str | None) -> str:
    """The missing field of a calculations[i] problem line: ``.kpoints`` or ``required: 'x'``."""
    m = re.search(r"'([A-Za-z_]+)' is a required property|\.([A-Za-z_]+): required", problem)
    if rest:
        return rest.split("[")[0]
    if m:
        return m.group(1) or m.group(2)
    return "FIELD"


def with_hints(problems: list[str], dataset: str | None = None) -> list[str]:
    """Each problem line followed by the command that fixes it."""
    return [f"{p}  -> fix: {fix_hint(p, dataset)}" for p in problems]


# ----------------------------------------------------------------------------- show / set on a target
def _is_file_target(target: str | os.PathLike) -> bool:
    return Path(target).exists()


def read_metadata(target: str | os.PathLike, *, store: Any = None) -> dict[str, Any]:
    """The metadata of a dataset file or a store version ``NAME[@TAG]``."""
    if _is_file_target(target):
        import mlds

        with mlds.open(target) as ds:
            return copy.deepcopy(ds.metadata)
    from mlds.store import open_ref

    with open_ref(os.fspath(target), store=store) as ds:
        return copy.deepcopy(ds.metadata)


def missing_by_tier(meta: dict[str, Any], dataset: str | None = None) -> dict[str, list[str]]:
    """For the group and public tiers: each problem line with the command that fixes it."""
    from mlds.format.schema import missing_for_level

    return {tier: with_hints(missing_for_level(meta, tier), dataset) for tier in ("group", "public")}


def set_metadata(target: str | os.PathLike, changes: dict[str, Any] | None = None, assignments: Iterable[str] = (),
                 unset: Iterable[str] = (), *, message: str = "", store: Any = None) -> dict[str, Any]:
    """Change the metadata of a store dataset (a new version; shards reused) or of a dataset file (rewritten).

    Returns ``{"target", "changed": [keys], "version" (store), "unchanged"}``.
    """
    from mlds.format.schema import validate_metadata

    old = read_metadata(target, store=store)
    new = updated(old, changes or {}, assignments, unset)
    changed = sorted({k for k in set(old) | set(new) if old.get(k) != new.get(k)})
    validate_metadata(new, level="base", path=os.fspath(target))
    if not changed:
        return {"target": os.fspath(target), "changed": [], "unchanged": True}
    if _is_file_target(target):
        import mlds
        from mlds.format.writer import create

        with mlds.open(target) as ds, create(target, new) as w:
            w.append(ds.iter_frames())
        return {"target": os.fspath(target), "changed": changed, "unchanged": False}
    from mlds import store as st
    from mlds.store.versions import parse_ref

    name, tag = parse_ref(os.fspath(target))
    r = st.add(f"{name}@{tag}", name, message or f"metadata: {', '.join(changed)}", store=store, metadata=new)
    return {"target": name, "changed": changed, "version": r["version"], "unchanged": bool(r.get("unchanged"))}
