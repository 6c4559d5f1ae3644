"""Bad inputs at definition time, and sound energy verdicts.

Each bad input asserts the exception type and a fragment of its message (the argument or
parameter as the user wrote it, and its value). The verdict tests check the closed-loop
question "does H decrease along the system as defined?": P = −I, u = +k·y and Adam are not
"dissipative"; the zoo's other verdicts are unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import odeopt as oo
from odeopt import StructureError, problems
from odeopt.symbolic import LevenbergMarquardt, Metric

INF, NAN = float("inf"), float("nan")


def _hb(**kw):
    """Heavy ball H = F + |p|²/(2m), R = diag(0, γ), with keyword overrides."""
    theta, p = oo.blocks("theta p")
    m, gamma = oo.parameters("m gamma", positive=True)
    F = oo.loss(theta)
    args = dict(
        hamiltonian=F + oo.sqnorm(p) / (2 * m),
        blocks=[theta, p],
        J=[[0, 1], [-1, 0]],
        R=[[0, 0], [0, gamma]],
        parameters={m: 1.0, gamma: 0.5},
    )
    args.update(kw)
    return oo.PortHamiltonian(**args)


def _with_block(name: str, aux: bool = False):
    theta, b = oo.blocks(f"theta {name}")
    F = oo.loss(theta)
    if aux:
        return oo.PortHamiltonian(F, [theta], J=[[0]], R=[[1]], aux={b: -b})
    return oo.PortHamiltonian(F + oo.sqnorm(b) / 2, [theta, b], J=[[0, 1], [-1, 0]])


# ----------------------------------------------------------------------------- bad inputs
def _negative_mass_symbol():
    theta, p = oo.blocks("theta p")
    mr = oo.parameters("mr", negative=True)
    F = oo.loss(theta)
    return oo.PortHamiltonian(
        F + oo.sqnorm(p) / (2 * mr), [theta, p], J=[[0, 1], [-1, 0]], parameters=[mr]
    )


def _falling_h():
    theta, p = oo.blocks("theta p")
    F = oo.loss(theta)
    return oo.PortHamiltonian(F - oo.sqnorm(p) / 2, [theta, p], J=[[0, 1], [-1, 0]])


BAD = {
    "string key naming no symbol": (
        lambda: _hb(parameters={"mass": 1.0, "gamma": 0.5}),
        StructureError,
        r"parameters= key 'mass' names no symbol of the system \(its symbols: gamma, m\)",
    ),
    "int key": (
        lambda: _hb(parameters={1: 2.0}),
        StructureError,
        r"parameters= key must be a plain sympy symbol .* got 1 \(int\)",
    ),
    "same parameter twice": (
        lambda: _hb(parameters={sp.Symbol("m", positive=True): 1.0, "m": 2.0, "gamma": 0.5}),
        StructureError,
        r"parameter 'm' is given twice",
    ),
    "parameters a string": (
        lambda: _hb(parameters="m gamma"),
        StructureError,
        r"parameters must be a mapping .* got 'm gamma'",
    ),
    "alias not a string": (
        lambda: _hb(aliases={1: "m"}),
        StructureError,
        r"aliases are keyword names \(strings\), got 1 \(int\)",
    ),
    "alias naming no symbol": (
        lambda: _hb(aliases={"mass": "nope"}),
        StructureError,
        r"alias 'mass': 'nope' names no symbol",
    ),
    "reserved parameter name h": (
        lambda: _hb(
            R=[[0, 0], [0, sp.Symbol("h", positive=True)]],
            parameters={"m": 1.0, sp.Symbol("h", positive=True): 0.5},
        ),
        StructureError,
        r"parameter name 'h' is reserved",
    ),
    "parameter named like a block": (
        lambda: _hb(
            R=[[0, 0], [0, sp.Symbol("p", positive=True)]],
            parameters={"m": 1.0, sp.Symbol("p", positive=True): 0.5},
        ),
        StructureError,
        r"parameter 'p' has the name of a block",
    ),
    "default a list": (
        lambda: _hb(parameters={"m": [1.0, 2.0], "gamma": 0.5}),
        StructureError,
        r"parameter 'm' must be a real number \(a scalar default\), got \[1.0, 2.0\]",
    ),
    "default complex": (
        lambda: _hb(parameters={"m": 1j, "gamma": 0.5}),
        StructureError,
        r"parameter 'm' must be a real number, got 1j",
    ),
    "default a string": (
        lambda: oo.zoo.heavy_ball(mass="1"),
        StructureError,
        r"parameter 'mass' must be a real number \(a scalar default\), got '1'",
    ),
    "friction inf": (
        lambda: oo.zoo.heavy_ball(friction=INF),
        StructureError,
        r"parameter 'friction' must be finite, got friction = inf",
    ),
    "mass nan": (
        lambda: oo.zoo.heavy_ball(mass=NAN),
        StructureError,
        r"parameter 'mass' must be finite, got mass = nan",
    ),
    "R entry inf": (
        lambda: _hb(R=[[0, 0], [0, INF]]),
        StructureError,
        r"R\[1,1\] = oo is not finite",
    ),
    "R zoo after substitution": (
        lambda: _hb(
            R=[[0, 0], [0, 1 / sp.Symbol("c", real=True)]],
            parameters={"m": 1.0, sp.Symbol("c", real=True): 0.0},
        ),
        StructureError,
        r"R\[1,1\] = zoo is not finite with m = 1.0, c = 0.0",
    ),
    "u raises": (
        lambda: _hb(G=[[0], [1]], u=lambda y: [y[3]]),
        StructureError,
        r"u\(y\) raised IndexError: .*a sympy column of 1 entry: \[p/m\]",
    ),
    "aux not an expression": (
        lambda: _hb(aux={oo.Block("s"): "x +"}),
        StructureError,
        r"aux\[s\] must be a sympy expression, got 'x \+'",
    ),
    "aux not a mapping": (
        lambda: _hb(aux=[oo.Block("s")]),
        StructureError,
        r"aux must be a mapping \{block: rate\}",
    ),
    "switches not a list": (
        lambda: _hb(switches=3),
        StructureError,
        r"switches must be a list of odeopt.symbolic.Switch objects, got 3",
    ),
    "energy_level not an EnergyLevel": (
        lambda: _hb(R=None, energy_level="p"),
        StructureError,
        r"energy_level must be an odeopt.symbolic.EnergyLevel, got 'p'",
    ),
    "name not a string": (
        lambda: _hb(name=3),
        StructureError,
        r"name must be a string, got 3",
    ),
    "blocks() of a number": (lambda: oo.blocks(1), TypeError, r"blocks\(\) takes a string"),
    "blocks() of nothing": (lambda: oo.blocks(" "), ValueError, r"at least one name"),
    "parameters() bad name": (
        lambda: oo.parameters("a-b"),
        ValueError,
        r"a parameter name must be a Python identifier, got 'a-b'",
    ),
    "vector_field[3]": (
        lambda: oo.zoo.heavy_ball().vector_field[3],
        KeyError,
        r"no block 3 \(int\); blocks are \['theta', 'p'\]",
    ),
    "samples negative": (
        lambda: oo.zoo.heavy_ball().energy_balance(samples=-1),
        ValueError,
        r"samples must be an integer ≥ 0, got samples=-1",
    ),
    "LM mu inf": (
        lambda: LevenbergMarquardt(mu=INF),
        ValueError,
        r"mu must be finite, got mu=inf",
    ),
    "LM mu zero": (
        lambda: oo.zoo.levenberg_marquardt(mu=0.0),
        ValueError,
        r"mu must be positive .*got mu=0.0",
    ),
    "bbi eta zero": (lambda: oo.zoo.bbi(eta=0.0), ValueError, r"eta must be positive, got eta=0.0"),
    "bbi eta a string": (lambda: oo.zoo.bbi(eta="a"), TypeError, r"eta must be a real number"),
    "ruthless rescale not bool": (
        lambda: oo.zoo.ruthless(rescale="yes"),
        TypeError,
        r"rescale must be True or False, got rescale='yes'",
    ),
    "explicit mode of a metric system": (
        lambda: oo.zoo.levenberg_marquardt().explicit(sp.Symbol("x") ** 2, [sp.Symbol("x")]),
        StructureError,
        r"has a metric that is not coordinate-wise .*explicit mode",
    ),
    "negative mass by assumption": (
        _negative_mass_symbol,
        StructureError,
        r"unbounded below: the coefficient of \|p\|\^2 is 1/\(2\*mr\) < 0 for every value",
    ),
    "negative kinetic coefficient": (
        _falling_h,
        StructureError,
        r"unbounded below: the coefficient of \|p\|\^2 is -1/2 < 0",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_definition_inputs_raise_clear_errors(case) -> None:
    make, exc, fragment = BAD[case]
    with pytest.raises(exc, match=fragment):
        make()


@pytest.mark.parametrize(
    "name, why",
    [
        ("lr", "the learning rate of an exported optimizer"),
        ("F", "the loss"),
        ("g", "the gradient of the loss"),
        ("h", "the step size of the schemes"),
        ("t", "the time"),
    ],
)
def test_reserved_block_names(name, why) -> None:
    with pytest.raises(StructureError, match=rf"block '{name}' \(blocks\): .* reserved for {why}"):
        _with_block(name)
    with pytest.raises(StructureError, match=rf"block '{name}' \(aux\): .* reserved for {why}"):
        _with_block(name, aux=True)


def test_block_named_like_a_renamed_loss() -> None:
    theta, L = oo.blocks("theta L")
    F = oo.loss(theta, name="L")
    with pytest.raises(StructureError, match=r"block 'L': the name 'L' is the loss's"):
        oo.PortHamiltonian(F + oo.sqnorm(L) / 2, [theta, L], J=[[0, 1], [-1, 0]])


def test_string_keys_name_the_symbols() -> None:
    """parameters={"m": 1.0} is the symbol m of H: the same system as with the symbol."""
    by_name = _hb(parameters={"m": 2.0, "gamma": 0.5}, aliases={"mass": "m"})
    by_symbol = oo.zoo.heavy_ball(mass=2.0)
    assert by_name.defaults == {"mass": 2.0, "gamma": 0.5}
    assert by_name.parameter("mass").symbol.is_positive  # the symbol of H, with its assumptions
    assert str(by_name.vector_field["p"]) == str(by_symbol.vector_field["p"])
    listed = _hb(parameters=["m", "gamma"])
    assert [p.default for p in listed.parameters] == [None, None]
    # a name of a symbol that only the switch uses is found too (braking's goal)
    theta, p = oo.blocks("theta p")
    k, k1, goal = sp.symbols("k k_1 F_goal", nonnegative=True)
    F = oo.loss(theta)
    sw = oo.PortHamiltonian(
        F + oo.sqnorm(p) / 2,
        [theta, p],
        J=[[0, 1], [-1, 0]],
        G=[[0], [1]],
        u=lambda y: [-k * y[0]],
        parameters={"k": 0.1, "k_1": 2.0, "F_goal": 0.0},
        switches=[oo.symbolic.Switch(goal, {k: k1})],
    )
    assert sw.parameter("F_goal").symbol is goal


# ----------------------------------------------------------------------------- negative mass
def _free_mass():
    """H = F + |p|²/(2·mr) with mr a real symbol (its sign not assumed)."""
    theta, p = oo.blocks("theta p")
    mr = oo.parameters("mr", real=True)
    gamma = oo.parameters("gamma", positive=True)
    F = oo.loss(theta)
    return theta, p, mr, gamma, F + oo.sqnorm(p) / (2 * mr)


def test_negative_mass_default_is_refused_naming_the_parameter() -> None:
    theta, p, mr, gamma, H = _free_mass()
    with pytest.raises(
        StructureError,
        match=r"H is unbounded below with mr = -1.0: the coefficient of \|p\|\^2 in H is "
        r"1/\(2\*mr\) = -0.5 < 0",
    ):
        oo.PortHamiltonian(
            H, [theta, p], J=[[0, 1], [-1, 0]], R=[[0, 0], [0, gamma]],
            parameters={mr: -1.0, gamma: 0.5},
        )  # fmt: skip


def test_undecided_mass_is_flagged_in_the_balance_and_refused_when_given() -> None:
    theta, p, mr, gamma, H = _free_mass()
    system = oo.PortHamiltonian(
        H, [theta, p], J=[[0, 1], [-1, 0]], R=[[0, 0], [0, gamma]],
        parameters={mr: None, gamma: 0.5},
    )  # fmt: skip
    b = system.energy_balance()
    assert "H is bounded below only if 1/(2*mr) ≥ 0" in b.reason
    assert b.extra["bounded_below"] == [1 / (2 * mr)]
    assert system.with_parameters(mr=2.0)["mr"] == 2.0
    with pytest.raises(ValueError, match=r"H is unbounded below with mr = -1.0"):
        system.with_parameters(mr=-1.0)
    with pytest.raises(ValueError, match=r"H is unbounded below with mr = \[ 1. -1.\]"):
        system.with_parameters(mr=np.array([1.0, -1.0]))  # per-trajectory values
    x0 = np.ones((2, 2))
    with pytest.raises(ValueError, match=r"unbounded below with mr = -1.0"):
        oo.integrate(
            system, problems.quadratic(2), {"theta": x0}, steps=3, h=0.1, params={"mr": -1.0}
        )


def test_positive_mass_symbol_needs_no_condition() -> None:
    b = oo.zoo.heavy_ball().energy_balance()
    assert "bounded_below" not in b.extra and "bounded below" not in b.reason


# ----------------------------------------------------------------------------- PSD checks
def test_psd_tolerance_on_float_entries() -> None:
    """R = vvᵀ in decimals (det = −4.3e-19 in floats) is PSD to the stated tolerance."""
    R = [[0.01, 0.05], [0.05, 0.25]]
    assert sp.Matrix(R).det() < -1e-19  # what the exact minor of the floats said before
    system = _hb(R=R)
    assert system.r_psd is True
    assert "1e-12·k·max|λ|" in system.r_psd_reason
    assert system.energy_balance().verdict == "dissipative"
    # the same matrix in exact decimals is decided exactly
    exact = _hb(
        R=[[sp.Rational(1, 100), sp.Rational(1, 20)], [sp.Rational(1, 20), sp.Rational(1, 4)]]
    )
    assert exact.r_psd is True and exact.r_psd_reason == "all principal minors of R are nonnegative"
    # floats mixed with symbols: read as decimals, then exact
    gamma = sp.Symbol("gamma", positive=True)
    mixed = _hb(R=[[0.01 * gamma, 0.05 * gamma], [0.05 * gamma, 0.25 * gamma]])
    assert mixed.r_psd is True and "read as decimals" in mixed.r_psd_reason


def test_psd_tolerance_still_rejects_indefinite_floats() -> None:
    # det = 0.002 − 0.0025 < 0 far beyond round-off
    with pytest.raises(
        StructureError, match=r"R has the eigenvalue -0.00235\d+ < 0 \(float entries"
    ):
        _hb(R=[[0.01, 0.05], [0.05, 0.2]])
    with pytest.raises(StructureError, match=r"R\[1,1\] = -0.001 < 0"):
        _hb(R=[[1.0, 0.0], [0.0, -1e-3]])
    # within the tolerance 1e-12·k·max|λ| = 2e-12: counted as 0
    assert _hb(R=[[1.0, 0.0], [0.0, -1e-13]]).r_psd is True


def test_skew_and_symmetry_tolerance_on_floats() -> None:
    a = 0.1 + 0.2  # 0.30000000000000004
    assert _hb(J=[[0, a], [-0.3, 0]]).J[0, 1] == a
    assert _hb(R=[[0, 0], [0, 1.0]], G=None) is not None
    with pytest.raises(StructureError, match=r"J is not skew-symmetric: J\[0,1\] = 0.3 but"):
        _hb(J=[[0, 0.3], [-0.31, 0]])
    with pytest.raises(StructureError, match=r"R is not symmetric: R\[0,1\] = 0.1"):
        _hb(R=[[1.0, 0.1], [0.1 + 1e-6, 1.0]])


# ----------------------------------------------------------------------------- verdicts
# The zoo's verdicts (all unchanged but Adam's) are tested with `show` in
# tests/zoo/test_every_system.py.


def test_adam_is_passive_not_dissipative() -> None:
    b = oo.zoo.adam().energy_balance()
    assert b.verdict == "passive"
    assert "lossless with respect to the port" in b.reason
    assert "H = F itself is not proved to decrease" in b.reason
    ex = b.counterexample  # a state where F rises: m against g
    assert ex is not None and ex["value"] > 0
    assert np.dot(ex["g"], ex["m"]) < 0


def _port_heavy_ball(sign: int):
    theta, p = oo.blocks("theta p")
    m, k = oo.parameters("m k", positive=True)
    F = oo.loss(theta)
    return oo.PortHamiltonian(
        F + oo.sqnorm(p) / (2 * m),
        [theta, p],
        J=[[0, 1], [-1, 0]],
        G=[[0], [1]],
        u=lambda y: sign * k * y,
        parameters={m: 1.0, k: 0.3},
    )


def test_energy_injection_is_not_dissipative() -> None:
    """u = +k·y: dH/dt = yᵀu = k|p|²/m² ≥ 0; the closed loop decides."""
    b = _port_heavy_ball(+1).energy_balance()
    assert b.verdict == "passive"
    assert "the input injects energy" in b.reason
    assert b.nonincreasing is False and b.counterexample["value"] > 0
    x, y = sp.symbols("x y", real=True)
    assert _port_heavy_ball(+1).explicit(x**2 + y**2, [x, y]).energy_balance().verdict == "passive"
    # u = −k·y: the closed loop dissipates
    b = _port_heavy_ball(-1).energy_balance()
    assert b.verdict == "dissipative" and b.nonincreasing is True


class _Ascent(Metric):
    """P = −I: gradient ascent θ' = +∇F."""

    description = "P = −I"

    def apply(self, problem, theta, g):
        return -g


