"""Write n2p2's ``input.nn`` from resolved settings, in the training unit system.

Cutoffs, eta and r_s are given in Å in the settings and converted here to the length
unit of the exported ``input.data`` (n2p2 has no units of its own: both files must agree).
"""

from __future__ import annotations

from typing import Any, Mapping

from mlds.io.n2p2 import n2p2_unit_factors
from mlds.train import symfuncs


def symmetry_function_lines(settings: Mapping[str, Any]) -> list[str]:
    """``symfunction_short`` lines (training units): explicit ``lines`` or the generated set."""
    sf = settings["symmetry_functions"]
    if sf.get("lines"):
        return [" ".join(str(ln).split()) for ln in sf["lines"]]
    lf, _ = n2p2_unit_factors(settings["units"])
    r_cut = float(settings["cutoff"]) * lf
    funcs = symfuncs.generate(settings["elements"], r_cut, radial_centred=sf["radial_centred"],
                              radial_shifted=sf["radial_shifted"], angular_etas=sf["angular_etas"],
                              zetas=sf["zetas"], lambdas=sf["lambdas"], angular_kind=sf["angular_kind"])
    return [f.line() for f in funcs]


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return " ".join(_value(x) for x in v)
    if isinstance(v, float):
        return f"{v:.10g}"
    return str(v)


def keywords(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Every non-symmetry-function keyword, in writing order (True = flag)."""
    from mlds.train.settings import TRAINING_KEYWORDS

    els = list(settings["elements"])
    nodes = list(settings["network"]["hidden_nodes"])
    act = str(settings["network"]["activation"])
    sf = settings["symmetry_functions"]
    kw: dict[str, Any] = {
        "number_of_elements": len(els),
        "elements": els,
        "cutoff_type": [sf["cutoff_type"], sf["cutoff_alpha"]],
        "global_hidden_layers_short": len(nodes),
        "global_nodes_short": nodes,
        "global_activation_short": [act] * len(nodes) + ["l"],
        "random_seed": int(settings["seed"]) + 1,   # n2p2 rejects nothing, but seed 0 reads as "unset" to users
        "epochs": int(settings["epochs"]),
        "test_fraction": float(settings["test_fraction"]),
    }
    kw.update(TRAINING_KEYWORDS)
    for k, v in settings.get("n2p2", {}).items():
        if v is False:
            kw.pop(k, None)
        else:
            kw[k] = v
    return kw


def render(settings: Mapping[str, Any], sf_lines: list[str] | None = None, *, header: str = "") -> str:
    """The text of ``input.nn``."""
    lines = [f"# {ln}" for ln in header.splitlines()] if header else []
    _, ef = n2p2_unit_factors(settings["units"])
    for k, v in keywords(settings).items():
        if v is True:
            lines.append(k)
        else:
            lines.append(f"{k} {_value(v)}")
    for el, e in settings.get("atom_energy", {}).items():
        lines.append(f"atom_energy {el} {float(e) * ef:.12g}")
    lines.append("")
    lines.append(f"# symmetry functions: {symfuncs.REFERENCE}" if not settings["symmetry_functions"].get("lines")
                 else "# symmetry functions: given explicitly in the settings")
    lines += sf_lines if sf_lines is not None else symmetry_function_lines(settings)
    return "\n".join(lines) + "\n"
