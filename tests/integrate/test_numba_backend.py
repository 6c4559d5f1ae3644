"""backend="numba": one compiled kernel per (system, scheme, objective, dtype), compared with
the numpy backend on the same inputs (same saved states, values, statuses and stop times).

Each kernel compiles in seconds, so the tests share a few: (heavy ball, symplectic Euler,
Himmelblau) in float64 with scalar parameters, in float64 with a per-trajectory friction and
in float32, and one per scheme of ``test_equals_numpy``."""

from __future__ import annotations

import numpy as np
import pytest

import odeopt as oo
from odeopt import problems, zoo
from odeopt.symbolic.language import t

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


GF = zoo.gradient_flow()
#: terminal events: F reaching a goal from above and a time limit (gradient flow), and the
#: energy H = F + |p|²/2m crossing a level (heavy ball, with gtol: converged or event)
GF_EVENTS = [
    oo.Event(GF.loss - 1, terminal=True, direction=-1),
    oo.Event(t - 0.02, terminal=True, direction=1),
]
HB_EVENTS = [oo.Event(HB.hamiltonian - 100, terminal=True, name="H = 100")]


@pytest.mark.parametrize(
    ("system", "scheme", "problem", "h", "gtol", "events"),
    [
        (GF, "euler", ROSENBROCK, 1e-4, None, GF_EVENTS),
        (HB, "rk4", ROSENBROCK, 1e-3, 2.0, HB_EVENTS),
        (zoo.nesterov(), "symplectic_euler_nesterov", HIMMELBLAU, 0.005, None, []),
    ],
    ids=[
        "gf-euler-rosenbrock-events",
        "hb-rk4-rosenbrock-gtol-event",
        "nesterov",
    ],
)
def test_equals_numpy(system, scheme, problem, h, gtol, events) -> None:
    """With gtol, the kernel reuses F and ∇F of the convergence test at the next step's
    position (rk4: the first of its four evaluations); events are located by bisection of
    the step per trajectory; the results stay numpy's, the event records too."""
    x0 = {"theta": _starts(300, 2.0)}
    kw = {"steps": 300, "h": h, "scheme": scheme, "save": 50, "gtol": gtol, "events": events}
    a, b = _both(system, problem, x0, **kw)
    _assert_same(a, b, 1e-12)
    assert a.states["theta"].shape == (7, 300, 2) and a.loss.shape == (7, 300)
    assert a.events == b.events
    if events:  # trajectories stop at many different times
        fired = a.status == "event"
        assert fired.sum() >= 10 and len(a.events) == fired.sum()
        assert len(np.unique(a.t_stop[fired])) >= 10
        assert {e.name for e in a.events} == {e.name for e in events}
    if gtol is not None:
        assert 50 < (a.status == "converged").sum() < 300
        assert len(np.unique(a.t_stop[a.status == "converged"])) > 20
    if gtol is None and not events:
        assert (a.status == "ok").all()


def _mixed() -> np.ndarray:
    """Starts that end ok, diverged (beyond blowup=1e8) and converged (the last, at a
    minimum of Himmelblau)."""
    return np.concatenate([_starts(100, 4.0), _starts(20, 1e3, seed=1), [[3.0, 2.0]]])


#: a friction per trajectory of _mixed(): the heavy ball's float64 kernel of these tests is
#: the one with a per-trajectory friction and gtol (one compilation for them all)
FRICTION = {"friction": np.linspace(0.3, 0.7, 121)}


@pytest.mark.parametrize("save", ["all", 7, "final"])
def test_saves_equal_numpy(save) -> None:
    """Every save grid: the states, H, F and |∇F| at the saves, with a stopped trajectory's
    state and values kept in every later save, as numpy's."""
    kw = {"steps": 100, "h": 0.02, "gtol": 1e-3, "blowup": 1e8, "save": save, "params": FRICTION}
    a, b = _both(HB, HIMMELBLAU, {"theta": _mixed()}, **kw)
    _assert_same(a, b, 1e-12)
    n = {"all": 101, 7: 16, "final": 2}[save]
    assert a.states["p"].shape == (n, 121, 2) and a.grad_norm.shape == (n, 121)
    assert {"ok", "diverged", "converged"} <= set(a.status.tolist())
    if save == "all":  # a diverged row holds its last state inside the bound from its stop on
        row = int(np.flatnonzero(a.status == "diverged")[0])
        k = round(a.t_stop[row] / 0.02)
        assert np.abs(a.states["theta"][k - 1, row]).max() <= 1e8
        np.testing.assert_array_equal(
            a.states["theta"][k:, row], a.states["theta"][k - 1 : -1, row]
        )
        np.testing.assert_array_equal(a.loss[k:, row], np.full(n - k, a.loss[k, row]))


def test_nonfinite_statuses_equal_numpy_in_float32() -> None:
    """Diverging float32 runs pass through states where F or ∇F overflows (inf: "diverged")
    or is inf − inf (NaN: "nonfinite"): each stops with its last saved state, at the time of
    that save, as numpy's."""
    theta = np.concatenate([_starts(100, 4.0), _starts(300, 100.0)]).astype(np.float32)
    for save in ("all", 3):
        a, b = _both(HB, HIMMELBLAU, {"theta": theta}, steps=40, h=0.05, save=save)
        np.testing.assert_array_equal(a.status, b.status)
        np.testing.assert_array_equal(a.t_stop, b.t_stop)
        assert {"ok", "diverged", "nonfinite"} <= set(a.status.tolist())
        for k in b.states:
            np.testing.assert_allclose(a.states[k], b.states[k], rtol=1e-6, atol=0)
        for f in ("loss", "energy", "grad_norm"):
            np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-6, atol=0)
        stopped = a.status == "nonfinite"  # t_stop is a saved time; the last save is finite
        assert np.isin(a.t_stop[stopped], a.t).all()
        assert np.isfinite(a.loss[-1, stopped]).all()


