"""The Levenberg–Marquardt flow, the zoo's system with a full metric."""

from __future__ import annotations

import numpy as np
import pytest

import odeopt as oo
from odeopt import problems, zoo


def test_levenberg_marquardt_flow_is_gauss_newton_on_linear_residuals() -> None:
    """With square invertible W and μ → 0, θ' = −(WᵀW + μI)⁻¹·2Wᵀr gives r' = −2r, so
    F(t) = F₀e^{−4t}; gradient flow on the same ill-conditioned problem is far slower."""
    rng = np.random.default_rng(3)
    W = rng.standard_normal((5, 5)) @ np.diag(np.logspace(-1.5, 0, 5))
    pb = problems.least_squares(W, rng.standard_normal(5))
    x0 = rng.uniform(-2, 2, (4, 5))
    F0 = pb.value_and_grad(x0)[0]
    lm = zoo.levenberg_marquardt(mu=1e-9)
    tr = oo.integrate(lm, pb, {"theta": x0}, steps=200, h=0.01, scheme="rk4")
    np.testing.assert_allclose(tr.loss[-1] / F0, np.exp(-8.0), rtol=1e-4)
    gf = oo.integrate(zoo.gradient_flow(), pb, {"theta": x0}, steps=200, h=0.01, scheme="rk4")
    assert np.all(gf.loss[-1] > 50 * tr.loss[-1])  # measured 78–250×
    b = lm.energy_balance()
    assert b.verdict == "dissipative" and b.nonincreasing
    with pytest.raises(NotImplementedError, match="not coordinate-wise"):
        oo.discretize(lm, "euler")
    with pytest.raises(TypeError, match="residuals"):
        oo.integrate(lm, problems.rosenbrock(), {"theta": x0[:, :2]}, steps=2, h=0.01)
    # and the one-neuron nets have residuals: LM from [−3, 3]² on polyThree converges
    pt = problems.poly_three()
    start = np.random.default_rng(1).uniform(-3, 3, (16, 2))
    run = oo.integrate(
        zoo.levenberg_marquardt(1e-2), pt, {"theta": start}, steps=1000, h=0.01, scheme="rk4"
    )
    assert set(run.status) == {"ok"} and np.all(run.loss[-1] <= run.loss[0])


def test_the_metric_is_recomputed_at_each_time_for_a_time_dependent_objective() -> None:
    """F = t·θ²: the field's metric cache is per time, so at t = 1.5 the field is 3× that
    at t = 0.5."""

    class Timed:
        time_dependent = True
        dim = 1

        def value_and_grad(self, theta, t):
            c = np.asarray(t, dtype=float).reshape(-1)[0]
            return (c * theta**2).sum(-1), 2 * c * theta

        def residuals(self, theta):
            return np.asarray(theta)

    from odeopt.integrate import NumericField

    field = NumericField(zoo.levenberg_marquardt(mu=1.0), Timed(), {})
    th = np.ones((1, 1))
    a = field({"theta": th}, 0.5)["theta"]
    b = field({"theta": th}, 1.5)["theta"]
    np.testing.assert_allclose(b, 3 * a)
