"""Schemes: one implementation on sympy and numpy, convergence orders, energy behaviour."""

from __future__ import annotations

import numpy as np
import pytest

import odeopt
from odeopt import problems, schemes, zoo
from odeopt.integrate import NumericField

SYSTEMS = {
    "heavy_ball": lambda: zoo.heavy_ball(mass=1.3, friction=0.7),
    "bbi": lambda: zoo.bbi(delta_v=-1.0),
    "gradient_flow": zoo.gradient_flow,
}


@pytest.mark.parametrize("name", schemes.names())
@pytest.mark.parametrize("system", list(SYSTEMS))
def test_symbolic_program_equals_numeric_step(name: str, system: str) -> None:
    """Running a scheme on sympy symbols and evaluating the program gives the numpy step."""
    sys_ = SYSTEMS[system]()
    problem = problems.rosenbrock()
    rng = np.random.default_rng(1)
    x = {b.name: rng.uniform(-0.5, 0.5, (6, 2)) for b in sys_.all_blocks}
    h = 0.003
    params = dict(sys_.defaults)
    if sys_.level_set is not None:  # a stored energy off the state's own (the projection acts)
        F, _ = problem.value_and_grad(x["theta"])
        params["E"] = 1.2 * sys_.compile().energy(x, F, **{k: v for k, v in params.items()})
    field = NumericField(sys_, problem, params)
    step = schemes.for_system(schemes.get(name), sys_).step(field, x, 0.2, h)
    program = schemes.run_symbolic(sys_, name)
    unknowns = step.x if program.unknowns else None
    out, err = program.evaluate(problem, x, 0.2, h, unknowns=unknowns, **params)
    for b in out:
        np.testing.assert_allclose(out[b], step.x[b], rtol=0, atol=1e-12)
    assert (err is None) == (step.error is None)
    if err is not None:
        for b in err:
            np.testing.assert_allclose(err[b], step.error[b], rtol=0, atol=1e-12)


def test_program_of_symplectic_euler_reads_like_momentum_sgd() -> None:
    program = schemes.run_symbolic(zoo.heavy_ball(), "symplectic_euler")
    assert len(program.evaluations) == 1  # one gradient per step
    text = str(program)
    assert "p_1 := " in text and "theta ←" in text


def _oscillator_error(scheme: str, h: float, T: float = 1.0) -> float:
    """Frictionless heavy ball on F = ½|θ|² (m = 1): θ(t) = θ₀ cos t + p₀ sin t."""
    system = zoo.heavy_ball(mass=1.0, friction=0.0)
    th0, p0 = np.array([[1.0, -0.5]]), np.array([[0.3, 0.8]])
    steps = round(T / h)
    if schemes.get(scheme).adaptive:  # fixed steps of the proposing scheme
        field = NumericField(system, problems.quadratic(2), system.defaults)
        x = {"theta": th0, "p": p0}
        for k in range(steps):
            x = schemes.get(scheme).step(field, x, k * h, h).x
        th = x["theta"]
    else:
        tr = odeopt.integrate(
            system,
            problems.quadratic(2),
            {"theta": th0, "p": p0},
            t_span=(0.0, T),
            steps=steps,
            scheme=scheme,
            save="final",
        )
        th = tr["theta"][-1]
    exact = th0 * np.cos(T) + p0 * np.sin(T)
    return float(np.abs(th - exact).max())


@pytest.mark.parametrize("scheme", schemes.names())
def test_convergence_order_from_slope(scheme: str) -> None:
    """Every registered scheme converges at the order it declares (``Scheme.order``)."""
    order = schemes.get(scheme).order
    hs = np.array([0.1, 0.05, 0.025, 0.0125])
    errors = np.array([_oscillator_error(scheme, h) for h in hs])
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert abs(slope - order) <= 0.3, (scheme, slope, errors)


def test_euler_richardson_reference_variant_is_first_order() -> None:
    scheme = schemes.EulerRichardson(variant="reference")
    assert scheme.order == 1
    system = zoo.heavy_ball(mass=1.0, friction=0.0)
    errors = []
    hs = np.array([0.04, 0.02, 0.01])
    for h in hs:
        field = NumericField(system, problems.quadratic(1), system.defaults)
        x = {"theta": np.array([[1.0]]), "p": np.array([[0.0]])}
        for k in range(round(1 / h)):
            x = scheme.step(field, x, k * h, h).x
        errors.append(abs(x["theta"][0, 0] - np.cos(1.0)))
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert abs(slope - 1) <= 0.3


