"""The tour's numeric energy check agrees with the symbolic balance."""

import pytest

import odeopt as oo
from odeopt.tour import numeric_energy_check


def test_numeric_check_agrees_for_zoo():
    for name in oo.zoo.names():
        if oo.zoo.get(name).metric is not None:  # not coordinate-wise: checked in research
            continue
        check = numeric_energy_check(oo.zoo.get(name))
        # central difference with eps = 1e-6: error O(eps²·H''') plus round-off ~1e-10·|H|/eps
        assert check.max_abs_error < 1e-6, (name, check)


def test_numeric_check_detects_a_wrong_balance(monkeypatch):
    """If the symbolic rate were wrong (a sign flipped), the numeric check would see it."""
    system = oo.zoo.heavy_ball()
    real = system.energy_balance

    def wrong(*a, **k):
        b = real(*a, **k)
        b.rate = -b.rate
        return b

    monkeypatch.setattr(system, "energy_balance", wrong)
    check = numeric_energy_check(system)
    assert check.max_abs_error > 1.0


def test_analysis_section_matches_the_closed_forms(tmp_path):
    """The tour's "Analysing rules" table: each tuned rate equals its closed form at κ = 100
    (to the 6 printed digits), the ρ map is written, and GD's PEP value is L/(4N+2) = 1/22."""
    from odeopt.tour import _analysis_section

    figure = tmp_path / "rho_maps.png"
    lines = _analysis_section(figure)
    assert figure.read_bytes()[:4] == b"\x89PNG"
    rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ")}
    for name, rate in (
        ("gradient descent", 99 / 101),
        ("heavy ball (Polyak)", 9 / 11),
        ("Nesterov", 1 - 2 / 301**0.5),
    ):
        cells = [c.strip() for c in rows[name].strip("|").split("|")]
        assert float(cells[4]) == pytest.approx(rate, abs=1e-6), name
        assert cells[5].endswith(f"= {rate:.6f}"), name
    assert "nesterov=True" in rows["Nesterov"]
    assert any("dtheta/dt = -g + η·(-∇²F·g/2)" in line for line in lines)
    pep = next(line for line in lines if line.startswith("PEPit"))
    assert float(pep.split(" is ")[1].split()[0]) == pytest.approx(1 / 22, rel=1e-4)
