"""The settings compatibility key: may these frames share one training set?

Frames computed with different DFT settings (code, functional, plane-wave
cutoff, pseudopotential set, smearing, spin treatment, +U) have energies on
different scales; mixing them silently poisons a potential's training.  This
module reduces a calculation-settings object (``schema/calculation-v1``) to the
fields that decide that, in a canonical form, and gives

* :func:`settings_fields` — the canonical fields (plain JSON);
* :func:`settings_key` — a short stable digest of them (``"sk1-" + 16 hex``),
  equal for equal fields; ``mlds info`` shows it per calculation;
* :func:`describe` — the same fields as one human line;
* :func:`compatible` — whether two calculations may be mixed, with the first
  difference as the reason.

Why two notions: the pseudopotential and +U choices are per element.  A Si-only
frame and a Si-O frame computed with the same Si potential are compatible, but
their fields (and keys) differ because only one of them mentions oxygen.  So the
key is exact, and :func:`compatible` compares the per-element entries only for
the elements both calculations contain.

Left out on purpose: k-points (a mesh belongs to a cell, so a dataset of many
cells necessarily mixes meshes), code version, convergence thresholds (EDIFF,
NELM) and the ionic algorithm, which change how a run proceeds, not the energy
scale of a converged frame.

Rounding: cutoffs to 0.01 eV and smearing widths to 1e-4 eV, because the same
setting is printed with different precision and unit conversions by different
files of one code (QE's Ry in the text output, Ha in the XML).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

KEY_PREFIX = "sk1-"
_SCALARS = ("code", "method", "functional", "plane_wave_cutoff_eV", "smearing", "spin_polarized")
_WIDTH_METHODS = ("gaussian", "methfessel-paxton", "marzari-vanderbilt", "fermi-dirac")


def _norm_text(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _round(value: Any, digits: int) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if x != x:  # NaN
        return None
    return round(x, digits) + 0.0  # + 0.0: no negative zero in the key


def _smearing(sm: Any) -> dict[str, Any] | None:
    if not isinstance(sm, Mapping):
        return None
    method = _norm_text(sm.get("method"))
    method = method.lower() if method else None
    out: dict[str, Any] = {"method": method}
    if method == "methfessel-paxton":
        out["order"] = int(sm.get("order", 1) or 1)
    if method in _WIDTH_METHODS or method is None:
        out["width_eV"] = _round(sm.get("width_eV"), 4)
    return out


def _pseudopotentials(pps: Any) -> dict[str, str]:
    """element -> potential identity (name, else file name, else digest); repeats merged."""
    out: dict[str, set[str]] = {}
    for pp in pps or []:
        if not isinstance(pp, Mapping) or not pp.get("element"):
            continue
        ident = _norm_text(pp.get("name"))
        if ident is None and pp.get("file"):
            ident = _norm_text(str(pp["file"]).replace("\\", "/").rsplit("/", 1)[-1])
        if ident is None:
            ident = _norm_text(pp.get("sha256") or pp.get("md5")) or "?"
        out.setdefault(str(pp["element"]), set()).add(ident)
    return {el: " | ".join(sorted(names)) for el, names in sorted(out.items())}


def _species(settings: Mapping[str, Any]) -> list[str]:
    """Species in the code's order (VASP's POTCAR order), for per-species INCAR lists."""
    return [str(pp["element"]) for pp in settings.get("pseudopotentials") or []
            if isinstance(pp, Mapping) and pp.get("element")]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().strip(".").upper() in ("T", "TRUE", "1", "YES")
    return bool(value)


def _hubbard(settings: Mapping[str, Any]) -> dict[str, list[float]]:
    """element -> [l, U, J] (eV) for every element with a non-zero U or J.

    Read from a top-level ``hubbard`` entry when a reader records one
    (``{element: U}`` or ``[{"element", "U_eV", "J_eV", "l"}]``), else from the raw
    parameters in ``extra``: VASP's LDAU/LDAUL/LDAUU/LDAUJ (per species, POTCAR
    order) or pw.x's ``lda_plus_u`` with ``Hubbard_U`` (``{element: U}``).  Nothing
    recorded means no +U.
    """
    out: dict[str, list[float]] = {}

    def put(el: Any, u: Any, j: Any = 0.0, l: Any = -1) -> None:
        uu, jj = _round(u, 4) or 0.0, _round(j, 4) or 0.0
        if uu or jj:
            out[str(el)] = [float(_round(l, 0) if _round(l, 0) is not None else -1), uu, jj]

    hub = settings.get("hubbard")
    if isinstance(hub, Mapping):
        for el, u in hub.items():
            put(el, u)
        return dict(sorted(out.items()))
    if isinstance(hub, list):
        for h in hub:
            if isinstance(h, Mapping) and h.get("element"):
                put(h["element"], h.get("U_eV", h.get("U")), h.get("J_eV", h.get("J", 0.0)), h.get("l", -1))
        return dict(sorted(out.items()))
    extra = settings.get("extra") if isinstance(settings.get("extra"), Mapping) else {}
    if _truthy(extra.get("LDAU", False)):
        species = _species(settings)
        us, js, ls = _as_list(extra.get("LDAUU")), _as_list(extra.get("LDAUJ")), _as_list(extra.get("LDAUL"))
        for i, el in enumerate(species):
            put(el, us[i] if i < len(us) else 0.0, js[i] if i < len(js) else 0.0, ls[i] if i < len(ls) else -1)
    elif _truthy(extra.get("lda_plus_u", False)):
        hu = extra.get("Hubbard_U") or extra.get("hubbard_u") or {}
        if isinstance(hu, Mapping):
            for el, u in hu.items():
                put(el, u)
    return dict(sorted(out.items()))


def settings_fields(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The canonical fields that decide compatibility (plain JSON values)."""
    s = settings or {}
    code = _norm_text(s.get("code"))
    functional = _norm_text(s.get("functional"))
    extra = s.get("extra") if isinstance(s.get("extra"), Mapping) else {}
    if functional and extra.get("vdw_correction") and "+" not in functional:
        functional += "+VDW"  # a dispersion correction the reader saw but could not name (VASP without IVDW echo)
    spin = s.get("spin_polarized")
    return {
        "code": code.lower() if code else None,
        "method": (_norm_text(s.get("method")) or "dft").lower(),
        "functional": functional.upper() if functional else None,
        "plane_wave_cutoff_eV": _round(s.get("plane_wave_cutoff_eV"), 2),
        "smearing": _smearing(s.get("smearing")),
        "spin_polarized": None if spin is None else bool(spin),
        "pseudopotentials": _pseudopotentials(s.get("pseudopotentials")),
        "hubbard": _hubbard(s),
    }


