"""zoo.weight_decay: coupled (F → F + c|θ|²/2) and decoupled (−cθ through a port on θ), a valid
port-Hamiltonian system around any zoo system with a position θ; what it refuses, and why."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy as sp

import odeopt as oo
from odeopt import problems, zoo

REFUSED = {"levenberg_marquardt": "metric", "bbi": "stores its energy"}
REFUSED |= {"ruthless": "stores its energy", "ecdsep": "stores its energy"}


@pytest.mark.parametrize("name", [n for n in zoo.names() if n not in REFUSED])
def test_composes_with_every_zoo_system_and_keeps_the_energy_verdict(name) -> None:
    base = zoo.get(name)
    coupled = zoo.weight_decay(base, 0.1)
    decoupled = zoo.weight_decay(base, 0.1, decoupled=True)
    assert coupled.defaults["weight_decay"] == 0.1 == decoupled.defaults["weight_decay"]
    # coupled: the balance of H(F + c|θ|²/2) has the original verdict
    assert coupled.energy_balance().verdict == base.energy_balance().verdict
    # decoupled: the decay enters through a port; its supply −c⟨∂H/∂θ, θ⟩ has no sign
    b = decoupled.energy_balance()
    assert b.verdict == "passive", b.reason
    assert decoupled.G.shape[1] == base.G.shape[1] + 1


@pytest.mark.parametrize(("name", "why"), sorted(REFUSED.items()))
def test_refuses_what_it_cannot_write_and_says_what_to_do(name, why) -> None:
    with pytest.raises(ValueError, match=f"{why}.*" + re.escape("add c|θ|²/2 to the")):
        zoo.weight_decay(zoo.get(name), 0.1)


def test_coupled_heavy_ball_is_the_heavy_ball_of_the_regularised_loss() -> None:
    s = zoo.weight_decay(zoo.heavy_ball(), 0.1)
    theta, p = s.block("theta"), s.block("p")
    g = s.loss.grad
    lam, m, gamma = (s.parameter(k).symbol for k in ("weight_decay", "mass", "friction"))
    assert sp.simplify(s.vector_field["p"] - (-g - lam * theta - gamma * p / m)) == 0
    assert sp.simplify(s.vector_field["theta"] - p / m) == 0
    assert s.energy_balance().verdict == "dissipative"
    assert "theta" in str(s.hamiltonian) and s.name == "heavy_ball_weight_decay"


def test_coupled_rmsprop_feeds_the_decayed_gradient_to_its_average_too() -> None:
    """torch's coupled weight_decay: d = g + λθ everywhere, the square average included."""
    s = zoo.weight_decay(zoo.rmsprop(), 0.1)
    theta, sq = s.block("theta"), s.block("s")
    g = s.loss.grad
    lam, b = s.parameter("weight_decay").symbol, s.parameter("decay").symbol
    assert sp.simplify(s.vector_field["s"] - b * ((g + lam * theta) ** 2 - sq)) == 0


def test_decoupled_adam_decays_outside_the_preconditioner() -> None:
    s = zoo.weight_decay(zoo.adam(), 0.1, decoupled=True)
    theta, m, sq = s.block("theta"), s.block("m"), s.block("s")
    lam, e = s.parameter("weight_decay").symbol, s.parameter("eps").symbol
    want = -m / (sp.sqrt(sp.Abs(sq)) + e) - lam * theta
    assert sp.simplify(s.vector_field["theta"] - want) == 0


@pytest.mark.parametrize("decoupled", [False, True])
def test_gradient_flow_with_decay_converges_to_the_regularised_minimiser(decoupled) -> None:
    """F = ½|θ|² − bᵀθ plus c|θ|²/2 is minimised at b/(1 + c) (both forms: R = I)."""
    c, b = 0.5, np.array([1.0, -2.0])
    tr = oo.integrate(
        zoo.weight_decay(zoo.gradient_flow(), c, decoupled=decoupled),
        problems.quadratic(2, b=b),
        {"theta": np.zeros((1, 2))},
        steps=400,
        h=0.1,
        scheme="rk4",
    )
    np.testing.assert_allclose(tr["theta"][-1, 0], b / (1 + c), atol=1e-10)


def test_argument_errors_name_the_argument() -> None:
    hb = zoo.heavy_ball()
    with pytest.raises(ValueError, match=r"c must be finite and ≥ 0 .*got c=-0.1"):
        zoo.weight_decay(hb, -0.1)
    with pytest.raises(TypeError, match=r"c must be a real number, got c='1'"):
        zoo.weight_decay(hb, "1")
    with pytest.raises(TypeError, match=r"decoupled must be True or False, got decoupled=1"):
        zoo.weight_decay(hb, 0.1, decoupled=1)
    with pytest.raises(TypeError, match=r"wraps a PortHamiltonian.*got system='heavy_ball'"):
        zoo.weight_decay("heavy_ball", 0.1)
    with pytest.raises(ValueError, match="already has a parameter 'weight_decay'"):
        zoo.weight_decay(zoo.weight_decay(hb, 0.1), 0.1)
    x = oo.blocks("x")
    no_loss = oo.PortHamiltonian(oo.sqnorm(x) / 2, [x], J=[[0]], R=[[1]], name="spring")
    with pytest.raises(ValueError, match="needs a system with a loss.*spring has none"):
        zoo.weight_decay(no_loss, 0.1)
