"""Symmetry-function rule, presets, TOML overrides and input.nn (no n2p2 needed)."""

from __future__ import annotations

import math

import pytest

from mlds.io.n2p2 import BOHR_ANGSTROM
from mlds.train import inputnn, symfuncs
from mlds.train import settings as S


def test_centred_grid_follows_imbalzano_2018():
    # eta_m = (n^(m/n) / r_c)^2, n = N - 1: widths r_c/n^(m/n) from r_c down to r_c/n
    etas = symfuncs.centred_etas(6, 6.0)
    widths = [1 / math.sqrt(e) for e in etas]
    assert widths[0] == pytest.approx(6.0)
    assert widths[-1] == pytest.approx(6.0 / 5)
    ratios = [widths[i] / widths[i + 1] for i in range(5)]
    assert ratios == pytest.approx([5 ** 0.2] * 5)  # geometric spacing


def test_shifted_grid_follows_imbalzano_2018():
    # centres r_c / N^(m/N), m = 1..N; each width is the gap to the next centre outward
    pairs = symfuncs.shifted_grid(4, 8.0)
    centres = [r for r, _ in pairs]
    assert centres == pytest.approx(sorted(8.0 / 4 ** (m / 4) for m in range(1, 5)))
    assert centres[0] == pytest.approx(2.0)                   # r_c / N
    outward = sorted(centres + [8.0])
    for (r, eta), nxt in zip(pairs, outward[1:]):
        assert eta == pytest.approx(1 / (nxt - r) ** 2)


def test_generate_covers_every_pair_and_triple():
    funcs = symfuncs.generate(["O", "H"], 6.0, radial_centred=2, radial_shifted=3, angular_etas=2,
                              zetas=[1, 4], lambdas=[-1, 1])
    per = symfuncs.count_per_element(f.line() for f in funcs)
    # radial: 2 neighbours x (2 + 3); angular: 3 unordered pairs x 2 etas x 2 zetas x 2 lambdas
    assert per == {"O": 2 * 5 + 3 * 8, "H": 2 * 5 + 3 * 8}
    rel = symfuncs.relevant_counts(f.line() for f in funcs)
    assert rel[("O", "H")] == 5 + 2 * 8  # radial with H + angular (O,H) and (H,H)


def test_preset_depends_on_elements_and_cutoff():
    one = S.preset("standard", ["Si"], 6.0)["symmetry_functions"]
    three = S.preset("standard", ["Li", "P", "S"], 6.0)["symmetry_functions"]
    long = S.preset("standard", ["Si"], 8.0)["symmetry_functions"]
    assert (one["radial_centred"], three["radial_centred"], long["radial_centred"]) == (6, 5, 8)
    assert S.preset("quick", ["Si"], 6.0)["network"]["hidden_nodes"] == [8, 8]


def test_toml_overrides_every_layer(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('preset = "quick"\ncutoff = 5.0\n[network]\nhidden_nodes = [4]\n'
                 '[n2p2]\nkalman_eta = 0.005\nmemorize_symfunc_results = false\n')
    s = S.resolve(["Cu", "S"], {"epochs": 7}, f)
    assert (s["preset"], s["cutoff"], s["epochs"], s["network"]["hidden_nodes"]) == ("quick", 5.0, 7, [4])
    assert s["elements"] == ["S", "Cu"]  # by atomic number
    text = inputnn.render(s)
    assert "kalman_eta 0.005" in text and "memorize_symfunc_results" not in text
    assert "global_nodes_short 4" in text and "global_activation_short t l" in text
    assert "normalize_data_set force" in text and "epochs 7" in text


@pytest.mark.parametrize("over, message", [
    ({"elements": ["Cu"]}, "element S that the settings do not cover"),
    ({"nonsense": 1}, "unknown setting nonsense"),
    ({"n2p2": {"epochs": 3}}, "[n2p2] may not set epochs"),
    ({"units": "furlongs"}, "units must be one of"),
    ({"symmetry_functions": {"lines": ["symfunction_short Cu 2 Cu 0.1 0 6"]}}, "no function centred on S"),
    ({"test_fraction": 1.5}, "test_fraction must be in [0, 1)"),
])
def test_bad_settings_one_line(over, message):
    with pytest.raises(S.SettingsError) as err:
        S.resolve(["Cu", "S"], over)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_input_nn_in_bohr_units():
    s = S.resolve(["H", "O"], {"units": "bohr-hartree", "preset": "quick", "atom_energy": {"H": -13.6}})
    lines = inputnn.symmetry_function_lines(s)
    cuts = [float(ln.split()[-1]) for ln in lines if ln.split()[2] == "2"]
    assert cuts == pytest.approx([6.0 / BOHR_ANGSTROM] * len(cuts))
    centred = sorted(float(ln.split()[4]) for ln in lines if ln.split()[2] == "2" and float(ln.split()[5]) == 0.0)
    assert centred[0] == pytest.approx((1 / 6.0 * BOHR_ANGSTROM) ** 2)  # 1/Å² -> 1/Bohr²
    text = inputnn.render(s, lines)
    line = next(ln for ln in text.splitlines() if ln.startswith("atom_energy H "))
    assert float(line.split()[2]) == pytest.approx(-13.6 / 27.211386245988)  # eV -> Hartree (CODATA 2018)
