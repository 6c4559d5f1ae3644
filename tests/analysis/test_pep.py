"""Worst-case certificates by PEPit: closed forms for gradient descent, heavy ball and Nesterov
against the same methods written by hand in PEPit, and the refusals of rules outside PEP's
class (each with its reason)."""

from __future__ import annotations

import math

import pytest

import odeopt as oo
from odeopt.analysis.pep import NotCertifiableError, WorstCase, worst_case, worst_case_curve
from odeopt.export.rule import UpdateRule


def rule(system: str, scheme: str, **kw: float) -> UpdateRule:
    return oo.discretize(getattr(oo.zoo, system)(**kw), scheme)


def by_hand(L: float, N: int, alpha: float, beta: list[float], mu: float = 0.0) -> float:
    """max f(y_N) − f* for y_{k+1} = y_k − α∇f(y_k) + β_k·(x_{k+1} − x_k) written in PEPit,
    with x_{k+1} = y_k − α∇f(y_k) (x_0 = y_0): β_k = 0 is gradient descent, β_k = (k − 1)/(k + 2)
    Nesterov's accelerated gradient."""
    from PEPit import PEP
    from PEPit.functions import SmoothConvexFunction, SmoothStronglyConvexFunction

    pb = PEP()
    if mu > 0:
        f = pb.declare_function(SmoothStronglyConvexFunction, mu=mu, L=L)
    else:
        f = pb.declare_function(SmoothConvexFunction, L=L)
    xs = f.stationary_point()
    y0 = pb.set_initial_point()
    pb.set_initial_condition((y0 - xs) ** 2 <= 1)
    x, y = y0, y0
    for k in range(N):
        x_new = y - alpha * f.gradient(y)
        y = x_new + beta[k] * (x_new - x)
        x = x_new
    pb.set_performance_metric(f(y) - f(xs))
    return float(pb.solve(wrapper="cvxpy", solver="CLARABEL", verbose=0))


def heavy(L: float, N: int, alpha: float, beta: float) -> float:
    """max f(x_N) − f* for heavy ball x_{k+1} = x_k − α∇f(x_k) + β(x_k − x_{k−1}), x_{−1} = x_0,
    written in PEPit."""
    from PEPit import PEP
    from PEPit.functions import SmoothConvexFunction

    pb = PEP()
    f = pb.declare_function(SmoothConvexFunction, L=L)
    xs = f.stationary_point()
    x0 = pb.set_initial_point()
    pb.set_initial_condition((x0 - xs) ** 2 <= 1)
    prev, x = x0, x0
    for _ in range(N):
        prev, x = x, x - alpha * f.gradient(x) + beta * (x - prev)
    pb.set_performance_metric(f(x) - f(xs))
    return float(pb.solve(wrapper="cvxpy", solver="CLARABEL", verbose=0))


# ---------------------------------------------------------------- gradient descent
@pytest.mark.parametrize("L", [1.0, 3.0])
@pytest.mark.parametrize("N", [1, 5, 10])
def test_gradient_descent_is_drori_teboulle(L: float, N: int) -> None:
    gd = rule("gradient_flow", "euler")
    w = gd.worst_case(L=L, steps=N, h=1 / L)
    assert isinstance(w, WorstCase)
    assert w.value == pytest.approx(L / (4 * N + 2), rel=1e-4)
    assert w.reference == pytest.approx(L / (4 * N + 2), rel=1e-12)
    assert w.solver.upper() == "CLARABEL"
    assert w.status == "optimal"
    assert w.values == {"h": pytest.approx(1 / L)}
    assert (w.steps, w.L, w.mu, w.metric) == (N, L, 0.0, "loss")


def test_gradient_descent_shorter_step_is_drori_teboulle() -> None:
    """Drori–Teboulle for a step h·L = ½ ≤ 1: L/(4N·hL + 2)."""
    w = worst_case(rule("gradient_flow", "euler"), L=2.0, steps=4, h=0.25)
    assert w.value == pytest.approx(2.0 / (4 * 4 * 0.5 + 2), rel=1e-4)
    assert w.reference == pytest.approx(2.0 / 10)


@pytest.mark.parametrize("h", [1.0, 1.5])
def test_gradient_descent_strongly_convex_distance(h: float) -> None:
    """|x_N − x*|² ≤ max(|1 − hμ|, |1 − hL|)^{2N}, attained on a quadratic."""
    L, mu, N = 1.0, 0.1, 5
    w = worst_case(rule("gradient_flow", "euler"), L=L, mu=mu, steps=N, h=h, metric="distance")
    expected = max(abs(1 - h * mu), abs(1 - h * L)) ** (2 * N)
    assert w.value == pytest.approx(expected, rel=1e-4)
    assert w.reference == pytest.approx(expected, rel=1e-12)