class _DeclaredAscent(_Ascent):
    psd = "declared"


class _Doubling(Metric):
    description = "P = 2I"
    psd = "declared"

    def apply(self, problem, theta, g):
        return 2 * g


class _NeedsProblem(Metric):
    description = "P from the problem"
    psd = "declared"

    def apply(self, problem, theta, g):
        return g * problem.scale


def _gradient_system(metric):
    theta = oo.blocks("theta")
    return oo.PortHamiltonian(oo.loss(theta), [theta], J=[[0]], R=[[1]], metric=metric)


def test_metric_minus_identity_is_not_dissipative() -> None:
    for metric in (_Ascent(), _DeclaredAscent()):
        b = _gradient_system(metric).energy_balance()
        assert b.verdict == "not proved"
        assert b.nonincreasing is False
        assert b.counterexample["gPg"] < 0
        assert "a numeric check found gᵀP(θ)g = -" in b.reason
    assert "although the metric states P ⪰ 0 (declared)" in b.reason


def test_metric_declarations() -> None:
    b = _gradient_system(_Doubling()).energy_balance()
    assert b.verdict == "dissipative" and b.nonincreasing is True
    assert "declared by the metric and a numeric check found gᵀPg ≥ 0" in b.reason
    b = _gradient_system(_NeedsProblem()).energy_balance()
    assert b.verdict == "not proved" and b.nonincreasing is None
    assert "declared but could not be checked" in b.reason
    b = oo.zoo.levenberg_marquardt().energy_balance()
    assert b.verdict == "dissipative" and "by construction" in b.reason


