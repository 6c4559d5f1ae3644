"""backend="numba": one compiled kernel per (system, scheme, objective, dtype), compared with
the numpy backend (same final states, values, statuses and stop times)."""

from __future__ import annotations

import numpy as np
import pytest

import odeopt as oo
from odeopt import problems, zoo

pytest.importorskip("numba")

HB = zoo.heavy_ball(mass=1.0, friction=0.5)
HIMMELBLAU = problems.himmelblau()
ROSENBROCK = problems.rosenbrock()


def _both(system, problem, x0, **kw):
    kw.setdefault("save", "final")
    a = oo.integrate(system, problem, x0, backend="numba", **kw)
    b = oo.integrate(system, problem, x0, backend="numpy", **kw)
    return a, b


def _assert_same(a, b, atol: float) -> None:
    assert a.backend == "numba"
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.t_stop, b.t_stop)
    np.testing.assert_array_equal(a.t, b.t)
    for k in b.states:
        assert a.states[k].dtype == b.states[k].dtype
        np.testing.assert_allclose(a.states[k], b.states[k], rtol=atol, atol=atol)
    for f in ("loss", "energy", "grad_norm"):
        x, y = getattr(a, f), getattr(b, f)
        np.testing.assert_allclose(x, y, rtol=atol, atol=atol)


def _starts(n: int, scale: float = 4.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-scale, scale, (n, 2))


@pytest.mark.parametrize(
    ("system", "scheme", "problem", "h"),
    [
        (HB, "symplectic_euler", HIMMELBLAU, 0.01),
        (zoo.gradient_flow(), "euler", ROSENBROCK, 1e-4),
        (HB, "rk4", ROSENBROCK, 1e-3),
        (zoo.nesterov(), "symplectic_euler_nesterov", HIMMELBLAU, 0.005),
    ],
    ids=["hb-se-himmelblau", "gf-euler-rosenbrock", "hb-rk4-rosenbrock", "nesterov"],
)
def test_equals_numpy(system, scheme, problem, h) -> None:
    x0 = {"theta": _starts(300, 2.0)}
    a, b = _both(system, problem, x0, steps=300, h=h, scheme=scheme)
    _assert_same(a, b, 1e-12)
    assert (a.status == "ok").all()


def test_statuses_match_numpy() -> None:
    theta = np.concatenate([_starts(100, 4.0), _starts(20, 1e3, seed=1), [[3.0, 2.0]]])
    a, b = _both(HB, HIMMELBLAU, {"theta": theta}, steps=400, h=0.02, gtol=1e-3, blowup=1e8)
    _assert_same(a, b, 1e-12)
    assert {"ok", "diverged", "converged"} <= set(a.status.tolist())
    # a stopped trajectory keeps its state and stop time as numpy's does
    assert np.isfinite(a.t_stop[a.status != "ok"]).all()
    assert np.isnan(a.t_stop[a.status == "ok"]).all()
    assert a.status[-1] == "converged" and a.t_stop[-1] == pytest.approx(0.02)


def test_per_trajectory_parameters() -> None:
    theta = _starts(300)
    friction = np.linspace(0.1, 2.0, 300)
    a, b = _both(HB, HIMMELBLAU, {"theta": theta}, steps=50, h=0.01, params={"friction": friction})
    _assert_same(a, b, 1e-12)
    c = oo.integrate(
        HB, HIMMELBLAU, {"theta": theta}, steps=50, h=0.01, backend="numba", save="final"
    )
    assert np.abs(c.states["theta"] - a.states["theta"]).max() > 1e-3  # the array is used


def test_float32_stays_float32() -> None:
    theta = _starts(300).astype(np.float32)
    a, b = _both(HB, HIMMELBLAU, {"theta": theta}, steps=100, h=0.01)
    assert a.states["theta"].dtype == np.float32
    assert a.loss.dtype == np.float32
    np.testing.assert_array_equal(a.status, b.status)
    for k in b.states:
        np.testing.assert_allclose(a.states[k], b.states[k], rtol=1e-5, atol=1e-5)
    # computed in float32, not in float64 and rounded at the end
    c = oo.integrate(
        HB,
        HIMMELBLAU,
        {"theta": theta.astype(np.float64)},
        steps=100,
        h=0.01,
        backend="numba",
        save="final",
    )
    assert np.abs(c.states["p"] - a.states["p"]).max() > 1e-7


def test_kernel_is_cached() -> None:
    x0 = {"theta": _starts(10)}
    oo.integrate(HB, HIMMELBLAU, x0, steps=3, h=0.01, backend="numba", save="final")
    again = oo.integrate(HB, HIMMELBLAU, x0, steps=3, h=0.01, backend="numba", save="final")
    assert again.stats["compile_s"] == 0.0


@pytest.mark.parametrize(
    ("system", "problem", "kw", "match"),
    [
        (
            HB,
            problems.from_functions(lambda x: (x**2).sum(-1), lambda x: 2 * x, dim=2),
            {},
            "no exact sympy form",
        ),
        (HB, HIMMELBLAU, {"scheme": "heun", "t_span": (0, 1)}, "adaptive"),
        (HB, HIMMELBLAU, {"scheme": "euler_richardson"}, "adaptive"),
        (zoo.gradient_flow(), HIMMELBLAU, {"scheme": "discrete_gradient"}, "implicit"),
        (zoo.braking(), HIMMELBLAU, {}, "switches"),
        (zoo.bbi(), HIMMELBLAU, {}, "level-set"),
        (HB, HIMMELBLAU, {"save": "all"}, "save='final'"),
        (HB, HIMMELBLAU, {"steps": None, "h": None, "t_span": (0, 1)}, "give steps="),
        (HB, HIMMELBLAU, {"events": [oo.Event(zoo.heavy_ball().loss - 1)]}, "events"),
    ],
    ids=[
        "no-sympy",
        "heun",
        "euler-richardson",
        "implicit",
        "switches",
        "level-set",
        "save",
        "t_span",
        "events",
    ],
)
def test_refusals_name_why_and_alternatives(system, problem, kw, match) -> None:
    args = {"steps": 5, "h": 0.01, "save": "final", **kw}
    with pytest.raises(ValueError, match=match) as info:
        oo.integrate(system, problem, {"theta": _starts(4)}, backend="numba", **args)
    assert "backend='numpy' or backend='torch'" in str(info.value)


def test_torch_x0_refused() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="torch tensors"):
        oo.integrate(
            HB,
            HIMMELBLAU,
            {"theta": torch.zeros(3, 2)},
            steps=2,
            h=0.1,
            backend="numba",
            save="final",
        )