def test_gradient_descent_strongly_convex_loss_matches_hand_written() -> None:
    w = worst_case(rule("gradient_flow", "euler"), L=1.0, mu=0.1, steps=4, h=1.0)
    assert w.value == pytest.approx(by_hand(1.0, 4, 1.0, [0.0] * 4, mu=0.1), rel=1e-5)
    assert w.value < 1 / 18  # below the convex bound L/(4N+2): strong convexity helps
    assert w.reference is None


def test_gradient_metric_decreases() -> None:
    gd = rule("gradient_flow", "euler")
    a = worst_case(gd, L=1.0, steps=2, h=1.0, metric="gradient")
    b = worst_case(gd, L=1.0, steps=4, h=1.0, metric="gradient")
    assert 0 < b.value < a.value < 1.0
    assert "|∇F(x_4)|²" in str(b)


# ---------------------------------------------------------------- momentum
def test_heavy_ball_matches_hand_written() -> None:
    """Symplectic Euler on heavy ball: θ_{k+1} − θ_k = (1 − hγ/m)(θ_k − θ_{k−1}) − (h²/m)g_k,
    so h = 1, m = 1, γ = ½ is heavy ball with α = 1, β = ½ (at rest: x_{−1} = x_0)."""
    hb = rule("heavy_ball", "symplectic_euler")
    values = []
    for N in (1, 5, 10):
        w = hb.worst_case(L=1.0, steps=N, h=1.0, friction=0.5)
        assert math.isfinite(w.value)
        assert w.value == pytest.approx(heavy(1.0, N, 1.0, 0.5), rel=1e-5, abs=1e-7)
        assert w.values == {"h": 1.0, "mass": 1.0, "friction": 0.5}
        assert w.reference is None
        values.append(w.value)
    assert values[0] > values[1] > values[2] > 0


def test_nesterov_time_varying_matches_hand_written_nag() -> None:
    """symplectic_euler_nesterov on zoo.nesterov with h = 1/√L, t₀ = h, start t = 0 is NAG:
    x_{k+1} = y_k − ∇f(y_k)/L, y_{k+1} = x_{k+1} + (k − 1)/(k + 2)·(x_{k+1} − x_k), θ = y."""
    L = 4.0
    h = 1 / math.sqrt(L)
    nag = rule("nesterov", "symplectic_euler_nesterov")
    out = []
    for N in (2, 6):
        w = nag.worst_case(L=L, steps=N, h=h, t0=h, t=0.0)
        beta = [(k - 1) / (k + 2) for k in range(N)]
        assert w.value == pytest.approx(by_hand(L, N, 1 / L, beta), rel=1e-5)
        assert w.values["t"] == 0.0 and w.values["t0"] == pytest.approx(h)
        out.append(w.value)
    assert out[1] < out[0]


def test_braking_sides_are_heavy_ball() -> None:
    braking = rule("braking", "symplectic_euler")
    before = worst_case(braking, L=1.0, steps=3, h=1.0, switched=False, gain=0.5)
    hb = worst_case(rule("heavy_ball", "symplectic_euler"), L=1.0, steps=3, h=1.0, friction=0.5)
    assert before.value == pytest.approx(hb.value, rel=1e-6)
    after = worst_case(braking, L=1.0, steps=3, h=1.0, switched=True, gain=0.0, gain_after=0.5)
    assert after.value == pytest.approx(hb.value, rel=1e-6)


def test_curve() -> None:
    ws = worst_case_curve(rule("gradient_flow", "euler"), L=1.0, steps=range(1, 4), h=1.0)
    assert [w.steps for w in ws] == [1, 2, 3]
    assert [w.value for w in ws] == pytest.approx([1 / 6, 1 / 10, 1 / 14], rel=1e-4)
    with pytest.raises(TypeError, match="steps must be a list"):
        worst_case_curve(rule("gradient_flow", "euler"), L=1.0, steps=3, h=1.0)


