"""Trained potentials as versioned store objects (kind ``potential``, see :mod:`mlds.store.kinds`).

A potential is a handful of files (``input.nn``, ``scaling.data``, ``weights.ZZZ.data``,
plus the ``settings.toml`` it was trained with) and metadata validated by
``schema/potential-v1.schema.json``: code and version, elements, cutoff, units, the exact
dataset version and split, metrics, learning curve, host and run time.  It lives in the same
content-addressed store as datasets, so ``push``/``pull``/``promote``/``tag``/``log`` work on it
unchanged; this module adds what is specific to potentials (listing, LAMMPS lines).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlds.errors import MldsError, NotFoundError

KIND = "potential"
SCHEMA_FILE = "potential-v1.schema.json"


class PotentialError(MldsError):
    pass


@dataclass
class Potential:
    """A potential: where its files are, and its metadata (and store identity once registered)."""

    metadata: dict[str, Any]
    path: Path | None = None             # local folder holding the files
    name: str | None = None
    version: int | None = None
    manifest: str | None = None
    files: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str | None:
        return f"{self.name}@v{self.version}" if self.name and self.version else self.name

    @property
    def elements(self) -> list[str]:
        return list(self.metadata.get("elements", []))

    def lammps(self, directory: str | os.PathLike | None = None) -> dict[str, str]:
        """``pair_style``/``pair_coeff`` lines for LAMMPS ``units metal`` (ML-HDNNP package)."""
        return lammps_lines(self.metadata, directory if directory is not None else (self.path or "hdnnp"))


def lammps_lines(metadata: dict[str, Any], directory: str | os.PathLike = "hdnnp") -> dict[str, str]:
    """Lines for ``pair_style hdnnp`` (n2p2 2.3.0, ``src/interface/LAMMPS/src/ML-HDNNP/pair_hdnnp.cpp``).

    ``cflength``/``cfenergy`` convert LAMMPS ``units metal`` (Å, eV) to the training units;
    the cutoff is in LAMMPS units and may not be below the largest symmetry-function cutoff
    (n2p2 checks ``cutoff >= r_c / cflength``), so it is rounded up at the 6th decimal.
    """
    units = metadata["units"]
    cut = math.ceil(float(metadata["cutoff_angstrom"]) * 1e6 - 1e-6) / 1e6
    d = str(directory)
    if any(c.isspace() for c in d):
        d = f'"{d}"'
    style = (f"pair_style hdnnp {cut:g} dir {d} showew no showewsum 0 resetew no maxew 0 "
             f"cflength {units['cflength']!r} cfenergy {units['cfenergy']!r}")
    coeff = "pair_coeff * * " + " ".join(metadata["elements"])
    return {"units": "units metal", "pair_style": style, "pair_coeff": coeff}


def validate(metadata: dict[str, Any]) -> None:
    """Raise a one-line :class:`PotentialError` unless ``metadata`` satisfies potential-v1."""
    from jsonschema import Draft202012Validator
    from jsonschema import exceptions as js_exc

    schema = _schema()
    errors = list(Draft202012Validator(schema).iter_errors(metadata))
    if errors:
        e = js_exc.best_match(errors)
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise PotentialError(f"potential metadata {where}: {e.message}")


def _schema() -> dict[str, Any]:
    from importlib.resources import files

    return json.loads(files("mlds").joinpath("schema", SCHEMA_FILE).read_text(encoding="utf-8"))


# ----------------------------------------------------------------- store operations
def _api():
    from mlds.store import api

    if not hasattr(api, "add_files"):
        raise PotentialError("this mlds has no potential objects in its store yet (mlds.store.api.add_files); "
                             "update mlds")
    return api


def register(pot: Potential, name: str, files: dict[str, Path], *, store: Any = None, message: str = "") -> Potential:
    """Store ``files`` + metadata as a new version of potential ``name``."""
    api = _api()
    validate(pot.metadata)
    md = pot.metadata
    summary = {
        "elements": md["elements"], "nelements": len(md["elements"]), "code": md["code"],
        "codes": [md["code"]],  # the catalog's field: `mlds search 'codes HAS "n2p2"'` finds potentials
        "cutoff_angstrom": md["cutoff_angstrom"], "dataset": md["dataset"]["name"],
        "dataset_manifest": md["dataset"].get("manifest"),
        "energy_rmse_per_atom_eV": md["metrics"]["energy_rmse_per_atom_eV"]["test"],
        "force_rmse_eV_per_angstrom": md["metrics"]["force_rmse_eV_per_angstrom"]["test"],
    }
    r = api.add_files(name, {k: str(v) for k, v in files.items()}, kind=KIND, metadata=md, summary=summary,
                      message=message or f"n2p2 potential trained on {md['dataset']['name']}", store=store)
    return Potential(md, pot.path, name, int(r["version"]), r["manifest"], sorted(files))


def _manifest(ref: str, store: Any = None) -> dict[str, Any]:
    api = _api()
    try:
        m = api.manifest(ref, store=_store(store))
    except NotFoundError as err:
        raise PotentialError(f"{err.where}: no potential named {err.name!r} (mlds potential ls lists them)") from None
    if (m.get("kind") or "dataset") != KIND:
        raise PotentialError(f"{ref} is a {m.get('kind') or 'dataset'}, not a potential")
    return m


def _store(store: Any):
    if store is None or not isinstance(store, str):
        return store
    from mlds.store.api import open_store

    return open_store(store)



def show(ref: str, store: Any = None) -> Potential:
    m = _manifest(ref, store)
    name = ref.partition("@")[0]
    return Potential(m["metadata"], None, name, m.get("version"), None, [f["path"] for f in m.get("files", [])])


def get(ref: str, outdir: str | os.PathLike, *, store: Any = None, force: bool = False) -> Potential:
    """Write the potential's files to ``outdir`` (a folder LAMMPS reads)."""
    api = _api()
    pot = show(ref, store)
    api.checkout_files(ref, outdir, store=_store(store), force=force)
    pot.path = Path(outdir)
    return pot


