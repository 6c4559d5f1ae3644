"""Bad input to ``integrate``: every bad argument gets an error that names it and its value
(no hang, no silent wrong result)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import odeopt as oo
from odeopt import problems, zoo

QUAD = problems.quadratic(2)
X0 = {"theta": np.ones((3, 2))}


def run(**kw):
    call = dict(system=zoo.gradient_flow(), problem=QUAD, x0=X0, t_span=(0.0, 1.0), h=0.1)
    call.update(kw)
    return oo.integrate(call.pop("system"), call.pop("problem"), call.pop("x0"), **call)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        # the step
        (dict(h=0.0), ValueError, r"h must be > 0, got h=0"),
        (dict(h=-0.1), ValueError, r"h must be > 0, got h=-0.1"),
        (dict(h=float("nan")), ValueError, r"h must be finite, got h=nan"),
        (dict(h=float("inf")), ValueError, r"h must be finite, got h=inf"),
        (dict(h="0.1"), TypeError, r"h must be a real number, got h='0.1'"),
        (dict(h=1j), TypeError, r"h must be a real number"),
        (dict(h=True), TypeError, r"h must be a real number"),
        # a hang before: scipy's RK45 with a NaN first step
        (dict(h=float("nan"), scheme="rk45"), ValueError, r"h must be finite"),
        (dict(h=0.0, scheme="euler_richardson"), ValueError, r"h must be > 0"),
        # steps
        (dict(t_span=None, steps=2.7), ValueError, r"steps must be an integer ≥ 1, got steps=2.7"),
        (dict(t_span=None, steps=-3), ValueError, r"steps must be an integer ≥ 1, got steps=-3"),
        (dict(t_span=None, steps=0), ValueError, r"steps must be an integer ≥ 1, got steps=0"),
        (dict(t_span=None, steps="10"), TypeError, r"steps must be an integer"),
        (dict(t_span=None, steps=True), TypeError, r"steps must be an integer"),
        # the time span
        (dict(t_span=(1.0, 0.0)), ValueError, r"t1 > t0, got t_span=\(1, 0\)"),
        (dict(t_span=(0.0, float("nan"))), ValueError, r"t_span must be finite"),
        (dict(t_span=(0.0, float("inf"))), ValueError, r"t_span must be finite"),
        (dict(t_span=5.0), ValueError, r"t_span is \(t0, t1\), got t_span=5.0"),
        (dict(t_span=(0.0, 1.0, 2.0)), ValueError, r"t_span is \(t0, t1\)"),
        (dict(t_span=("a", 1.0)), TypeError, r"t_span\[0\] must be a real number"),
        (dict(h=0.3), ValueError, r"not a multiple of h = 0.3"),
        # tolerances, bounds, chunks
        (dict(rtol=-1e-3), ValueError, r"rtol must be ≥ 0, got rtol=-0.001"),
        (dict(atol=float("nan")), ValueError, r"atol must be finite, got atol=nan"),
        (dict(gtol=0.0), ValueError, r"gtol must be > 0, got gtol=0"),
        (dict(gtol=-1.0), ValueError, r"gtol must be > 0"),
        (dict(blowup=float("nan")), ValueError, r"blowup must be finite"),
        (dict(blowup=0.0), ValueError, r"blowup must be > 0"),
        (dict(chunk_size=0), ValueError, r"chunk_size must be an integer ≥ 1, got chunk_size=0"),
        (dict(chunk_size=1.5), ValueError, r"chunk_size must be an integer ≥ 1"),
        (dict(max_steps=0), ValueError, r"max_steps must be an integer ≥ 1, got max_steps=0"),
        (dict(save=0), ValueError, r"save is 'all', 'final' or a positive integer"),
        (
            dict(scheme="euler_richardson", t_eval=[0.0, float("nan"), 1.0]),
            ValueError,
            r"t_eval must increase from t0 = 0 to t1 = 1",
        ),
        (
            dict(scheme="euler_richardson", t_eval=[0.0, 0.7, 0.5, 1.0]),
            ValueError,
            r"t_eval must increase",
        ),
        # the initial states
        (dict(x0=[[1.0, 2.0]]), TypeError, r"x0 maps block names to arrays .* got list"),
        (dict(x0=np.ones((3, 2))), TypeError, r"x0 maps block names .* got ndarray"),
        (dict(x0={"theta": np.ones((3, 2)) * (1 + 1j)}), TypeError, r"x0\['theta'\].*complex"),
        (
            dict(x0={"theta": torch.ones(3, 2, dtype=torch.complex128)}),
            TypeError,
            r"x0\['theta'\] must be real, got a tensor of dtype torch.complex128",
        ),
        (dict(x0={"theta": [["a", "b"]]}), TypeError, r"x0\['theta'\] must be an array of real"),
        (dict(x0={"theta": np.full((3, 2), np.inf)}), ValueError, r"x0\['theta'\] must be finite"),
        (dict(x0={"theta": np.ones((3, 2, 1))}), ValueError, r"shape \(batch, n\)"),
        (
            dict(x0={"theta": np.full((1, 2), 1e200)}, scheme="rk45"),
            ValueError,
            r"x0\['theta'\] has \|x\| = 1e\+200 > blowup = 1e\+100",
        ),
        (dict(x0={"theta": np.ones((3, 5))}), ValueError, r"n = 5, but the problem has dim 2"),
        (dict(x0={"p": np.ones((3, 2))}), ValueError, r"block\(s\) \['p'\]"),
        (
            dict(system=zoo.heavy_ball(), x0={"theta": np.ones((3, 2)), "p": np.ones((2, 2))}),
            ValueError,
            r"x0\['p'\] has shape \(2, 2\) but x0\['theta'\] has \(3, 2\)",
        ),
        # parameters
        (
            dict(system=zoo.heavy_ball(), params={"friction": float("nan")}),
            ValueError,
            r"parameter 'friction' must be finite",
        ),
        (
            dict(system=zoo.heavy_ball(), params={"friction": np.array([0.1, -1.0, 0.2])}),
            ValueError,
            r"parameter 'friction' \(gamma\) is declared nonnegative",
        ),
        (
            dict(system=zoo.heavy_ball(), params={"friction": np.ones(5)}),
            ValueError,
            r"parameter 'friction' has shape \(5,\)",
        ),
        (dict(system=zoo.heavy_ball(), params={"frcition": 0.1}), TypeError, r"no parameter"),
        # scheme and backend
        (dict(scheme="no_such_scheme"), ValueError, r"no_such_scheme"),
        (dict(backend="jax"), ValueError, r"unknown backend 'jax'"),
        (dict(scheme="dopri5", backend="torchdiffeq", gtol=1e-3), ValueError, r"gtol"),
        (dict(problem=object()), TypeError, r"value_and_grad"),
    ],
)
def test_bad_argument_is_named(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        run(**kwargs)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: oo.schemes.StepController(rtol=float("nan")), ValueError, r"rtol must be finite"),
        (lambda: oo.schemes.StepController(atol="x"), TypeError, r"atol must be a real number"),
        (lambda: oo.schemes.StepController(rtol=0, atol=0), ValueError, r"not both 0"),
        (lambda: oo.schemes.StepController(h_min=1, h_max=0.5), ValueError, r"h_min ≤ h_max"),
        (lambda: oo.schemes.StepController(safety=2.0), ValueError, r"safety must lie in"),
        (lambda: oo.schemes.StepController(norm="max"), ValueError, r"norm must be 'rms' or"),
        (lambda: oo.schemes.EnergyDecrease("euler", lam=1.5), ValueError, r"lam must lie in"),
        (
            lambda: oo.schemes.EnergyDecrease("euler", shrink=float("inf")),
            ValueError,
            r"shrink must be finite",
        ),
        (lambda: oo.schemes.EnergyDecrease("euler", h_max=0), ValueError, r"h_max must be > 0"),
        (lambda: oo.schemes.EnergyDecrease("rk45"), ValueError, r"unknown scheme 'rk45'"),
        (lambda: oo.schemes.EulerRichardson("textbook"), ValueError, r"variant must be"),
        (lambda: oo.Event(oo.loss(oo.blocks("theta")), tol=float("nan")), ValueError, "tol"),
    ],
)
def test_bad_scheme_or_controller_argument_is_named(make, error, match) -> None:
    with pytest.raises(error, match=match):
        make()


def test_an_integral_float_step_count_is_taken() -> None:
    tr = run(t_span=None, steps=10.0, h=0.1)
    assert tr.stats["steps"] == 10 and len(tr.t) == 11


def test_switches_refuse_continuous_solvers() -> None:
    pb = problems.quadratic(2)
    with pytest.raises(ValueError, match="fixed-step scheme"):
        oo.integrate(
            zoo.braking(goal=0.5), pb, {"theta": np.ones((1, 2))}, t_span=(0, 1), scheme="rk45"
        )


def test_switches_with_an_adaptive_scheme_name_the_switch_not_user_events() -> None:
    """braking gets no events= from the user: the refusal names its switch and the scheme."""
    with pytest.raises(ValueError, match="braking switches parameters.*'euler_richardson'"):
        oo.integrate(
            zoo.braking(goal=0.5),
            problems.quadratic(2),
            {"theta": np.ones((1, 2))},
            t_span=(0, 1),
            scheme="euler_richardson",
        )