def test_learned_cell_with_an_input_is_passive() -> None:
    """The learned cell's port u = G(q) is an input that depends on the state, not feedback
    of y = M⁻¹p: dH/dt ≤ yᵀu (D ⪰ 0) but the supply M⁻¹p·G(q) has no sign."""
    import torch

    from odeopt.learned.hnn import HamiltonianCell

    torch.manual_seed(4)
    system = HamiltonianCell(1).double().to_system()
    assert list(system.u) != [0] and not system.u[0].has(system.y[0])  # an input, not y-feedback
    b = system.energy_balance(samples=200)
    assert b.verdict == "passive"
    assert "R is positive semidefinite" in b.reason
    assert "not proved to decrease" in b.reason


# ------------------------------------------------- review regressions (metric systems)
def test_a_metric_system_with_an_undecided_r_is_not_dissipative() -> None:
    """θ' = −r·P∇F: with R = [[t − 1]] dH/dt = (1 − t)⟨g, Pg⟩ rises for t < 1 even with P ⪰ 0
    proved (F rose from 1.00 to 2.12 along an integration called 'dissipative' before)."""
    from odeopt.symbolic import LevenbergMarquardt

    theta = oo.blocks("theta")
    system = oo.PortHamiltonian(
        oo.loss(theta), [theta], J=[[0]], R=[[oo.t - 1]], metric=LevenbergMarquardt()
    )
    b = system.energy_balance()
    assert b.verdict == "not proved" and b.nonincreasing is not True
    assert "not proved ≥ 0" in b.reason


