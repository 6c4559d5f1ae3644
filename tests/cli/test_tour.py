"""``odeopt tour``: its numeric energy check agrees with the symbolic balance, the command runs
every section (on the tiny inputs of ``run_tour(quick=True)``, built once for this module) and
writes the report, and the command on its defaults runs the full tour."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

import odeopt as oo
import odeopt.tour
from odeopt.cli import main
from odeopt.tour import numeric_energy_check
from odeopt.tour_sections import FULL, QUICK, TourSizes

SECTIONS = (
    "## Phase portraits",
    "## Schemes: measured orders of convergence",
    "## Discrete energy along trajectories",
    "## Which minimum? Himmelblau",
    "## Update rules, recognised and exported",
    "## Analysing rules",
    "## Critical points, computed: polyThree",
    "## Research systems",
    "Learned pH optimizer",
)


@pytest.fixture(scope="module")
def quick_tour(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """``odeopt tour --quick --out DIR`` through the command line: the folder, the report's
    text and what the command printed."""
    folder = tmp_path_factory.mktemp("tour") / "t"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["tour", "--quick", "--out", str(folder)]) == 0
    return folder, (folder / "report.md").read_text(encoding="utf-8"), printed.getvalue()


def test_numeric_check_agrees_for_zoo(quick_tour):
    """The tour's zoo section (the same on quick and full sizes) runs numeric_energy_check on
    every coordinate-wise zoo system; its report gives each one's max |error|."""
    _, report, _ = quick_tour
    for name in oo.zoo.names():
        section = report.split(f"\n## {name}\n")[1].split("\n## ")[0]
        checks = [line for line in section.splitlines() if line.startswith("Numeric check")]
        if oo.zoo.get(name).metric is not None:  # not coordinate-wise: checked in research
            assert not checks, name
            continue
        (line,) = checks
        error = float(line.split("symbolic dH/dt| = ")[1].split(",")[0])
        # central difference with eps = 1e-6: error O(eps²·H''') plus round-off ~1e-10·|H|/eps
        assert error < 1e-6, (name, line)


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


def test_tour_writes_report_with_every_section(quick_tour):
    folder, report, printed = quick_tour
    png = folder / "phase_portraits.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert (folder / "himmelblau_paths.png").read_bytes()[:4] == b"\x89PNG"
    for name in oo.zoo.names():
        assert f"## {name}" in report
    assert "verdict: conservative" in report
    for heading in SECTIONS:
        assert heading in report, heading
    assert report.startswith("# odeopt tour\n\n_Quick run")
    assert "report written to" in printed
    # the exported heavy ball is torch's SGD, step for step, whatever the sizes
    delta = next(line for line in report.splitlines() if line.startswith("max |Δθ|"))
    assert float(delta.split(": ")[1]) < 1e-12
    # every order of the oscillator's schemes is measured as in the full tour
    orders = dict(
        line.strip("| ").split(" | ")
        for line in report.split("## Schemes")[1].split("##")[0].splitlines()
        if line.startswith("| ") and not line.startswith("| scheme")
    )
    expected = {"euler": 1, "symplectic_euler": 1, "leapfrog": 2, "rk4": 4}
    for scheme, order in expected.items():
        assert float(orders[scheme]) == pytest.approx(order, abs=0.1), scheme


def test_analysis_section_matches_the_closed_forms(quick_tour):
    """The tour's "Analysing rules" table (the same on quick and full sizes): each tuned rate
    equals its closed form at κ = 100 (to the 6 printed digits), the ρ map is written, and
    GD's PEP value is L/(4N+2) = 1/22."""
    folder, report, _ = quick_tour
    assert (folder / "rho_maps.png").read_bytes()[:4] == b"\x89PNG"
    lines = report.split("## Analysing rules")[1].split("\n## ")[0].splitlines()
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


class _Stop(Exception):
    """Raised by a stand-in section to end a tour once its sizes are known."""


def test_the_command_on_its_defaults_runs_the_full_tour(monkeypatch, tmp_path):
    """``odeopt tour`` (no option) reaches the sections with the full sizes, not the quick
    ones; the zoo section is skipped and the first sized section stops the run."""
    seen: list[TourSizes] = []

    def first_section(systems, path, sizes):
        seen.append(sizes)
        raise _Stop

    monkeypatch.setattr(odeopt.tour, "_zoo_section", lambda lines: [])
    monkeypatch.setattr(odeopt.tour, "phase_portraits", first_section)
    with pytest.raises(_Stop):
        main(["tour", "--out", str(tmp_path / "t")])
    assert seen == [FULL] and FULL == TourSizes()
    assert FULL.basin_grid == 20 and FULL.research_starts == 1000 and FULL.digits_steps == 200
    assert all(getattr(QUICK, f) < getattr(FULL, f) for f in ("basin_grid", "digits_steps"))


def test_research_section_tables_come_from_studies(quick_tour):
    """The research section's tables are Study tables: one column per minimum of the
    problem's catalogue, then other / not converged / diverged, each row summing to 1; GD
    (h = 0.1) diverges from every start on polyThree, LC_EGD from none."""
    _, report, _ = quick_tour
    section = report.split("## Research systems")[1].split("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| run |"):
            header = cells[1:]
            assert header[-3:] == ["other", "not converged", "diverged"]
        elif line.startswith("| ") and cells[0] in ("GD, h = 0.1", "LC_EGD", "Euler–Richardson"):
            rows[cells[0]] = dict(zip(header, map(float, cells[1:]), strict=True))
    assert set(rows) == {"GD, h = 0.1", "LC_EGD", "Euler–Richardson"}
    for name, shares in rows.items():
        assert sum(shares.values()) == pytest.approx(1.0, abs=2e-3), name
    assert rows["GD, h = 0.1"]["diverged"] == 1.0
    assert rows["LC_EGD"]["diverged"] == 0.0
    assert "(0, -1)" in rows["LC_EGD"] and "(2, -1)" in rows["Euler–Richardson"]