def _entry(e: dict[str, Any], st: Any) -> dict[str, Any]:
    """A catalog entry of a potential plus its manifest summary (dataset, test errors)."""
    from mlds.store import api

    name = e.get("dataset") or e.get("name")
    out = {**e, "name": name}
    try:
        summary = api.manifest(f"{name}@{e.get('latest') or 'latest'}", store=st).get("summary", {})
    except MldsError:
        return out
    out.update({"dataset_name": summary.get("dataset"), "dataset_manifest": summary.get("dataset_manifest"),
                "energy_rmse_per_atom_eV": summary.get("energy_rmse_per_atom_eV"),
                "force_rmse_eV_per_angstrom": summary.get("force_rmse_eV_per_angstrom")})
    return out


def ls(remote: Any = None) -> list[dict[str, Any]]:
    """Potentials in the local store or a remote, with their tags, training data and test errors."""
    from mlds.store import api

    st = api.open_store(remote)
    return [_entry(e, st) for e in api.ls(st) if e.get("kind") == KIND]


def search(query: str, remotes: list[Any] | None = None) -> list[dict[str, Any]]:
    """Potentials matching a store search filter (e.g. ``elements HAS "Cu"``)."""
    from mlds.store import api

    out = []
    for r in remotes or [None]:
        st = api.open_store(r)
        out += [{**_entry(e, st), "remote": st.name} for e in api.search(query, [st]) if e.get("kind") == KIND]
    return out


def trained_on(dataset_ref: str, store: Any = None) -> list[dict[str, Any]]:
    """Potentials in the store whose training data was exactly the version ``dataset_ref``."""
    from mlds.store import api
    from mlds.store import versions as _v

    st = api.open_store(store)
    name, tag = _v.parse_ref(dataset_ref)
    h = _v.resolve(st, name, tag)
    return [e for e in ls(st) if e.get("dataset_manifest") == h]


def potentials_of(target: str) -> list[str]:
    """``NAME@vN`` of the potentials trained on store version ``target`` (for ``mlds info``); [] otherwise."""
    if os.path.exists(target):
        return []
    try:
        return [f"{e['name']}@v{e.get('version')}" for e in trained_on(target)]
    except (MldsError, ValueError):
        return []
