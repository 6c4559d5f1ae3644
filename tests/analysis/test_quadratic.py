"""Rules on quadratics: iteration matrices against the numerically applied rule, tuned rates
against the classical closed forms, stability regions and the discrete energy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

import odeopt as oo
from odeopt.analysis import curvature
from odeopt.analysis.quadratic import positive_set
from odeopt.schemes import EnergyDecrease, EulerRichardson, StepController

KAPPAS = [10.0, 100.0, 1e4]


def gd_rate(k: float) -> float:
    return (k - 1) / (k + 1)


def polyak_rate(k: float) -> float:
    return (math.sqrt(k) - 1) / (math.sqrt(k) + 1)


def nesterov_rate(k: float) -> float:
    return 1 - 2 / math.sqrt(3 * k + 1)


CLOSED = [
    ("gradient_flow", "euler", ("h",), gd_rate, None),
    ("heavy_ball", "symplectic_euler", ("h", "friction"), polyak_rate, "momentum"),
    ("heavy_ball", "symplectic_euler_nesterov", ("h", "friction"), nesterov_rate, "nesterov"),
]


@pytest.mark.parametrize("kappa", KAPPAS)
@pytest.mark.parametrize(("system", "scheme", "over", "rate", "kind"), CLOSED)
def test_tuned_rates_equal_the_closed_forms(
    system: str, scheme: str, over: tuple[str, ...], rate, kind, kappa: float
) -> None:
    rule = oo.discretize(oo.zoo.get(system), scheme)
    tuned = rule.tune(mu=1.0, L=kappa, over=over)
    assert tuned.exact
    assert tuned.rate == pytest.approx(rate(kappa), abs=1e-6)
    # the spectral radius at the returned values is the returned rate
    q = rule.quadratic()
    values = {k: v for k, v in tuned.values.items() if k in q.symbols}
    assert q.worst_rate(1.0, kappa, **values) == pytest.approx(tuned.rate, abs=1e-6)
    lam = np.geomspace(1.0, kappa, 301)
    assert np.max(q.spectral_radius(lam, **values)) <= tuned.rate + 1e-6
    assert set(tuned.values) >= set(over)
    assert tuned.optimizer == "SGD"
    assert tuned.torch is not None and tuned.torch["lr"] > 0
    if kind == "nesterov":
        assert tuned.torch["nesterov"] is True


@pytest.mark.parametrize("kappa", [10.0, 100.0])
@pytest.mark.parametrize(("system", "scheme", "over", "rate", "kind"), CLOSED)
def test_numeric_minimax_finds_the_closed_forms(
    system: str, scheme: str, over: tuple[str, ...], rate, kind, kappa: float
) -> None:
    rule = oo.discretize(oo.zoo.get(system), scheme)
    tuned = rule.tune(mu=1.0, L=kappa, over=over, method="numeric")
    assert not tuned.exact
    assert tuned.rate == pytest.approx(rate(kappa), abs=1e-6)


def test_tuning_a_rule_without_a_closed_form_beats_its_defaults() -> None:
    rule = oo.discretize(oo.zoo.heavy_ball(), "leapfrog")
    with pytest.raises(ValueError, match="no closed-form optimum"):
        rule.tune(mu=1, L=50, over=("h", "friction"), method="exact")
    tuned = rule.tune(mu=1, L=50, over=("h", "friction"))
    q = rule.quadratic()
    assert tuned.rate < q.worst_rate(1, 50, h=0.1)
    assert tuned.rate == pytest.approx(q.worst_rate(1, 50, **tuned.values), abs=1e-12)
    # a local perturbation of the tuned values does not do better
    for dh in (0.99, 1.01):
        for db in (0.99, 1.01):
            v = {**tuned.values, "h": tuned.values["h"] * dh}
            v["friction"] = tuned.values["friction"] * db
            assert q.worst_rate(1, 50, **v) >= tuned.rate - 1e-9
    assert tuned.evaluations == 1  # leapfrog reuses the gradient at θ_{k+1}


def test_multi_stage_rates_are_also_given_per_gradient() -> None:
    tuned = oo.discretize(oo.zoo.heavy_ball(), "rk4").tune(mu=1, L=100, over=("h", "friction"))
    assert tuned.evaluations == 4
    assert tuned.rate_per_evaluation == pytest.approx(tuned.rate**0.25)
    assert tuned.rate_per_evaluation > polyak_rate(100)  # rk4 is no faster per gradient
    assert "4 gradients a step" in str(tuned)


def test_a_rule_that_moves_the_minimiser_is_flagged_and_not_tuned_silently() -> None:
    """Massaroli's c|ω|² pulls θ to 0 besides the gradient: the rule converges to
    aλθ*/(aλ + 2c) on F = ½λ(θ − θ*)², so its ρ is no rate to the minimum."""
    rule = oo.discretize(oo.zoo.massaroli(), "symplectic_euler")
    q = rule.quadratic()
    assert q.bias is not None and "θ*" in q.bias and "not a fixed point" in str(q)
    assert oo.discretize(oo.zoo.heavy_ball(), "rk4").quadratic().bias is None
    with pytest.raises(ValueError, match="does not keep the minimiser.*allow_bias=True"):
        rule.tune(mu=1, L=100, over=("h", "beta", "a"))
    own = rule.tune(mu=1, L=100, over=("h", "beta"), allow_bias=True)
    assert own.rate == pytest.approx(q.worst_rate(1, 100, **own.values), abs=1e-12)
    with pytest.raises(ValueError, match="not a fixed point of the rule"):
        rule.worst_case(L=1.0, steps=2, h=0.5)
    # the iterates on a shifted quadratic do converge to another point
    problem = oo.problems.quadratic(2, A=np.diag([1.0, 100.0]), b=np.array([1.0, 100.0]))
    traj = oo.integrate(
        oo.zoo.massaroli(),
        problem,
        {"theta": np.zeros((1, 2))},
        scheme="symplectic_euler",
        h=0.1,
        steps=3000,
        save="final",
    )
    theta = np.asarray(traj.final["theta"])[0]
    # fixed point a·λ·θ*/(a·λ + 2c) with a = 1, c = 0.01, θ* = (1, 1)
    assert theta == pytest.approx([1 / 1.02, 100 / 100.02], rel=1e-6)


def test_tuning_refuses_a_value_for_a_tuned_parameter() -> None:
    rule = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler")
    with pytest.raises(ValueError, match=r"\['friction'\] are tuned"):
        rule.tune(mu=1, L=100, over=("h", "friction"), friction=3.0)


def test_braking_after_its_switch_is_tuned_and_energy_checked() -> None:
    rule = oo.discretize(oo.zoo.braking(k0=0.1, k1=2.0), "symplectic_euler")
    after = rule.tune(mu=1, L=100, over=("h",), switched=True)
    hb = oo.discretize(oo.zoo.heavy_ball(friction=2.0), "symplectic_euler")
    assert after.rate == pytest.approx(hb.tune(mu=1, L=100, over=("h",)).rate, abs=1e-9)
    assert after.torch["momentum"] == pytest.approx(1 - 2.0 * after.values["h"])
    d = rule.discrete_energy(curvature=1, switched=True)
    assert d.set == hb.discrete_energy(curvature=1).set


def test_heavy_ball_tuned_over_the_step_only_is_slower_than_polyak() -> None:
    rule = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler")
    alone = rule.tune(mu=1, L=100, over=("h",), friction=0.5)
    assert not alone.exact and alone.values["friction"] == 0.5
    assert polyak_rate(100) < alone.rate < 1


# -- the matrix against the numerically applied rule ---------------------------------------------
PAIRS = [
    ("massaroli", "leapfrog", {}, None),
    ("heavy_ball", "rk4", {"friction": 0.7}, None),
    ("heavy_ball", "heun", {"mass": 2.0}, None),
    ("braking", "midpoint", {"goal": -1.0}, None),  # F ≥ 0 > goal: never switches
    ("gradient_flow", "rk4", {}, None),
    ("heavy_ball", "euler", {}, None),  # a constant entry in M
    ("heavy_ball", "symplectic_euler_q", {"friction": 1.3}, None),
    ("nesterov", "symplectic_euler_nesterov", {}, 0.0),
]


@pytest.mark.parametrize(("system", "scheme", "params", "t"), PAIRS)
def test_spectral_radius_equals_the_eigenvalues_of_the_applied_rule(
    system: str, scheme: str, params: dict, t
) -> None:
    sys_ = oo.zoo.get(system)
    rule = oo.discretize(sys_, scheme)
    q = rule.quadratic(t=t)
    rng = np.random.default_rng(3)
    lams = rng.uniform(0.1, 20.0, 6)
    problem = oo.problems.quadratic(6, A=np.diag(lams))
    h = 0.13
    names = [b.name for b in q.blocks]
    columns = []
    for j in range(len(names)):
        x0 = {b: np.zeros((1, 6)) for b in names}
        x0[names[j]] = np.ones((1, 6))
        if rule.scheme.adaptive:  # integrate would adapt h: one step of the rule's program
            out, _ = rule.program.evaluate(problem, x0, t=0.0, h=h, **params)
            final = {b: np.asarray(out[b]) for b in names}
        else:
            traj = oo.integrate(
                sys_, problem, x0, scheme=scheme, h=h, steps=1, params=params, save="final"
            )
            final = {b: np.asarray(traj.final[b]) for b in names}
        columns.append(np.stack([final[b][0] for b in names]))
    applied = np.stack(columns, axis=1)  # (blocks, blocks, direction)
    for i, lam in enumerate(lams):
        M = applied[:, :, i]
        assert np.allclose(M, q.matrices(lam, h=h, **params), atol=1e-12, rtol=1e-12)
        rho = np.abs(np.linalg.eigvals(M)).max()
        assert q.spectral_radius(lam, h=h, **params) == pytest.approx(rho, abs=1e-10)


def test_spectral_radius_broadcasts() -> None:
    q = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler").quadratic()
    lam = np.array([1.0, 2.0, 3.0])[:, None]
    h = np.array([0.1, 0.2])[None, :]
    rho = q.spectral_radius(lam, h=h, friction=0.5)
    assert rho.shape == (3, 2)
    assert rho[2, 1] == pytest.approx(q.spectral_radius(3.0, h=0.2, friction=0.5))


def test_gradient_descent_matrix_and_symbols() -> None:
    q = oo.discretize(oo.zoo.gradient_flow(), "euler").quadratic()
    h = q.symbols["h"]
    assert sp.simplify(q.matrix[0, 0] - (1 - h * curvature)) == 0
    assert set(q.symbols) == {"h", "curvature"}
    hb = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler").quadratic()
    assert {"h", "curvature", "friction", "mass"} == set(hb.symbols)


# -- stability -----------------------------------------------------------------------------------
def test_stability_of_gradient_descent_is_h_below_two_over_lambda() -> None:
    q = oo.discretize(oo.zoo.gradient_flow(), "euler").quadratic()
    region = q.stability_region(curvature=4)
    assert region.exact and region.set == sp.Interval.open(0, sp.Rational(1, 2))
    assert region.interval == (0.0, 0.5)
    numeric = q.stability_region(curvature=4, method="numeric")
    assert numeric.interval == pytest.approx((0.0, 0.5), abs=1e-9)


def test_stability_of_heavy_ball_symplectic_euler_is_exact_and_checked() -> None:
    q = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler").quadratic()
    region = q.stability_region(curvature=1, friction=0.5)  # mass at its default 1
    # Jury: 4 − 2γh − h²λ > 0 → h < −γ/λ + √(γ²/λ² + 4/λ) = (−1 + √17)/2 for γ = ½, λ = 1
    assert region.exact
    assert region.set == sp.Interval.open(0, (sp.sqrt(17) - 1) / 2)
    lo, hi = region.interval
    assert q.spectral_radius(1.0, h=hi * 0.999, friction=0.5) < 1
    assert q.spectral_radius(1.0, h=hi * 1.001, friction=0.5) > 1
    num = q.stability_region(curvature=1, friction=0.5, method="numeric")
    assert num.interval == pytest.approx(region.interval, abs=1e-9)
    general = q.stability_region(free="all")
    assert general.set is None and general.condition is not None


def test_stability_numeric_for_rk4_agrees_with_the_radius() -> None:
    q = oo.discretize(oo.zoo.heavy_ball(), "rk4").quadratic()
    region = q.stability_region(curvature=1, friction=0.5, method="numeric")
    _, hi = region.interval
    assert q.spectral_radius(1.0, h=hi * 0.999, friction=0.5) < 1
    assert q.spectral_radius(1.0, h=hi * 1.001, friction=0.5) >= 1


def test_stability_in_the_curvature_and_in_a_nonnegative_parameter_is_scanned() -> None:
    gd = oo.discretize(oo.zoo.gradient_flow(), "euler").quadratic()
    region = gd.stability_region(h=0.1, method="numeric")
    assert region.by_name == "curvature"
    assert region.interval == pytest.approx((0.0, 20.0), abs=1e-8)
    rk4 = oo.discretize(oo.zoo.heavy_ball(), "rk4").quadratic()
    # the friction case goes through method="auto" (sympy cannot solve RK4's degree-8
    # conditions, then the scan); the curvature case asks for the scan directly (sympy's
    # attempt alone takes ~7 s there)
    for free, given, method in (
        ("curvature", {"h": 0.1}, "numeric"),
        ("friction", {"h": 0.1, "curvature": 1}, "auto"),
    ):
        region = rk4.stability_region(method=method, free=free, **given)
        assert region.by_name == free and not region.exact
        _, hi = region.interval
        args = {"curvature": 1.0, "friction": 0.5, **given}
        args[free] = hi * 0.999
        curv = args.pop("curvature")
        assert rk4.spectral_radius(curv, **args) < 1
        args["curvature"] = curv
        args[free] = hi * 1.001
        curv = args.pop("curvature")
        assert rk4.spectral_radius(curv, **args) >= 1


def test_discrete_energy_in_the_curvature_is_scanned() -> None:
    rule = oo.discretize(oo.zoo.heavy_ball(), "rk4")
    d = rule.discrete_energy(h=0.1)
    assert d.by_name == "curvature" and not d.exact
    hi = float(d.set.sup)
    q = rule.quadratic()
    x = np.random.default_rng(2).standard_normal((2, 4000))
    for lam, ok in ((hi * 0.98, True), (hi * 1.05, False)):
        y = q.matrices(lam, h=0.1) @ x
        H = lambda z, lam=lam: 0.5 * lam * z[0] ** 2 + 0.5 * z[1] ** 2  # noqa: E731
        assert bool(np.all(H(y) <= H(x) * (1 + 1e-12))) == ok


def test_positive_set_finds_intervals() -> None:
    got = positive_set(lambda x: (x < 2) | ((x > 5) & (x < 7)), closed=False)
    lo, hi = float(got.args[0].inf), float(got.args[0].sup)
    assert (lo, hi) == pytest.approx((0.0, 2.0), abs=1e-9)
    assert float(got.args[1].inf) == pytest.approx(5.0) and float(got.args[1].sup) == pytest.approx(
        7.0
    )


# -- refusals ------------------------------------------------------------------------------------
def test_rules_that_are_not_linear_on_quadratics_say_why() -> None:
    with pytest.raises(ValueError, match="depends on the loss value"):
        oo.discretize(oo.zoo.bbi(), "euler").quadratic()
    with pytest.raises(ValueError, match="not (linear|polynomial)"):
        oo.discretize(oo.zoo.adam(), "euler").quadratic()
    with pytest.raises(ValueError, match="change with the time t.*quadratic\\(t=...\\)"):
        oo.discretize(oo.zoo.nesterov(), "symplectic_euler_nesterov").quadratic()
    with pytest.raises(ValueError, match="implicit"):
        oo.discretize(oo.zoo.heavy_ball(), "discrete_gradient").quadratic()
    ctrl = EulerRichardson(controller=StepController(norm="l2", rtol=0, atol=1e-3))
    with pytest.raises(ValueError, match="adaptive: its controller StepController"):
        oo.discretize(oo.zoo.gradient_flow(), ctrl).quadratic()
    with pytest.raises(ValueError, match="adaptive: the energy test"):
        oo.discretize(oo.zoo.gradient_flow(), EnergyDecrease("euler")).quadratic()
    with pytest.raises(ValueError, match="no switch"):
        oo.discretize(oo.zoo.heavy_ball(), "euler").quadratic(switched=True)


def test_braking_on_each_side_of_its_switch() -> None:
    rule = oo.discretize(oo.zoo.braking(k0=0.1, k1=2.0), "symplectic_euler")
    before, after = rule.quadratic(), rule.quadratic(switched=True)
    assert "gain" in before.symbols and "gain" not in after.symbols
    assert after.spectral_radius(1.0, h=0.1) == pytest.approx(
        before.spectral_radius(1.0, h=0.1, gain=2.0)
    )


def test_bad_values_are_named() -> None:
    q = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler").quadratic()
    with pytest.raises(TypeError, match=r"give h="):
        q.spectral_radius(1.0)
    with pytest.raises(TypeError, match=r"no parameter\(s\) \['frction'\]"):
        q.spectral_radius(1.0, h=0.1, frction=0.5)
    with pytest.raises(ValueError, match="h must be finite"):
        q.spectral_radius(1.0, h=float("nan"))
    rule = oo.discretize(oo.zoo.gradient_flow(), "euler")
    with pytest.raises(ValueError, match="mu must be finite and > 0"):
        rule.tune(mu=0, L=10)
    with pytest.raises(ValueError, match="need mu <= L"):
        rule.tune(mu=10, L=1)
    with pytest.raises(ValueError, match="cannot tune 'friction'"):
        rule.tune(mu=1, L=10, over=("h", "friction"))
    with pytest.raises(ValueError, match="method must be"):
        rule.tune(mu=1, L=10, method="fast")


# -- discrete energy -----------------------------------------------------------------------------
def test_gradient_descent_decreases_F_iff_h_at_most_two_over_lambda() -> None:
    d = oo.discretize(oo.zoo.gradient_flow(), "euler").discrete_energy(curvature=1)
    assert d.exact and d.set == sp.Interval.Lopen(0, 2)


def test_heavy_ball_symplectic_euler_energy_sets_match_random_states() -> None:
    rule = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler")
    d = rule.discrete_energy(curvature=1, friction=0.5)
    assert d.set == sp.Interval.Lopen(0, sp.Rational(4, 5))
    # without friction the symplectic step does not decrease H for every state
    assert d.set is not None
    assert rule.discrete_energy(curvature=1, friction=0).set in (sp.S.EmptySet, None) or (
        rule.discrete_energy(curvature=1, friction=0).condition is sp.false
    )
    q = rule.quadratic()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2000))
    for h, decreases in ((0.5, True), (0.79, True), (0.9, False), (1.2, False)):
        M = q.matrices(1.0, h=h, friction=0.5)
        H0 = 0.5 * x[0] ** 2 + 0.5 * x[1] ** 2
        y = M @ x
        H1 = 0.5 * y[0] ** 2 + 0.5 * y[1] ** 2
        assert bool(np.all(H1 <= H0 + 1e-12)) == decreases


def test_discrete_energy_numeric_fallback_matches_random_states() -> None:
    rule = oo.discretize(oo.zoo.heavy_ball(), "leapfrog")
    d = rule.discrete_energy(curvature=1, friction=0.5)
    _, hi = float(d.set.inf), float(d.set.sup)
    q = rule.quadratic()
    x = np.random.default_rng(1).standard_normal((2, 4000))
    for h, ok in ((hi * 0.98, True), (hi * 1.05, False)):
        y = q.matrices(1.0, h=h, friction=0.5) @ x
        assert bool(np.all((y**2).sum(0) <= (x**2).sum(0) + 1e-12)) == ok


def test_discrete_energy_refuses_non_quadratic_energy() -> None:
    with pytest.raises(ValueError, match="depends on the loss value"):
        oo.discretize(oo.zoo.bbi(), "euler").discrete_energy()


def test_plot_marks_the_stable_region() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = oo.discretize(oo.zoo.heavy_ball(), "symplectic_euler").quadratic()
    ax = q.plot(y="friction", resolution=40)
    assert ax.get_xlabel().startswith("h·λ") and ax.get_ylabel() == "friction"
    assert len(ax.figure.axes) == 2  # the colour bar
    ax1 = q.plot(resolution=40, friction=0.5)
    assert ax1.get_ylabel() == "spectral radius ρ"
    with pytest.raises(ValueError, match="y='gamma' is not a parameter"):
        q.plot(y="gamma")
    plt.close("all")