def test_damped_heavy_ball_rk4_is_fourth_order() -> None:
    """θ'' + γθ' + θ = 0 with m = 1: compare with the exact damped solution."""
    gamma = 0.5
    system = zoo.heavy_ball(mass=1.0, friction=gamma)
    w = np.sqrt(1 - gamma**2 / 4)

    def exact(T: float) -> float:  # θ(0) = 1, θ'(0) = 0
        return np.exp(-gamma * T / 2) * (np.cos(w * T) + gamma / (2 * w) * np.sin(w * T))

    hs = np.array([0.1, 0.05, 0.025])
    errs = []
    for h in hs:
        tr = odeopt.integrate(
            system,
            problems.quadratic(1),
            {"theta": [[1.0]]},
            t_span=(0, 2),
            h=h,
            scheme="rk4",
            save="final",
        )
        errs.append(abs(tr["theta"][-1, 0, 0] - exact(2.0)))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - 4) <= 0.3


def _energy_over(scheme: str, steps: int = 100_000, h: float = 0.01) -> np.ndarray:
    system = zoo.heavy_ball(mass=1.0, friction=0.0)
    tr = odeopt.integrate(
        system, problems.quadratic(1), {"theta": [[1.0]]}, steps=steps, h=h, scheme=scheme, save=100
    )
    return tr.energy[:, 0]


def test_energy_over_1e5_steps_on_the_oscillator() -> None:
    """Explicit Euler gains energy; symplectic Euler and leapfrog keep a bounded error over
    10⁵ steps. On the oscillator Euler's gain is exact, H_{k+1} = (1 + h²)·H_k (it maps
    (θ, p) to (θ + hp, p − hθ)), so 2·10⁴ steps show the geometric growth without bound."""
    H0, h = 0.5, 0.01
    euler = _energy_over("euler", steps=20_000)
    k = 100 * np.arange(len(euler))  # saved every 100 steps
    np.testing.assert_allclose(euler, H0 * (1 + h * h) ** k, rtol=1e-9)
    assert euler[-1] / H0 > 7  # e^(N·h²) = e² over these 2·10⁴ steps
    assert np.all(np.diff(euler) > 0)
    for scheme, bound in (("symplectic_euler", 0.01), ("leapfrog", 1e-4)):
        H = _energy_over(scheme)
        err = np.abs(H - H0)
        assert err.max() < bound, (scheme, err.max())
        half = len(err) // 2
        assert err[half:].max() < 1.05 * err[:half].max()  # no drift


def test_discrete_gradient_never_increases_energy_on_a_nonconvex_problem() -> None:
    system = zoo.heavy_ball(mass=1.0, friction=0.3)
    rng = np.random.default_rng(0)
    th0 = rng.uniform(-4, 4, (64, 2))
    kw = dict(t_span=(0.0, 3.0), h=0.01)
    dg = odeopt.integrate(
        system, problems.himmelblau(), {"theta": th0}, scheme="discrete_gradient", **kw
    )
    report = dg.energy_report(tol=1e-10)
    assert report.nonincreasing, str(report)
    assert dg.stats["unconverged_solves"] == 0
    # the same check catches explicit Euler, which does gain energy here
    eu = odeopt.integrate(system, problems.himmelblau(), {"theta": th0}, scheme="euler", **kw)
    assert not eu.energy_report(tol=1e-10).nonincreasing


def test_unknown_scheme_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown scheme 'rk5'.*symplectic_euler"):
        schemes.get("rk5")


def test_bad_tableau_is_refused() -> None:
    with pytest.raises(ValueError, match="weights b must sum to 1"):
        schemes.ButcherTableau.from_lists([[0]], [2], [0])
    with pytest.raises(ValueError, match="row 1 of a must sum to c"):
        schemes.ButcherTableau.from_lists([[0, 0], [1, 0]], [0.5, 0.5], [0, 0.5])


def test_step_controller_validates() -> None:
    with pytest.raises(ValueError, match="not both 0"):
        schemes.StepController(rtol=0, atol=0)
    with pytest.raises(ValueError, match="norm must be"):
        schemes.StepController(norm="max")
