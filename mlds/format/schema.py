"""JSON Schema validation of dataset metadata (``spec/format-v1.md`` §6).

The schemas live in the repository's ``schema/`` folder, shipped inside the
package as ``mlds/schema`` (a symlink).  Three levels, matching the tiers of
the sync layer:

``base`` (alias ``personal``)
    ``metadata-v1.schema.json``: what every container's metadata satisfies.
``group``
    ``metadata-v1.schema.json#/$defs/group_tier``: base + at least one
    calculation, each complete (``calculation-complete-v1.schema.json``).
``public``
    ``metadata-public-v1.schema.json``: group + license, authors, description,
    provenance paths without directories.

:func:`validate_metadata` raises :class:`mlds.errors.ValidationError` with a
one-line message naming the JSON path of the most relevant error;
:func:`missing_for_level` lists everything a tier still lacks, one line each.
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import lru_cache
from importlib.resources import files
from typing import Any, Iterable

from jsonschema import Draft202012Validator
from jsonschema import exceptions as js_exc
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from mlds.errors import ValidationError

SCHEMA_BASE_URI = "https://mlds.dev/schema/"

SCHEMA_FILES = {
    "metadata": "metadata-v1.schema.json",
    "metadata-public": "metadata-public-v1.schema.json",
    "calculation": "calculation-v1.schema.json",
    "calculation-complete": "calculation-complete-v1.schema.json",
}

# level -> URI of the schema (resource or subschema) that defines it
LEVELS = {
    "base": SCHEMA_BASE_URI + "metadata-v1.schema.json",
    "personal": SCHEMA_BASE_URI + "metadata-v1.schema.json",
    "group": SCHEMA_BASE_URI + "metadata-v1.schema.json#/$defs/group_tier",
    "public": SCHEMA_BASE_URI + "metadata-public-v1.schema.json",
}

__all__ = [
    "LEVELS",
    "SCHEMA_BASE_URI",
    "load_schema",
    "metadata_validator",
    "missing_for_level",
    "validate_calculation",
    "validate_metadata",
]


def _schema_dir():
    return files("mlds") / "schema"


def _file_name(name: str) -> str:
    """Accept ``metadata``, ``metadata-v1``, ``metadata-v1.schema.json`` or the ``$id`` URL."""
    if name.startswith(SCHEMA_BASE_URI):
        name = name[len(SCHEMA_BASE_URI):]
    if name in SCHEMA_FILES:
        return SCHEMA_FILES[name]
    if name.endswith(".schema.json"):
        return name
    if name.endswith(".json"):
        return name
    return f"{name}.schema.json"


@lru_cache(maxsize=None)
def _load(file_name: str) -> dict[str, Any]:
    res = _schema_dir() / file_name
    if not res.is_file():
        known = ", ".join(sorted(SCHEMA_FILES))
        raise KeyError(f"no schema {file_name!r} in {_schema_dir()} (known: {known})")
    return json.loads(res.read_text(encoding="utf-8"))


def load_schema(name: str) -> dict[str, Any]:
    """The schema ``name`` as a dict (a fresh copy: callers may modify it).

    ``name`` is a short name (``"metadata"``, ``"metadata-public"``,
    ``"calculation-complete"``, ...), a file name, or the schema's ``$id``.
    """
    return copy.deepcopy(_load(_file_name(name)))


@lru_cache(maxsize=1)
def _registry() -> Registry:
    """Every ``*.schema.json`` of the folder, under its ``$id`` (and its file URL)."""
    resources = []
    for entry in sorted(_schema_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".schema.json"):
            contents = _load(entry.name)
            resource = Resource.from_contents(contents, default_specification=DRAFT202012)
            resources.append((SCHEMA_BASE_URI + entry.name, resource))
            if isinstance(contents.get("$id"), str) and contents["$id"] != SCHEMA_BASE_URI + entry.name:
                resources.append((contents["$id"], resource))
    return Registry().with_resources(resources).crawl()


@lru_cache(maxsize=None)
def _validator_for_uri(uri: str) -> Draft202012Validator:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": uri}
    return Draft202012Validator(schema, registry=_registry())


def _validator(name: str) -> Draft202012Validator:
    return _validator_for_uri(SCHEMA_BASE_URI + _file_name(name))


def metadata_validator(level: str = "base") -> Draft202012Validator:
    """The cached validator for a level (``base``/``personal``, ``group``, ``public``)."""
    return _validator_for_uri(_level_schema(level))


def _level_schema(level: str) -> str:
    try:
        return LEVELS[level]
    except KeyError:
        raise ValueError(f"unknown metadata level {level!r}; expected one of {', '.join(LEVELS)}") from None


# ---------------------------------------------------------------------------
# error messages

def json_path(parts: Iterable[Any], root: str = "metadata") -> str:
    """``metadata.calculations[0].kpoints`` from ``["calculations", 0, "kpoints"]``."""
    out = root
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(p)):
            out += f".{p}"
        else:
            out += f"[{json.dumps(str(p))}]"
    return out


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(err: js_exc.ValidationError, root: str = "metadata") -> str:
    """One line: ``<json path>: <problem>``."""
    parts = list(err.absolute_path)
    v = err.validator
    if v == "required":
        missing = re.match(r"'(.*)' is a required property", err.message)
        if missing:
            return f"{json_path(parts + [missing.group(1)], root)}: required but missing"
    if v == "minItems" and isinstance(err.instance, list) and not err.instance:
        return f"{json_path(parts, root)}: must not be empty (at least {err.validator_value} required)"
    if v == "minLength" and isinstance(err.instance, str) and not err.instance:
        return f"{json_path(parts, root)}: must not be empty"
    if v == "pattern" and err.instance == "":
        return f"{json_path(parts, root)}: must not be empty"
    if v == "pattern":
        return f"{json_path(parts, root)}: {_short(err.instance)} {_pattern_hint(parts, err)}"
    if v == "const":
        return f"{json_path(parts, root)}: {_short(err.instance)} must be {_short(err.validator_value)} in spec 1.x"
    if v == "enum" and parts and parts[-1] == "element":
        return f"{json_path(parts, root)}: {_short(err.instance)} is not a chemical symbol (H..Og)"
    if v == "enum" and isinstance(err.validator_value, list) and len(err.validator_value) > 12:
        return f"{json_path(parts, root)}: {_short(err.instance)} is not a valid value"
    if v == "not" and parts and parts[-1] == "license":
        return f"{json_path(parts, root)}: {_short(err.instance)} is not a license (a public dataset needs one)"
    if v in ("anyOf", "oneOf"):
        if parts and parts[-1] == "kpoints":
            return f"{json_path(parts, root)}: needs one of mesh, n_kpoints, density_per_inv_angstrom"
        if len(parts) >= 2 and parts[-2] == "pseudopotentials":
            return f"{json_path(parts, root)}: needs a name or a file"
        # a single alternative's reason is usually the most helpful
        sub = js_exc.best_match(err.context) if err.context else None
        if sub is not None:
            return _describe(sub, root)
    if v == "dependentRequired":
        return f"{json_path(parts, root)}: {err.message}"
    return f"{json_path(parts, root)}: {err.message}"


_PATTERN_HINTS = {
    "name": "is not a slug (letters, digits, '.', '_', '-', starting with a letter or digit, at most 128 characters)",
    "license": "is not an SPDX license identifier (e.g. \"CC-BY-4.0\", \"MIT\", \"LicenseRef-...\")",
    "orcid": "is not an ORCID iD (0000-0000-0000-0000)",
    "email": "is not an e-mail address",
    "sha256": "is not a sha256 (64 lower-case hex digits)",
    "md5": "is not an md5 (32 lower-case hex digits)",
    "steps_kept": "is not a list of step ranges like \"0-9,12\"",
    "path": "contains a directory (the public tier keeps only file names)",
    "description": "must contain some text",
}


def _pattern_hint(parts: list[Any], err: js_exc.ValidationError) -> str:
    key = parts[-1] if parts else None
    return _PATTERN_HINTS.get(key, f"does not match {err.validator_value!r}") if isinstance(key, str) else f"does not match {err.validator_value!r}"


# ---------------------------------------------------------------------------
# checks JSON Schema cannot express

def _semantic_errors(meta: dict[str, Any]) -> list[tuple[list[Any], str]]:
    """(JSON path parts, line) for each problem the schema cannot see: index bounds, range order."""
    out: list[tuple[list[Any], str]] = []
    if not isinstance(meta, dict):
        return out
    calcs = meta.get("calculations")
    n_calc = len(calcs) if isinstance(calcs, list) else 0
    sources = meta.get("sources")
    if isinstance(sources, list):
        for i, src in enumerate(sources):
            if not isinstance(src, dict):
                continue
            c = src.get("calculation")
            if isinstance(c, int) and not isinstance(c, bool) and c >= n_calc:
                parts = ["sources", i, "calculation"]
                out.append((parts, f"{json_path(parts)}: {c} is not an index into metadata.calculations "
                                   f"(which has {n_calc} entr{'y' if n_calc == 1 else 'ies'})"))
            steps = src.get("steps_kept")
            if isinstance(steps, str) and steps and re.fullmatch(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*", steps):
                last = -1
                for part in steps.split(","):
                    a, _, b = part.partition("-")
                    lo, hi = int(a), int(b or a)
                    if lo > hi or lo <= last:
                        parts = ["sources", i, "steps_kept"]
                        out.append((parts, f"{json_path(parts)}: {steps!r} must list ascending, "
                                           f"non-overlapping ranges"))
                        break
                    last = hi
    return out


# ---------------------------------------------------------------------------
# public API

def validate_metadata(meta: dict[str, Any], *, level: str = "base",
                      path: str | os.PathLike | None = None) -> None:
    """Raise :class:`ValidationError` unless ``meta`` is valid at ``level``.

    The message is one line naming the JSON path of the most relevant error,
    e.g. ``metadata.calculations[0].plane_wave_cutoff_eV: -5 is less than or
    equal to the minimum of 0``; ``path`` (the file) prefixes it.
    """
    validator = metadata_validator(level)
    errors = list(validator.iter_errors(meta))
    if errors:
        best = js_exc.best_match(errors)
        extra = len(errors) - 1
        msg = _describe(best)
        if extra:
            msg += f" (and {extra} more problem{'s' if extra > 1 else ''})"
        raise ValidationError(path, msg)
    semantic = [line for _, line in _semantic_errors(meta)]
    if semantic:
        msg = semantic[0]
        if len(semantic) > 1:
            msg += f" (and {len(semantic) - 1} more problem{'s' if len(semantic) > 2 else ''})"
        raise ValidationError(path, msg)


def missing_for_level(meta: dict[str, Any], level: str) -> list[str]:
    """Every problem that keeps ``meta`` from the ``level`` tier, one line each.

    Empty when ``meta`` is valid at that level.  Lines are sorted by JSON path
    and deduplicated, e.g. ``metadata.calculations[0].code_version: required
    but missing``.  Used by ``mlds promote`` to say exactly what is missing.

    Directories in ``sources[].path`` are not reported for the public level:
    the public tier policy strips them itself (file name only) before writing,
    so the user has nothing to fix; :func:`validate_metadata` at level
    ``public`` still rejects them, as stored public metadata must not carry them.
    """
    validator = metadata_validator(level)
    lines: list[tuple[tuple, str]] = []
    seen: set[str] = set()
    for err in validator.iter_errors(meta):
        if _stripped_by_promote(err, level):
            continue
        # allOf/$ref failures arrive as separate leaf errors; anyOf/oneOf
        # failures are summarised in one line by _describe.
        line = _describe(err)
        if line not in seen:
            seen.add(line)
            lines.append((_sort_key(err), line))
    for parts, line in _semantic_errors(meta):
        if line not in seen:
            seen.add(line)
            lines.append((_parts_key(parts), line))
    lines.sort(key=lambda t: (t[0], t[1]))
    return [line for _, line in lines]


def _stripped_by_promote(err: js_exc.ValidationError, level: str) -> bool:
    parts = list(err.absolute_path)
    return (level == "public" and err.validator == "pattern" and len(parts) == 3
            and parts[0] == "sources" and parts[2] == "path")


def _sort_key(err: js_exc.ValidationError) -> tuple:
    parts = list(err.absolute_path)
    if err.validator == "required":
        m = re.match(r"'(.*)' is a required property", err.message)
        if m:
            parts.append(m.group(1))
    return _parts_key(parts)


def _parts_key(parts: list[Any]) -> tuple:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in parts)


def validate_calculation(calc: dict[str, Any], *, complete: bool = False,
                         path: str | os.PathLike | None = None, index: int | None = None) -> None:
    """Validate one calculation-settings object (``complete``: group-tier rules)."""
    validator = _validator("calculation-complete" if complete else "calculation")
    errors = list(validator.iter_errors(calc))
    if errors:
        root = "calculation" if index is None else f"metadata.calculations[{index}]"
        raise ValidationError(path, _describe(js_exc.best_match(errors), root))


def main(argv: list[str] | None = None) -> int:
    """``python -m mlds.format.schema FILE [--level group]``: validate metadata offline.

    FILE is a JSON file holding the metadata object, or an mlds HDF5 container
    (its ``metadata`` root attribute is read).  Prints what is missing for the
    level, one line each; exit status 0 when valid, 1 when not.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mlds.format.schema", description=main.__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--level", default="base", choices=sorted(LEVELS))
    args = ap.parse_args(argv)
    if args.file.endswith((".h5", ".hdf5")):
        import h5py

        with h5py.File(args.file, "r") as fh:
            raw = fh.attrs["metadata"]
        meta = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    else:
        with open(args.file, encoding="utf-8") as fh:
            meta = json.load(fh)
    problems = missing_for_level(meta, args.level)
    for line in problems:
        print(f"{args.file}: {line}")
    if not problems:
        print(f"{args.file}: valid at level {args.level}")
    return 1 if problems else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
