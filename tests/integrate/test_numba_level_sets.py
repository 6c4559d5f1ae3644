"""backend="numba" on level-set systems (ECD: a stored energy E = H(x₀), the projection onto
H = E before each step, the domain stop V ≤ 1e-40) against the numpy backend on the same
inputs: statuses, stop times and states.

Each kernel compiles once (≈10 s) and is shared by the tests through module-scoped fixtures;
the BBI rk4 kernel on ½|θ|² is the one of tests/integrate/test_backends.py's domain-stop row.
"""

from __future__ import annotations

import numpy as np
import pytest

import odeopt as oo
from odeopt import problems, zoo

BBI = zoo.bbi(delta_v=0.5)
QUAD = problems.quadratic(2)
#: V = ½|θ|² − ½ reaches 0 from the first and third starts at rest (t ≈ 1.57, 2.27) and
#: from the last two, which move with momentum; the second starts outside (F < ΔV). (A row
#: that passes close to V = 0 without stopping comes out with the rounding of both backends
#: amplified by the singular field, p ~ 1/V: BBI's rows are chosen to stop at the edge.)
STARTS = {
    "theta": np.array([[1.0, 1.0], [0.2, 0.1], [2.0, 0.0], [1.5, -1.0], [-0.5, 1.6]]),
    "p": np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.4, 0.6], [-0.1, 0.4]]),
}


def _both(system, problem, x0, **kw):
    """(numpy, numba) Trajectories of the same call."""
    return tuple(oo.integrate(system, problem, x0, backend=b, **kw) for b in ("numpy", "numba"))


def _same_stops(a, b) -> None:
    assert list(b.status) == list(a.status)
    np.testing.assert_array_equal(b.t_stop, a.t_stop)


@pytest.fixture(scope="module")
def bbi_rk4():
    """BBI with rk4 on ½|θ|², t ∈ [0, 4], 400 steps: every save and the last only."""
    kw = {"scheme": "rk4", "t_span": (0.0, 4.0), "steps": 400}
    return _both(BBI, QUAD, STARTS, **kw), _both(BBI, QUAD, STARTS, save="final", **kw)


def test_domain_stop_statuses_and_times_match_numpy(bbi_rk4) -> None:
    (a, b), _ = bbi_rk4
    _same_stops(a, b)
    assert list(b.status) == ["domain"] * 5
    assert b.t_stop[1] == 0.0  # the start outside stops at t₀, keeping its start
    np.testing.assert_array_equal(b.states["theta"][:, 1], np.broadcast_to([0.2, 0.1], (401, 2)))
    np.testing.assert_allclose(b.t_stop[[0, 2]], [1.5708, 2.2708], atol=0.02)
    # a stopped row keeps its last state inside (V > 0) in every later save
    k = round(b.t_stop[0] / 0.01)
    assert (b.loss[k - 1 :, 0] == b.loss[k - 1, 0]).all() and b.loss[k - 1, 0] > 0.5


def test_states_and_values_match_numpy_every_save(bbi_rk4) -> None:
    (a, b), _ = bbi_rk4
    assert b.backend == "numba" and b.states["p"].shape == (401, 5, 2)
    for blk in ("theta", "p"):
        np.testing.assert_allclose(b.states[blk], a.states[blk], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.energy, a.energy, rtol=1e-12)
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-12)
    np.testing.assert_allclose(b.grad_norm, a.grad_norm, rtol=1e-12)


def test_final_save_matches_the_last_of_all(bbi_rk4) -> None:
    (_, every), (a, b) = bbi_rk4
    _same_stops(a, b)
    assert b.states["theta"].shape == (2, 5, 2)  # the start and the end
    np.testing.assert_array_equal(b.states["theta"][-1], every.states["theta"][-1])
    np.testing.assert_allclose(b.states["p"], a.states["p"], rtol=1e-12, atol=1e-12)


def test_the_stored_energy_is_that_of_the_start_or_the_one_given(bbi_rk4) -> None:
    """E = H(x₀) per trajectory: away from the edge (t ≤ 1) the rows keep H = E (BBI
    conserves it, and the projection puts p back on H = E before each step); a given E (one
    per trajectory: the same kernel) is used instead, and H moves to it."""
    (_, b), _ = bbi_rk4
    np.testing.assert_allclose(b.energy[:101], np.broadcast_to(b.energy[0], (101, 5)), rtol=1e-7)
    E = b.energy[0] * 1.5
    kw = {"scheme": "rk4", "t_span": (0.0, 1.0), "steps": 100, "params": {"E": E}}
    a2, b2 = _both(BBI, QUAD, STARTS, **kw)
    _same_stops(a2, b2)
    np.testing.assert_allclose(b2.states["p"], a2.states["p"], rtol=1e-12, atol=1e-12)
    run = b2.status == "ok"
    assert run.sum() == 4
    np.testing.assert_allclose(b2.energy[-1, run], E[run], rtol=1e-7)