def test_a_declared_metric_that_cannot_be_checked_is_not_dissipative() -> None:
    """A declared P ⪰ 0 whose numeric check had no valid sample (P·g is NaN) proves nothing."""
    import numpy as np

    from odeopt.symbolic import Metric

    class Undefined(Metric):
        psd = "declared"

        def apply(self, problem, theta, g):
            return g * np.nan

    theta = oo.blocks("theta")
    b = oo.PortHamiltonian(
        oo.loss(theta), [theta], J=[[0]], R=[[1]], metric=Undefined()
    ).energy_balance()
    assert b.verdict == "not proved" and b.nonincreasing is None
    assert "could not be checked" in b.reason


def test_a_j_skew_only_within_tolerance_does_not_prove_dissipation() -> None:
    """J = [[0, 1], [−1 + 1e-13, 0]] is accepted (float tolerance), but then ∇HᵀJ∇H =
    1e-13·⟨g, p⟩ has no sign: with R = 0 the balance must not say "dissipative"."""
    theta, p = oo.blocks("theta p")
    system = oo.PortHamiltonian(
        oo.loss(theta) + oo.sqnorm(p) / 2,
        [theta, p],
        J=[[0, 1], [-1.0 + 1e-13, 0]],
        R=[[0, 0], [0, 0.0]],
    )
    b = system.energy_balance()
    assert b.verdict == "not proved" and b.nonincreasing is not True
    assert "only within the float tolerance" in b.reason