def settings_key(settings: Mapping[str, Any] | None) -> str:
    """``"sk1-" + 16 hex``: equal for calculations whose compatibility fields are equal."""
    canon = json.dumps(settings_fields(settings), sort_keys=True, separators=(",", ":"))
    return KEY_PREFIX + hashlib.sha256(canon.encode()).hexdigest()[:16]


def compatible(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> tuple[bool, str]:
    """(True, "") when frames of settings ``a`` and ``b`` may share a dataset, else (False, why).

    Scalar fields must be equal; per-element pseudopotentials and +U must agree
    on the elements both contain (an element without +U has U = 0).
    """
    return fields_compatible(settings_fields(a), settings_fields(b))


def fields_compatible(fa: Mapping[str, Any], fb: Mapping[str, Any]) -> tuple[bool, str]:
    """:func:`compatible` on fields already made by :func:`settings_fields` (for callers comparing many)."""
    for name in _SCALARS:
        if fa[name] != fb[name]:
            return False, f"{_LABELS[name]} {_show(name, fa[name])} vs {_show(name, fb[name])}"
    pa, pb = fa["pseudopotentials"], fb["pseudopotentials"]
    for el in sorted(pa.keys() & pb.keys()):
        if pa[el] != pb[el]:
            return False, f"{el} pseudopotential {pa[el]!r} vs {pb[el]!r}"
    common = set(pa) & set(pb) if pa and pb else set(fa["hubbard"]) | set(fb["hubbard"])
    for el in sorted(common):
        ua, ub = fa["hubbard"].get(el), fb["hubbard"].get(el)
        if ua != ub:
            return False, f"+U on {el}: {_show_u(ua)} vs {_show_u(ub)}"
    return True, ""


_LABELS = {"code": "code", "method": "method", "functional": "functional", "plane_wave_cutoff_eV": "cutoff",
           "smearing": "smearing", "spin_polarized": "spin"}


def _show(name: str, value: Any) -> str:
    if value is None:
        return "(not recorded)"
    if name == "plane_wave_cutoff_eV":
        return f"{value:g} eV"
    if name == "smearing":
        return _show_smearing(value)
    if name == "spin_polarized":
        return "spin-polarized" if value else "non-spin-polarized"
    return str(value)


def _show_smearing(sm: Mapping[str, Any]) -> str:
    text = str(sm.get("method") or "?")
    if sm.get("order") is not None:
        text += f" order {sm['order']}"
    if sm.get("width_eV") is not None:
        text += f" {sm['width_eV']:g} eV"
    return text


def _show_u(u: list[float] | None) -> str:
    if not u:
        return "none"
    return f"U={u[1]:g} eV" + (f" J={u[2]:g} eV" if u[2] else "")


def describe(settings: Mapping[str, Any] | None) -> str:
    """One line naming every compatibility field, e.g. for ``mlds info`` and ingest's summary."""
    f = settings_fields(settings)
    parts = [str((settings or {}).get("code") or "?"), f["functional"] or "functional ?"]
    if f["method"] != "dft":
        parts.append(f"({f['method']})")
    parts.append(_show("plane_wave_cutoff_eV", f["plane_wave_cutoff_eV"]) if f["plane_wave_cutoff_eV"] is not None else "cutoff ?")
    parts.append(_show_smearing(f["smearing"]) if f["smearing"] else "smearing ?")
    if f["spin_polarized"] is not None:
        parts.append(_show("spin_polarized", f["spin_polarized"]))
    if f["hubbard"]:
        parts.append("+U " + ", ".join(f"{el} {_show_u(u)}" for el, u in f["hubbard"].items()))
    if f["pseudopotentials"]:
        parts.append("PP " + ", ".join(f"{el}={name}" for el, name in f["pseudopotentials"].items()))
    return "; ".join(parts)
