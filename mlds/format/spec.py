"""Constants of the normative spec (``spec/format-v1.md``), in one place.

Readers and writers, validation and the documentation all take array names,
dtypes, units and the version from here, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlds.errors import SpecVersionError

FORMAT_NAME = "mlds-dataset"
SPEC_VERSION = "1.1.0"
SPEC_MAJOR = 1

FRAMES = "frames"
ATOMS = "atoms"


@dataclass(frozen=True)
class ArraySpec:
    name: str
    group: str                 # FRAMES or ATOMS: what the first axis counts
    dtype: np.dtype
    tail: tuple[int, ...]      # shape after the first axis
    unit: str
    required: bool
    missing: float | int       # value meaning "unknown" in a present array
    key: str = ""              # "group/name", filled in below

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.group}/{self.name}")


_NAN = float("nan")

ARRAYS: tuple[ArraySpec, ...] = (
    ArraySpec("n_atoms", FRAMES, np.dtype("<i8"), (), "1", True, -1),
    ArraySpec("atom_offset", FRAMES, np.dtype("<i8"), (), "1", True, -1),
    ArraySpec("cell", FRAMES, np.dtype("<f8"), (3, 3), "angstrom", True, _NAN),
    ArraySpec("pbc", FRAMES, np.dtype("u1"), (3,), "1", True, 0),
    ArraySpec("energy", FRAMES, np.dtype("<f8"), (), "eV", True, _NAN),
    ArraySpec("stress", FRAMES, np.dtype("<f8"), (3, 3), "eV/angstrom^3", False, _NAN),
    ArraySpec("energy_sigma0", FRAMES, np.dtype("<f8"), (), "eV", False, _NAN),
    ArraySpec("total_charge", FRAMES, np.dtype("<f8"), (), "e", False, _NAN),
    ArraySpec("converged", FRAMES, np.dtype("u1"), (), "1", False, 1),
    ArraySpec("source", FRAMES, np.dtype("<i4"), (), "1", False, -1),
    ArraySpec("calculation", FRAMES, np.dtype("<i4"), (), "1", False, -1),
    ArraySpec("source_step", FRAMES, np.dtype("<i8"), (), "1", False, -1),
    # spec 1.1 (§4.1): per-frame training labels, carried in Frame.info (mlds.format.labels)
    ArraySpec("config_type", FRAMES, np.dtype("u1"), (64,), "1", False, 0),
    ArraySpec("set", FRAMES, np.dtype("u1"), (16,), "1", False, 0),
    ArraySpec("config_weight", FRAMES, np.dtype("<f8"), (), "1", False, _NAN),
    ArraySpec("numbers", ATOMS, np.dtype("u1"), (), "1", True, 0),
    ArraySpec("positions", ATOMS, np.dtype("<f8"), (3,), "angstrom", True, _NAN),
    ArraySpec("forces", ATOMS, np.dtype("<f8"), (3,), "eV/angstrom", False, _NAN),
    ArraySpec("charges", ATOMS, np.dtype("<f8"), (), "e", False, _NAN),
    ArraySpec("magmoms", ATOMS, np.dtype("<f8"), (), "mu_B", False, _NAN),
)
BY_NAME: dict[str, ArraySpec] = {a.name: a for a in ARRAYS}
REQUIRED = tuple(a for a in ARRAYS if a.required)
OPTIONAL = tuple(a for a in ARRAYS if not a.required)

# Frame attribute -> spec array, for the optional per-frame / per-atom values.
OPTIONAL_FRAME_FIELDS = {
    "stress": "stress",
    "energy_sigma0": "energy_sigma0",
    "total_charge": "total_charge",
    "forces": "forces",
    "charges": "charges",
    "magmoms": "magmoms",
}

# CODATA 2018, the constants every conversion in mlds uses (spec §Units).
BOHR_ANGSTROM = 0.529177210903
HARTREE_EV = 27.211386245988
RYDBERG_EV = HARTREE_EV / 2
EV_PER_ANGSTROM3_IN_GPA = 160.2176634  # e * 1e21 (e = 1.602176634e-19 C, exact since SI 2019)
GPA_IN_EV_PER_ANGSTROM3 = 1.0 / EV_PER_ANGSTROM3_IN_GPA


def default_units() -> dict[str, str]:
    """The fixed ``metadata.units`` object of spec §8.2."""
    return {
        "energy": "eV",
        "length": "angstrom",
        "force": "eV/angstrom",
        "stress": "eV/angstrom^3",
        "charge": "e",
        "constants": "CODATA 2018",
    }


def check_version(version: object, path: str | None) -> None:
    """Accept any 1.x; refuse a newer major with advice, and garbage with a clear message."""
    if not isinstance(version, str):
        raise SpecVersionError(path, f"mlds_spec_version is missing or not a string ({version!r})")
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise SpecVersionError(path, f"mlds_spec_version {version!r} is not a semantic version") from None
    if major > SPEC_MAJOR:
        raise SpecVersionError(
            path, f"written by spec {version}; this mlds reads {SPEC_MAJOR}.x — upgrade mlds"
        )
    if major < 1:
        raise SpecVersionError(path, f"spec version {version} predates format v1 and is not supported")
