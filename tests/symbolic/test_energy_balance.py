"""Symbolic energy balances and verdicts."""

import numpy as np
import pytest
import sympy as sp

import odeopt as oo
from odeopt.errors import StructureError
from odeopt.symbolic import EnergyLevel


def test_heavy_ball_balance():
    system = oo.zoo.heavy_ball()
    b = system.energy_balance()
    m, gamma = system.parameter("mass").symbol, system.parameter("friction").symbol
    p = system.block("p")
    assert sp.simplify(b.rate - (-gamma / m**2 * oo.sqnorm(p))) == 0
    assert sp.simplify(b.dissipation - b.rate) == 0
    assert b.supply == 0
    assert b.verdict == "dissipative"
    assert b.nonincreasing is True


def test_gradient_flow_balance():
    system = oo.zoo.gradient_flow()
    b = system.energy_balance()
    g = system.loss.grad
    assert b.rate == -oo.sqnorm(g)
    assert b.verdict == "dissipative"


def test_bbi_balance_is_conservative():
    b = oo.zoo.bbi(delta_v=-0.5).energy_balance()
    assert b.rate == 0
    assert b.verdict == "conservative"


def test_bbi_vector_field_is_the_seed_form():
    """The pH field (J − R)∇H is the seed's with E = H; the stored-energy field is the same
    with E a stored constant, and |π|² on the level set is E²/V − V."""
    system = oo.zoo.bbi()
    theta, p = system.blocks
    F, g = system.loss, system.loss.grad
    dV = system.parameter("delta_v").symbol
    V = F - dV
    H = sp.sqrt(V * (V + oo.sqnorm(p)))
    assert sp.simplify(system.structural_field["theta"] - V / H * p) == 0
    assert sp.simplify(system.structural_field["p"] + g / 2 * (H / V + V / H)) == 0
    E = system.level_set.E
    assert system.parameter("E").stored
    assert sp.simplify(system.vector_field["theta"] - V / E * p) == 0
    assert sp.simplify(system.vector_field["p"] + g / 2 * (E / V + V / E)) == 0
    assert sp.simplify(system.level_set.surface - (E**2 / V - V)) == 0


def test_energy_level_refuses_what_it_cannot_do():
    theta, p = oo.blocks("theta p")
    F = oo.loss(theta)
    gamma = oo.parameters("gamma", positive=True)
    H = F + oo.sqnorm(p) / 2
    with pytest.raises(StructureError, match="conservative"):
        oo.PortHamiltonian(
            H,
            [theta, p],
            J=[[0, 1], [-1, 0]],
            R=[[0, 0], [0, gamma]],
            parameters=[gamma],
            energy_level=EnergyLevel(p, initial=F),
        )
    with pytest.raises(StructureError, match="does not contain"):
        oo.PortHamiltonian(
            F + oo.total(p**4),
            [theta, p],
            J=[[0, 1], [-1, 0]],
            energy_level=EnergyLevel(p, initial=F),
        )
    with pytest.raises(StructureError, match="not an energy block"):
        oo.PortHamiltonian(
            H, [theta, p], J=[[0, 1], [-1, 0]], energy_level=EnergyLevel(oo.Block("q"), initial=F)
        )
    Emine = oo.parameters("E", positive=True)
    with pytest.raises(StructureError, match="already a parameter"):
        oo.PortHamiltonian(
            H,
            [theta, p],
            J=[[0, 1], [-1, 0]],
            parameters={Emine: 1.0},
            energy_level=EnergyLevel(p, initial=F),
        )


def test_feedback_port_supply():
    """Heavy ball without R but friction through a port: u = −k·y, y = velocity p/m."""
    theta, p = oo.blocks("theta p")
    m, k = oo.parameters("m k", positive=True)
    F = oo.loss(theta)
    system = oo.PortHamiltonian(
        F + oo.sqnorm(p) / (2 * m),
        [theta, p],
        J=[[0, 1], [-1, 0]],
        G=[[0], [1]],
        u=lambda y: -k * y,
        parameters={m: 1.0, k: 0.3},
    )
    assert sp.simplify(system.y[0] - p / m) == 0
    assert sp.simplify(system.vector_field["p"] - (-F.grad - k * p / m)) == 0
    b = system.energy_balance()
    assert sp.simplify(b.supply - (-k / m**2 * oo.sqnorm(p))) == 0
    assert sp.simplify(b.rate - b.supply) == 0
    assert b.verdict == "dissipative"
    assert b.nonincreasing is True


