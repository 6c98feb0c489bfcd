"""Training settings: documented presets chosen by elements and cutoff, overridable from TOML.

Resolution order (later wins): the preset for the data's elements and cutoff -> a TOML
file (``--settings FILE``) -> keyword arguments / command-line options.  The resolved
settings are written into the run folder (``settings.toml``) and stored with the potential,
so a run can be repeated exactly.

Preset ``standard`` (default).  Per neighbour element, each radial grid (centred and
shifted, Imbalzano et al. 2018, see :mod:`mlds.train.symfuncs`) has
``N = clamp(round(cutoff / 1 Å), 4, 8)`` functions, one fewer with 3 elements and two
fewer (at least 3) with 4 or more; per neighbour pair the angular set has 3 etas x
zeta (1, 4, 16) x lambda +-1 for up to 2 elements, 2 etas x zeta (1, 4, 16) x lambda for
3, 2 etas x zeta (1, 4) x lambda beyond.  Network 2 x 15 tanh; Kalman filter; 30 epochs.

Preset ``quick``: N = 4 per radial grid, 2 etas x zeta (1, 4) x lambda, 2 x 8 tanh,
10 epochs — for trying the pipeline, not for production potentials.

Every n2p2 keyword can be set or removed under ``[n2p2]`` (``true`` = flag on, ``false``
= keyword removed, lists are joined with spaces).
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

import tomli_w

from mlds.errors import MldsError

PRESETS = ("standard", "quick")
UNITS = ("angstrom-ev", "bohr-hartree")


class SettingsError(MldsError):
    """Bad or inconsistent training settings."""


# n2p2 training keywords shared by every preset (values as in n2p2's
# examples/nnp-train/H2O_RPBE-D3_norm-force/input.nn, the recommended Kalman setup).
TRAINING_KEYWORDS: dict[str, Any] = {
    "use_short_forces": True,
    "normalize_data_set": "force",   # without it force RMSEs can blow up (issue 9: 6.6 -> 1,615 eV/Å)
    "updater_type": 1,
    "parallel_mode": 0,
    "jacobian_mode": 1,
    "update_strategy": 0,
    "selection_mode": 2,
    "task_batch_size_energy": 1,
    "task_batch_size_force": 1,
    "memorize_symfunc_results": True,
    "force_weight": 1.0,
    "short_energy_fraction": 1.0,
    "force_energy_ratio": 3.0,
    "short_energy_error_threshold": 0.0,
    "short_force_error_threshold": 1.0,
    "rmse_threshold_trials": 3,
    "weights_min": -1.0,
    "weights_max": 1.0,
    "main_error_metric": "RMSEpa",
    "write_weights_epoch": 1,
    "kalman_type": 0,
    "kalman_epsilon": 1.0e-2,
    "kalman_q0": 0.01,
    "kalman_qtau": 2.302,
    "kalman_qmin": 1.0e-6,
    "kalman_eta": 0.01,
    "kalman_etatau": 2.302,
    "kalman_etamax": 1.0,
    "scale_symmetry_functions": True,
    "center_symmetry_functions": True,
    "scale_min_short": 0.0,
    "scale_max_short": 1.0,
}

# Keywords mlds writes itself from other settings; [n2p2] may not set them.
MANAGED_KEYWORDS = ("number_of_elements", "elements", "epochs", "random_seed", "test_fraction",
                    "global_hidden_layers_short", "global_nodes_short", "global_activation_short",
                    "cutoff_type", "symfunction_short", "atom_energy", "mean_energy", "conv_energy",
                    "conv_length", "use_old_weights_short")

_TOP_KEYS = {"code", "preset", "units", "cutoff", "elements", "epochs", "test_fraction", "seed",
             "symmetry_functions", "network", "checks", "atom_energy", "n2p2", "scaling_bins"}
_SF_KEYS = {"rule", "radial_centred", "radial_shifted", "angular_etas", "zetas", "lambdas", "angular_kind",
            "cutoff_type", "cutoff_alpha", "prune_threshold", "lines"}
_NET_KEYS = {"hidden_nodes", "activation"}
_CHECK_KEYS = {"divergence_factor", "memory_limit_gib", "min_test_frames", "best_epoch"}
BEST_EPOCH = ("combined", "energy", "force")


def preset(name: str, elements: list[str], cutoff: float) -> dict[str, Any]:
    """The documented preset for ``elements`` and ``cutoff`` (Å)."""
    if name not in PRESETS:
        raise SettingsError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    n_el = max(1, len(elements))
    if name == "quick":
        radial, ang_etas, zetas, nodes, epochs = 4, 2, [1.0, 4.0], [8, 8], 10
    else:
        radial = min(8, max(4, round(cutoff)))
        if n_el == 3:
            radial -= 1
        elif n_el >= 4:
            radial = max(3, radial - 2)
        ang_etas = 3 if n_el <= 2 else 2
        zetas = [1.0, 4.0, 16.0] if n_el <= 3 else [1.0, 4.0]
        nodes, epochs = [15, 15], 30
    return {
        "code": "n2p2",
        "preset": name,
        "units": "angstrom-ev",
        "cutoff": float(cutoff),
        "elements": list(elements),
        "epochs": epochs,
        "test_fraction": 0.1,
        "seed": 0,
        "scaling_bins": 100,
        "symmetry_functions": {
            "rule": "imbalzano2018",
            "radial_centred": radial,
            "radial_shifted": radial,
            "angular_etas": ang_etas,
            "zetas": zetas,
            "lambdas": [-1.0, 1.0],
            "angular_kind": 3,
            "cutoff_type": 6,          # n2p2 polynomial cutoff (poly2), as in its Cu2S example
            "cutoff_alpha": 0.0,
            "prune_threshold": 1.0e-10,  # functions whose max - min over the data is at most this are removed
            "lines": [],
        },
        "network": {"hidden_nodes": nodes, "activation": "t"},
        "checks": {
            "divergence_factor": 10.0,   # fail when an RMSE grows beyond this times its epoch-0 value
            "memory_limit_gib": 0.0,     # 0: the memory available on the machine that runs the job
            "min_test_frames": 1,
            "best_epoch": "combined",    # lowest E_test/E_test(0) + F_test/F_test(0); or "energy", "force"
        },
        "atom_energy": {},
        "n2p2": {},
    }


def load_file(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"{p}: settings file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"{p}: invalid TOML: {err}") from None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and k not in ("n2p2", "atom_energy"):
            out[k] = _merge(out[k], v)
        elif isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **dict(v)}
        else:
            out[k] = copy.deepcopy(v)
    return out


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SettingsError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in {where} "
                            f"(allowed: {', '.join(sorted(allowed))})")


def resolve(data_elements: list[str], overrides: Mapping[str, Any] | None = None,
            file: str | os.PathLike | None = None) -> dict[str, Any]:
    """Resolved settings for data with ``data_elements``: preset <- file <- overrides."""
    layers: list[Mapping[str, Any]] = []
    if file is not None:
        layers.append(load_file(file))
    if overrides:
        layers.append({k: v for k, v in overrides.items() if v is not None})
    for layer in layers:
        _check_keys(layer, _TOP_KEYS, "settings")
        for key, allowed in (("symmetry_functions", _SF_KEYS), ("network", _NET_KEYS), ("checks", _CHECK_KEYS)):
            if isinstance(layer.get(key), Mapping):
                _check_keys(layer[key], allowed, f"[{key}]")
    name = "standard"
    cutoff = 6.0
    for layer in layers:
        name = layer.get("preset", name)
        cutoff = layer.get("cutoff", cutoff)
    try:
        cutoff = float(cutoff)
    except (TypeError, ValueError):
        raise SettingsError(f"cutoff must be a number of Å, got {cutoff!r}") from None
    if not (math.isfinite(cutoff) and cutoff > 0):
        raise SettingsError(f"cutoff must be a positive number of Å, got {cutoff}")
    elements = sorted(data_elements, key=_z)
    for layer in layers:
        if layer.get("elements"):
            elements = list(layer["elements"])
    settings = preset(str(name), elements, cutoff)
    for layer in layers:
        settings = _merge(settings, layer)
    settings["elements"] = sorted(dict.fromkeys(settings["elements"]), key=_z)
    validate(settings, data_elements)
    return settings


def _z(symbol: str) -> int:
    from mlds.elements import atomic_numbers

    return atomic_numbers.get(symbol, 999)


def validate(s: dict[str, Any], data_elements: list[str]) -> None:
    """One-line SettingsError for anything n2p2 would choke on later."""
    if s.get("code", "n2p2") != "n2p2":
        raise SettingsError(f"code {s['code']!r} is not supported yet (only n2p2)")
    if s["units"] not in UNITS:
        raise SettingsError(f"units must be one of {', '.join(UNITS)}, got {s['units']!r}")
    from mlds.elements import atomic_numbers

    bad = [e for e in s["elements"] if e not in atomic_numbers or atomic_numbers[e] == 0]
    if bad:
        raise SettingsError(f"unknown element{'s' if len(bad) > 1 else ''} in settings: {', '.join(map(str, bad))}")
    uncovered = [e for e in data_elements if e not in s["elements"]]
    if uncovered:
        raise SettingsError(f"the data has element{'s' if len(uncovered) > 1 else ''} {', '.join(uncovered)} that the "
                            f"settings do not cover (elements = {s['elements']}); add them or train on other data")
    sf = s["symmetry_functions"]
    if sf.get("rule") != "imbalzano2018" and not sf.get("lines"):
        raise SettingsError(f"symmetry_functions.rule {sf.get('rule')!r} is unknown (use 'imbalzano2018' or give lines)")
    for key in ("radial_centred", "radial_shifted", "angular_etas"):
        if not isinstance(sf[key], int) or sf[key] < 0:
            raise SettingsError(f"symmetry_functions.{key} must be a whole number >= 0, got {sf[key]!r}")
    if sf["angular_kind"] not in (3, 9):
        raise SettingsError("symmetry_functions.angular_kind must be 3 (narrow) or 9 (wide)")
    if sf.get("lines"):
        centres = {ln.split()[1] for ln in sf["lines"] if len(ln.split()) > 2}
        missing = [e for e in s["elements"] if e not in centres]
        if missing:
            raise SettingsError(f"symmetry_functions.lines has no function centred on {', '.join(missing)}")
        unknown = sorted({tok for ln in sf["lines"] for tok in _line_elements(ln)} - set(s["elements"]))
        if unknown:
            raise SettingsError(f"symmetry_functions.lines use element(s) {', '.join(unknown)} not in elements")
    nodes = s["network"]["hidden_nodes"]
    if not nodes or not all(isinstance(n, int) and n > 0 for n in nodes):
        raise SettingsError(f"network.hidden_nodes must be a list of positive whole numbers, got {nodes!r}")
    if not isinstance(s["epochs"], int) or s["epochs"] < 1:
        raise SettingsError(f"epochs must be a whole number >= 1, got {s['epochs']!r}")
    tf = s["test_fraction"]
    if not isinstance(tf, (int, float)) or not 0 <= tf < 1:
        raise SettingsError(f"test_fraction must be in [0, 1), got {tf!r}")
    if s["checks"]["best_epoch"] not in BEST_EPOCH:
        raise SettingsError(f"checks.best_epoch must be one of {', '.join(BEST_EPOCH)}, got {s['checks']['best_epoch']!r}")
    managed = sorted(set(s["n2p2"]) & set(MANAGED_KEYWORDS))
    if managed:
        raise SettingsError(f"[n2p2] may not set {', '.join(managed)}: use the matching mlds setting instead")
    for el in s["atom_energy"]:
        if el not in s["elements"]:
            raise SettingsError(f"atom_energy given for {el}, which is not among the elements {s['elements']}")


def _line_elements(line: str) -> list[str]:
    parts = line.split()
    if len(parts) < 4:
        return []
    return [parts[1], parts[3]] + ([parts[4]] if parts[2] not in ("2", "12", "20") else [])


def dumps(settings: Mapping[str, Any]) -> str:
    """TOML text of resolved settings (what ``settings.toml`` in a run folder holds)."""
    return tomli_w.dumps(_toml_safe(settings))


def _toml_safe(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _toml_safe(v) for k, v in x.items() if v is not None}
    if isinstance(x, (list, tuple)):
        return [_toml_safe(v) for v in x]
    return x