def test_str() -> None:
    w = worst_case(rule("gradient_flow", "euler"), L=1.0, steps=2, h=1.0)
    s = str(w)
    assert "F(x_2) − F* ≤ 0.1" in s and "1-smooth convex" in s and "h=1" in s


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("system", "scheme", "match"),
    [
        ("bbi", "symplectic_euler", "step depends on the loss value F"),
        ("ecdsep", "symplectic_euler", "step depends on the loss value F"),
        ("adam", "symplectic_euler", "not linear in θ, p and g"),
        ("rmsprop", "symplectic_euler", "not linear in θ, p and g"),
        ("gradient_flow", "discrete_gradient", "implicit"),
        ("braking", "symplectic_euler", "switched=False"),
    ],
)
def test_refuses_rules_outside_pep(system: str, scheme: str, match: str) -> None:
    with pytest.raises(NotCertifiableError, match=match):
        worst_case(rule(system, scheme), L=1.0, steps=2, h=0.1)


def test_refuses_adaptive_rules_and_certifies_their_fixed_step() -> None:
    from odeopt.schemes import EnergyDecrease, EulerRichardson, StepController

    ctrl = EulerRichardson(controller=StepController(norm="l2", rtol=0, atol=1e-3))
    for scheme in (ctrl, EnergyDecrease("euler")):
        with pytest.raises(NotCertifiableError, match="adaptive: the step size is chosen"):
            worst_case(oo.discretize(oo.zoo.gradient_flow(), scheme), L=1.0, steps=2, h=0.1)
    # heun at a fixed h on gradient flow: θ' = θ − h g(θ − h g)·½ − ½h g — a linear method
    fixed = worst_case(rule("gradient_flow", "heun"), L=1.0, steps=2, h=0.5)
    assert 0 < fixed.value < worst_case(rule("gradient_flow", "euler"), L=1.0, steps=2, h=0.1).value


def test_refuses_a_global_of_the_state() -> None:
    """A rule whose step uses |p|² (a sum over coordinates) is not linear."""
    theta, p = oo.blocks("theta p")
    F = oo.loss(theta)
    sys_ = oo.PortHamiltonian(
        F + oo.sqnorm(p) ** 2 / 4, [theta, p], J=[[0, 1], [-1, 0]], R=[[0, 0], [0, 1]]
    )
    with pytest.raises(NotCertifiableError, match="a global of the state"):
        worst_case(oo.discretize(sys_, "symplectic_euler"), L=1.0, h=0.1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"L": 0.0}, ValueError, "L must be > 0, got L=0"),
        ({"L": math.inf}, ValueError, "L must be finite, got L=inf"),
        ({"L": "1"}, TypeError, "L must be a real number"),
        ({"mu": -0.1}, ValueError, "mu must be ≥ 0, got mu=-0.1"),
        ({"mu": 1.0}, ValueError, r"mu must be < L .* got mu=1 with L=1"),
        ({"mu": math.nan}, ValueError, "mu must be finite"),
        ({"steps": 0}, ValueError, "steps must be an integer ≥ 1, got steps=0"),
        ({"steps": 2.5}, ValueError, "steps must be an integer ≥ 1, got steps=2.5"),
        ({"steps": True}, TypeError, "steps must be an integer"),
        ({"h": 0.0}, ValueError, "h must be > 0, got h=0"),
        ({"h": -1.0}, ValueError, "h must be > 0, got h=-1"),
        ({"h": math.nan}, ValueError, "h must be finite, got h=nan"),
        ({"h": None}, TypeError, "needs the step h"),
        ({"t": -1.0}, ValueError, "t must be ≥ 0, got t=-1"),
        ({"metric": "value"}, ValueError, "metric must be one of"),
        ({"friction": -1.0}, ValueError, "friction"),
        ({"friction": math.inf}, ValueError, "friction must be finite"),
        ({"bogus": 1.0}, TypeError, r"no parameter\(s\) \['bogus'\]"),
        ({"switched": True}, ValueError, "has no switch"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    args = {"L": 1.0, "steps": 2, "h": 0.5, **kwargs}
    if args["h"] is None:
        del args["h"]
    with pytest.raises(error, match=match):
        rule("heavy_ball", "symplectic_euler").worst_case(**args)


def test_falls_back_to_scs(monkeypatch: pytest.MonkeyPatch) -> None:
    """When Clarabel fails (here: a solver name cvxpy does not know), SCS solves the PEP and
    the result says so."""
    import cvxpy

    monkeypatch.setattr(cvxpy, "CLARABEL", "NO_SUCH_SOLVER")
    w = worst_case(rule("gradient_flow", "euler"), L=1.0, steps=3, h=1.0)
    assert w.solver.upper() == "SCS"
    assert w.value == pytest.approx(1 / 14, rel=1e-3)