def test_float32_runs_in_float32_as_accurately_as_numpy() -> None:
    """Symplectic Euler in float32: the same statuses and stop times as numpy's float32, and
    states as close to numpy's float64 run as numpy's own float32 run is."""
    x32 = {k: v.astype(np.float32) for k, v in STARTS.items()}
    kw = {"scheme": "symplectic_euler", "t_span": (0.0, 4.0), "steps": 400}
    a, b = _both(BBI, QUAD, x32, **kw)
    ref = oo.integrate(BBI, QUAD, STARTS, **kw)
    assert b.states["theta"].dtype == np.float32 and b.energy.dtype == np.float32
    _same_stops(a, b)
    for blk in ("theta", "p"):
        err_numpy = np.abs(a.states[blk] - ref.states[blk]).max()
        err_numba = np.abs(b.states[blk] - ref.states[blk]).max()
        assert err_numba <= 4 * err_numpy + 1e-6, (blk, err_numba, err_numpy)


def test_ecdsep_logarithmic_energy_matches_numpy() -> None:
    """ECDSep (H = η log(F − F₀) + log(s + |p|²): math.log, math.exp and a power with a
    parameter exponent in the kernel) on Himmelblau, short of its domain's edge."""
    rng = np.random.default_rng(3)
    x0 = {"theta": rng.uniform(-4, 4, (40, 2)), "p": 0.3 * rng.normal(size=(40, 2))}
    a, b = _both(
        zoo.ecdsep(f0=-1.0),
        problems.himmelblau(),
        x0,
        scheme="symplectic_euler",
        t_span=(0.0, 0.5),
        steps=50,
    )
    _same_stops(a, b)
    assert (b.status == "ok").all()
    for blk in ("theta", "p"):
        np.testing.assert_allclose(b.states[blk], a.states[blk], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.energy, a.energy, rtol=1e-12)


@pytest.fixture(scope="module")
def braking():
    """Braking (friction k₀ → k₁ when F reaches the goal) on Himmelblau with symplectic
    Euler: a goal per trajectory, the last start below its goal."""
    rng = np.random.default_rng(0)
    x0 = {"theta": rng.uniform(-4, 4, (40, 2)), "p": rng.normal(size=(40, 2))}
    x0["theta"][-1] = [3.0, 2.1]  # F ≈ 0.2, below its goal: k₁ from t₀, no event
    goal = np.linspace(2.0, 20.0, 40)
    kw = {"scheme": "symplectic_euler", "t_span": (0.0, 3.0), "steps": 300}
    system = zoo.braking(k0=0.05, k1=3.0)
    return _both(system, problems.himmelblau(), x0, params={"goal": goal}, **kw)


def test_switches_fire_where_and_when_numpy_s_do(braking) -> None:
    a, b = braking
    _same_stops(a, b)
    assert [(e.trajectory, e.step, e.name) for e in b.events] == [
        (e.trajectory, e.step, e.name) for e in a.events
    ]
    assert len(b.events) > 30 and 39 not in {e.trajectory for e in b.events}
    np.testing.assert_allclose([e.time for e in b.events], [e.time for e in a.events], atol=1e-12)
    assert all(e.name == "switch at F - F_goal" for e in b.events)


def test_switched_trajectories_match_numpy(braking) -> None:
    """The rest of the step after a switch is taken with the new gain, as numpy does; the
    row that starts below its goal brakes from t₀."""
    a, b = braking
    for blk in ("theta", "p"):
        np.testing.assert_allclose(b.states[blk], a.states[blk], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.energy, a.energy, rtol=1e-12, atol=1e-12)
    assert b.energy[-1, 39] < 0.25 * b.energy[0, 39]  # k₁ = 3 from the start


def test_switches_in_float32_match_numpy() -> None:
    """Braking in float32 (symplectic Euler): the same switches, and states equal to
    float32's rounding."""
    rng = np.random.default_rng(1)
    x0 = {
        "theta": rng.uniform(-4, 4, (20, 2)).astype(np.float32),
        "p": rng.normal(size=(20, 2)).astype(np.float32),
    }
    kw = {"scheme": "symplectic_euler", "t_span": (0.0, 2.0), "steps": 200}
    a, b = _both(zoo.braking(k0=0.05, k1=3.0, goal=5.0), problems.himmelblau(), x0, **kw)
    assert b.states["theta"].dtype == np.float32
    assert [(e.trajectory, e.step) for e in b.events] == [(e.trajectory, e.step) for e in a.events]
    assert len(b.events) >= 10
    for blk in ("theta", "p"):
        np.testing.assert_allclose(b.states[blk], a.states[blk], rtol=1e-5, atol=1e-5)


def test_switches_with_gtol_are_refused_naming_why() -> None:
    with pytest.raises(ValueError, match="not together with events= or gtol=") as info:
        oo.integrate(
            zoo.braking(),
            problems.himmelblau(),
            {"theta": np.zeros((2, 2))},
            steps=5,
            h=0.01,
            gtol=1e-6,
            backend="numba",
        )
    assert "backend='numpy' or backend='torch'" in str(info.value)