def test_external_input_is_passive_not_dissipative():
    """dH/dt = −γ|p|²/m² + (w/m)Σp ≤ yᵀu, but H rises for w·Σp large: "passive", not
    "dissipative" (the verdict answers whether H decreases, closed loop included)."""
    theta, p = oo.blocks("theta p")
    m, gamma = oo.parameters("m gamma", positive=True)
    F = oo.loss(theta)
    w = sp.Symbol("w", real=True)  # external signal
    system = oo.PortHamiltonian(
        F + oo.sqnorm(p) / (2 * m),
        [theta, p],
        J=[[0, 1], [-1, 0]],
        R=[[0, 0], [0, gamma]],
        G=[[0], [1]],
        u=[w],
        parameters={m: 1.0, gamma: 0.1, w: None},
    )
    b = system.energy_balance()
    assert b.verdict == "passive"
    assert "passive with respect to the port" in b.reason
    assert "not proved to decrease" in b.reason
    assert sp.simplify(b.supply - w / m * oo.total(p)) == 0
    assert b.nonincreasing is False  # the supply can have any sign: the search finds H rising
    assert b.counterexample is not None and b.counterexample["value"] > 0


def test_explicit_time_dependence_is_reported():
    theta, p = oo.blocks("theta p")
    F = oo.loss(theta)
    t = oo.t
    system = oo.PortHamiltonian((1 + t) * F + oo.sqnorm(p) / 2, [theta, p], J=[[0, 1], [-1, 0]])
    b = system.energy_balance()
    assert b.time_derivative == F
    assert b.verdict == "not proved"
    assert "explicitly with time" in b.reason
    assert b.counterexample is not None  # F > 0 with p = 0 makes H grow


def test_auxiliary_block_in_balance():
    """A Lyapunov-like H through an auxiliary block with its own decaying ODE."""
    theta, s = oo.blocks("theta s")
    F = oo.loss(theta)
    beta = oo.parameters("beta", positive=True)
    system = oo.PortHamiltonian(
        F + oo.sqnorm(s) / 2,
        [theta],
        J=[[0]],
        R=[[1]],
        aux={s: -beta * s},
        parameters={beta: 1.0},
    )
    b = system.energy_balance()
    assert sp.simplify(b.auxiliary - (-beta * oo.sqnorm(s))) == 0
    assert sp.simplify(b.rate - (-oo.sqnorm(F.grad) - beta * oo.sqnorm(s))) == 0
    assert b.verdict == "dissipative"


def test_explicit_mode_recovers_balance_by_direct_differentiation():
    """The concrete dH/dt (ordinary derivatives) equals the n-dimensional balance made concrete."""
    x, y = sp.symbols("x y", real=True)
    for system in (oo.zoo.heavy_ball(), oo.zoo.gradient_flow(), oo.zoo.bbi(delta_v=-1.0)):
        rosen = (1 - x) ** 2 + 100 * (y - x**2) ** 2
        ex = system.explicit(rosen, [x, y])
        b_ex = ex.energy_balance()
        b = system.energy_balance()
        assert sp.simplify(b_ex.rate - ex.concrete(b.rate)) == 0
        assert b_ex.verdict == b.verdict


def test_explicit_heavy_ball_components():
    x, y = sp.symbols("x y", real=True)
    ex = oo.zoo.heavy_ball().explicit(x**2 + 3 * y**2, [x, y])
    m = ex.system.parameter("mass").symbol
    gamma = ex.system.parameter("friction").symbol
    p1, p2 = ex.components[ex.system.block("p")]
    assert list(ex.vector_field["theta"]) == [p1 / m, p2 / m]
    assert sp.simplify(ex.vector_field["p"][1] - (-6 * y - gamma * p2 / m)) == 0
    assert sp.simplify(ex.hamiltonian - (x**2 + 3 * y**2 + (p1**2 + p2**2) / (2 * m))) == 0


def test_numeric_search_refutes_a_false_claim():
    """Negative 'friction' hidden in an undecidable symbol: the search finds H increasing."""
    theta, p = oo.blocks("theta p")
    F = oo.loss(theta)
    c = sp.Symbol("c", real=True)
    system = oo.PortHamiltonian(
        F + oo.sqnorm(p) / 2,
        [theta, p],
        J=[[0, 1], [-1, 0]],
        R=[[0, 0], [0, c**3]],
        parameters={c: None},
    )
    b = system.energy_balance(samples=500, seed=1)
    assert b.verdict == "not proved"
    ex = b.counterexample
    assert ex is not None and ex["c"] < 0
    # the reported value is the true rate at the reported state
    assert np.isclose(ex["value"], -(ex["c"] ** 3) * np.sum(np.square(ex["p"])), rtol=1e-9)


def test_latex_for_notebooks():
    hb = oo.zoo.heavy_ball()
    assert r"\dot{p}_i &= - \frac{p \gamma}{m} - g" in hb._repr_latex_()
    latex = hb.energy_balance()._repr_latex_()
    assert r"\frac{dH}{dt} &= - \frac{\left\|p\right\|^{2} \gamma}{m^{2}}" in latex
    assert r"\text{dissipative}" in latex