def test_start_where_the_objective_overflows_is_refused() -> None:
    theta = np.array([[1e10, 1e10], [0.0, 0.0]], dtype=np.float32)  # F = inf in float32
    with pytest.raises(ValueError, match=r"not finite at the start of trajectories \[0\]"):
        oo.integrate(HB, HIMMELBLAU, {"theta": theta}, steps=2, h=0.01, backend="numba")


def test_statuses_match_numpy() -> None:
    kw = {"steps": 400, "h": 0.02, "gtol": 1e-3, "blowup": 1e8, "params": FRICTION}
    a, b = _both(HB, HIMMELBLAU, {"theta": _mixed()}, **kw)
    _assert_same(a, b, 1e-12)
    assert {"ok", "diverged", "converged"} <= set(a.status.tolist())
    # a stopped trajectory keeps its state and stop time as numpy's does
    assert np.isfinite(a.t_stop[a.status != "ok"]).all()
    assert np.isnan(a.t_stop[a.status == "ok"]).all()
    assert a.status[-1] == "converged" and a.t_stop[-1] == pytest.approx(0.02)


def test_per_trajectory_parameters() -> None:
    theta = _starts(300)
    friction = np.linspace(0.1, 2.0, 300)
    kw = {"steps": 50, "h": 0.01, "gtol": 1e-9}
    a, b = _both(HB, HIMMELBLAU, {"theta": theta}, params={"friction": friction}, **kw)
    _assert_same(a, b, 1e-12)
    c = oo.integrate(HB, HIMMELBLAU, {"theta": theta}, backend="numpy", save="final", **kw)
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
        backend="numpy",
        save="final",
    )
    assert np.abs(c.states["p"] - a.states["p"]).max() > 1e-7


def test_kernel_is_cached() -> None:
    """One kernel per (system, scheme, problem, dtype) (and per-trajectory parameters, gtol
    given, events): another batch size, step, save grid, gtol or friction compiles nothing."""
    kw = {"backend": "numba", "scheme": "symplectic_euler"}
    friction = {"friction": np.full(10, 0.2)}
    oo.integrate(
        HB, HIMMELBLAU, {"theta": _starts(10)}, steps=3, h=0.01, gtol=1e-5, params=friction, **kw
    )
    again = oo.integrate(
        HB,
        HIMMELBLAU,
        {"theta": _starts(700)},
        steps=5,
        h=0.02,
        save=2,
        gtol=1e-6,
        params={"friction": np.linspace(0.1, 1.0, 700)},
        **kw,
    )
    assert again.stats["compile_s"] == 0.0
    assert again.states["theta"].shape == (4, 700, 2)


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
        (zoo.braking(), HIMMELBLAU, {"gtol": 1e-3}, "not together with events= or gtol="),
        (HB, HIMMELBLAU, {"steps": None, "h": None, "t_span": (0, 1)}, "give steps="),
        (HB, HIMMELBLAU, {"events": [oo.Event(HB.loss - 1)]}, "not a terminal event"),
        (
            HB,
            HIMMELBLAU,
            {"events": [oo.Event(lambda x, F, t: F - 1, terminal=True)]},
            "not a terminal event with a sympy expression",
        ),
    ],
    ids=[
        "no-sympy",
        "heun",
        "euler-richardson",
        "implicit",
        "switches-with-gtol",
        "t_span",
        "event-with-action",
        "event-callable",
    ],
)
def test_refusals_name_why_and_alternatives(system, problem, kw, match) -> None:
    args = {"steps": 5, "h": 0.01, "save": "final", **kw}
    with pytest.raises(ValueError, match=match) as info:
        oo.integrate(system, problem, {"theta": _starts(4)}, backend="numba", **args)
    assert "backend='numpy' or backend='torch'" in str(info.value)


def test_bad_save_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="save is 'all', 'final' or a positive integer K"):
        oo.integrate(
            HB, HIMMELBLAU, {"theta": _starts(4)}, steps=5, h=0.01, backend="numba", save=0
        )


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


def test_t_span_with_h_runs_the_fixed_grid_numpy_runs() -> None:
    """t_span=(0, 1) with h = 0.02 is 50 fixed steps, as on numpy (same saves, same states)."""
    x0 = {"theta": _starts(50)}
    kw = {"t_span": (0.0, 1.0), "h": 0.02, "save": 10}
    fast = oo.integrate(HB, HIMMELBLAU, x0, backend="numba", **kw)
    ref = oo.integrate(HB, HIMMELBLAU, x0, backend="numpy", **kw)
    np.testing.assert_array_equal(fast.t, ref.t)
    np.testing.assert_allclose(fast["theta"], ref["theta"], rtol=0, atol=1e-12)
    assert fast.status.tolist() == ref.status.tolist()
