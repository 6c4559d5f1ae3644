"""odeopt.integrate: backends, saving, chunks, divergence, convergence, events, errors."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

import odeopt
from odeopt import problems, zoo


def _starts(batch: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2, 2, (batch, 2))


def test_shapes_and_save_modes() -> None:
    hb = zoo.heavy_ball()
    x0 = {"theta": _starts(5)}
    tr = odeopt.integrate(hb, problems.rosenbrock(), x0, t_span=(0.0, 1.0), h=0.01)
    assert tr["theta"].shape == (101, 5, 2) and tr["p"].shape == (101, 5, 2)
    assert tr.energy.shape == tr.loss.shape == tr.grad_norm.shape == (101, 5)
    np.testing.assert_allclose(tr.t, np.linspace(0, 1, 101), atol=1e-12)
    np.testing.assert_array_equal(tr["p"][0], 0.0)  # a missing momentum block starts at 0
    assert list(tr.status) == ["ok"] * 5
    every = odeopt.integrate(hb, problems.rosenbrock(), x0, steps=100, h=0.01, save=30)
    np.testing.assert_allclose(every.t, [0, 0.3, 0.6, 0.9, 1.0], atol=1e-12)
    np.testing.assert_array_equal(every["theta"], tr["theta"][[0, 30, 60, 90, 100]])
    final = odeopt.integrate(hb, problems.rosenbrock(), x0, steps=100, h=0.01, save="final")
    assert final["theta"].shape == (2, 5, 2)
    np.testing.assert_array_equal(final["theta"][-1], tr["theta"][-1])
    # H = F + |p|²/2m and F, |∇F| are those of the saved states
    F, g = problems.rosenbrock().value_and_grad(tr["theta"][-1])
    np.testing.assert_allclose(tr.loss[-1], F)
    np.testing.assert_allclose(tr.grad_norm[-1], np.linalg.norm(g, axis=1))
    np.testing.assert_allclose(tr.energy[-1], F + 0.5 * (tr["p"][-1] ** 2).sum(1))


def test_chunks_give_the_same_result_as_one_batch() -> None:
    hb = zoo.heavy_ball()
    x0 = {"theta": _starts(50)}
    one = odeopt.integrate(hb, problems.himmelblau(), x0, steps=200, h=0.01, save=50)
    many = odeopt.integrate(
        hb, problems.himmelblau(), x0, steps=200, h=0.01, save=50, chunk_size=16
    )
    for b in ("theta", "p"):
        np.testing.assert_array_equal(one[b], many[b])


def test_torch_backend_equals_numpy_and_keeps_float32() -> None:
    hb = zoo.bbi(delta_v=-1.0)
    th0 = _starts(8)
    ref = odeopt.integrate(
        hb, problems.rosenbrock(), {"theta": th0}, steps=300, h=1e-3, scheme="leapfrog"
    )
    tt = odeopt.integrate(
        hb,
        problems.rosenbrock(),
        {"theta": torch.tensor(th0)},
        steps=300,
        h=1e-3,
        scheme="leapfrog",
    )
    assert tt.backend == "torch" and isinstance(tt["theta"], torch.Tensor)
    np.testing.assert_allclose(tt["theta"].numpy(), ref["theta"], rtol=0, atol=1e-12)
    f32 = odeopt.integrate(
        hb, problems.rosenbrock(), {"theta": torch.tensor(th0).float()}, steps=10, h=1e-3
    )
    assert f32["theta"].dtype == torch.float32 and f32.energy.dtype == torch.float32


def test_per_trajectory_parameters() -> None:
    hb = zoo.heavy_ball()
    th0 = _starts(3)
    frictions = np.array([0.1, 0.5, 2.0])
    batch = odeopt.integrate(
        hb,
        problems.quadratic(2),
        {"theta": th0},
        steps=50,
        h=0.05,
        params={"friction": frictions},
        save="final",
    )
    for i, gamma in enumerate(frictions):
        single = odeopt.integrate(
            hb,
            problems.quadratic(2),
            {"theta": th0[i : i + 1]},
            steps=50,
            h=0.05,
            params={"friction": gamma},
            save="final",
        )
        np.testing.assert_allclose(batch["theta"][-1, i], single["theta"][-1, 0], atol=1e-14)


def test_diverging_trajectories_are_stopped_and_flagged_with_their_time() -> None:
    """Gradient descent θ ← θ − hθ on F = ½θ² ... with F = 5θ² and h = 0.3: |1 − 10h| = 2."""
    problem = problems.quadratic(1, A=[[10.0]])
    th0 = np.array([[1.0], [0.0], [1e-300]])
    tr = odeopt.integrate(
        zoo.gradient_flow(), problem, {"theta": th0}, steps=2000, h=0.3, blowup=1e50
    )
    assert list(tr.status) == ["diverged", "ok", "diverged"]
    # |θ_k| = 2^k: beyond 1e50 at k = 167 for θ₀ = 1 and at k = 1163 for θ₀ = 1e-300
    np.testing.assert_allclose(tr.t_stop[[0, 2]], [167 * 0.3, 1163 * 0.3])
    for arr in (tr["theta"], tr.energy, tr.loss, tr.grad_norm):
        assert np.isfinite(arr).all()  # no NaN spreads into the results
    assert abs(tr["theta"][-1, 0, 0]) < 1e50 and tr["theta"][-1, 0, 0] == tr["theta"][170, 0, 0]
    overflow = odeopt.integrate(zoo.gradient_flow(), problem, {"theta": th0[:1]}, steps=2000, h=0.3)
    assert overflow.status[0] == "diverged" and np.isfinite(overflow["theta"]).all()


def test_gtol_marks_converged_trajectories() -> None:
    tr = odeopt.integrate(
        zoo.gradient_flow(),
        problems.quadratic(2),
        {"theta": _starts(4)},
        steps=2000,
        h=0.1,
        gtol=1e-6,
    )
    assert set(tr.status) == {"converged"}
    # |∇F| = |θ₀|·0.9^k < 1e-6
    k = np.ceil(np.log(1e-6 / np.linalg.norm(_starts(4), axis=1)) / np.log(0.9))
    np.testing.assert_allclose(tr.t_stop, k * 0.1)
    assert (tr.grad_norm[-1] < 1e-6).all()


def test_switching_event_changes_the_parameter_per_trajectory() -> None:
    """Braking: friction 0.1 until F reaches 0.2, then 3.0 — equal to two runs glued at the
    event."""
    hb = zoo.heavy_ball(friction=0.1)
    F = odeopt.loss(hb.blocks[0])
    th0 = np.array([[2.0, 0.0], [0.5, 0.0]])  # the second starts below the goal: never fires
    ev = odeopt.Event(F - 0.2, action={"friction": 3.0}, direction=-1, tol=1e-13)
    tr = odeopt.integrate(
        hb, problems.quadratic(2), {"theta": th0}, t_span=(0, 4), h=0.01, scheme="rk4", events=ev
    )
    assert len(tr.events) == 1 and tr.events[0].trajectory == 0
    te = tr.events[0].time
    # reference: rk4 up to the event time with γ = 0.1, then with γ = 3.0 on the grid again
    k = int(te // 0.01)
    a = odeopt.integrate(
        hb, problems.quadratic(2), {"theta": th0[:1]}, steps=k, h=0.01, scheme="rk4", save="final"
    )
    xa = {b: a[b][-1] for b in ("theta", "p")}
    b1 = odeopt.integrate(
        hb,
        problems.quadratic(2),
        xa,
        t_span=(0, te - k * 0.01),
        steps=1,
        scheme="rk4",
        save="final",
    )
    xb = {b: b1[b][-1] for b in ("theta", "p")}
    np.testing.assert_allclose(0.5 * (xb["theta"] ** 2).sum(), 0.2, atol=1e-12)
    rest = 0.01 - (te - k * 0.01)
    c = odeopt.integrate(
        hb,
        problems.quadratic(2),
        xb,
        t_span=(0, rest),
        steps=1,
        scheme="rk4",
        params={"friction": 3.0},
        save="final",
    )
    xc = {b: c[b][-1] for b in ("theta", "p")}
    d = odeopt.integrate(
        hb,
        problems.quadratic(2),
        xc,
        steps=400 - k - 1,
        h=0.01,
        scheme="rk4",
        params={"friction": 3.0},
        save="final",
    )
    np.testing.assert_allclose(tr["theta"][-1, 0], d["theta"][-1, 0], atol=1e-12)
    never = odeopt.integrate(
        hb,
        problems.quadratic(2),
        {"theta": th0[1:]},
        t_span=(0, 4),
        h=0.01,
        scheme="rk4",
        save="final",
    )
    np.testing.assert_allclose(tr["theta"][-1, 1], never["theta"][-1, 0], atol=1e-14)


def _reference(system: odeopt.PortHamiltonian, problem: problems.Problem, x0: dict) -> dict:
    tr = odeopt.integrate(
        system, problem, x0, t_span=(0, 2), steps=4000, scheme="rk4", save="final"
    )
    return {b: tr[b][-1] for b in ("theta", "p")}


def test_euler_richardson_adapts_per_trajectory_and_meets_its_tolerance() -> None:
    hb = zoo.heavy_ball(friction=0.5)
    x0 = {"theta": _starts(6) * 0.5}
    ref = _reference(hb, problems.himmelblau(), x0)
    tr = odeopt.integrate(
        hb,
        problems.himmelblau(),
        x0,
        t_span=(0, 2),
        scheme="euler_richardson",
        rtol=1e-6,
        atol=1e-8,
        save="final",
    )
    err = np.abs(tr["theta"][-1] - ref["theta"]).max()
    assert err < 1e-4, err
    assert tr.stats["steps"] > 0
    loose = odeopt.integrate(
        hb,
        problems.himmelblau(),
        x0,
        t_span=(0, 2),
        scheme="euler_richardson",
        rtol=1e-3,
        atol=1e-5,
        save="final",
    )
    assert loose.stats["steps"] < tr.stats["steps"]


def test_event_with_a_callable_and_a_block_reset() -> None:
    hb = zoo.heavy_ball(friction=0.0)
    ev = odeopt.Event(lambda x, F, t: t - 0.505, action={"p": 0.0}, tol=1e-12)
    tr = odeopt.integrate(
        hb, problems.quadratic(1), {"theta": [[1.0]]}, steps=100, h=0.01, scheme="rk4", events=ev
    )
    np.testing.assert_allclose(tr.events[0].time, 0.505, atol=1e-11)
    # after the reset the ball restarts from rest at θ(0.505) = cos(0.505)
    np.testing.assert_allclose(tr["theta"][-1, 0, 0], np.cos(0.505) * np.cos(1 - 0.505), atol=1e-8)


def test_energy_report_lists_increases_with_step_and_time() -> None:
    hb = zoo.heavy_ball(friction=0.0)
    tr = odeopt.integrate(
        hb, problems.quadratic(1), {"theta": [[1.0]]}, steps=50, h=0.1, scheme="euler"
    )
    rep = tr.energy_report(tol=1e-12)
    assert len(rep.increases) == 50 and rep.increases[0].step == 0
    assert rep.increases[3].time == pytest.approx(0.3)
    # each Euler step multiplies H by 1 + h²
    assert rep.increases[0].size == pytest.approx(0.5 * 0.01)
    assert "increases beyond tolerance: 50" in str(rep)
    lyap = odeopt.integrate(
        zoo.heavy_ball(friction=1.0),
        problems.quadratic(1),
        {"theta": [[1.0]]},
        steps=50,
        h=0.1,
        scheme="symplectic_euler",
    )
    assert lyap.energy_report(tol=1e-12, quantity=lyap.loss, name="F").quantity == "F"


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(x0={"theta": np.zeros((3, 2, 1))}), ValueError, r"shape \(batch, n\)"),
        (dict(x0={"theta": np.full((3, 2), np.nan)}), ValueError, "must be finite"),
        (dict(x0={"q": np.zeros((3, 2))}), ValueError, "does not have"),
        (dict(x0={"p": np.zeros((3, 2))}), ValueError, "needs the position block 'theta'"),
        (dict(x0={"theta": np.zeros((3, 3))}), ValueError, "problem has dim 2"),
        (dict(x0={"theta": np.zeros((3, 2)), "p": np.zeros((2, 2))}), ValueError, "has shape"),
        (dict(h=0.3), ValueError, "not a multiple of h"),
        (dict(scheme="rk5"), ValueError, "unknown scheme"),
        (dict(backend="jax"), ValueError, "unknown backend"),
        (dict(save="some"), ValueError, "save is 'all', 'final'"),
        (dict(params={"friction": -1.0}), ValueError, "friction"),
        (dict(params={"mass": np.ones(5)}), ValueError, r"one value per trajectory, shape \(3,\)"),
        (dict(scheme="dopri9", backend="torchdiffeq"), ValueError, "torchdiffeq has methods"),
        (
            dict(scheme="rk45", events=[odeopt.Event(sp.Symbol("x"), terminal=True)]),
            ValueError,
            "per_trajectory",
        ),
    ],
)
def test_bad_input_is_named(kwargs: dict, error: type, match: str) -> None:
    call = dict(x0={"theta": np.zeros((3, 2))}, t_span=(0.0, 1.0), h=0.1)
    call.update(kwargs)
    x0 = call.pop("x0")
    with pytest.raises(error, match=match):
        odeopt.integrate(zoo.heavy_ball(), problems.rosenbrock(), x0, **call)


def test_wrong_problem_or_system_type() -> None:
    with pytest.raises(TypeError, match="value_and_grad"):
        odeopt.integrate(zoo.heavy_ball(), lambda x: x, {"theta": np.zeros((1, 2))}, steps=1, h=0.1)
    with pytest.raises(TypeError, match="PortHamiltonian"):
        odeopt.integrate(
            "heavy_ball", problems.rosenbrock(), {"theta": np.zeros((1, 2))}, steps=1, h=0.1
        )


def test_divergence_is_found_when_rows_cancel() -> None:
    """θ ← −2θ (gradient flow on ½θ², h = 3): rows ±1 both pass the bound at t = 12."""
    tr = odeopt.integrate(
        zoo.gradient_flow(),
        problems.quadratic(1),
        {"theta": [[1.0], [-1.0]]},
        steps=20,
        h=3.0,
        blowup=10.0,
    )
    assert list(tr.status) == ["diverged", "diverged"]
    np.testing.assert_allclose(tr.t_stop, [12.0, 12.0])
    np.testing.assert_allclose(tr["theta"][-1, :, 0], [-8.0, 8.0])
    # adaptive: a row whose coordinates cancel is caught too, with a state within the bound
    tr = odeopt.integrate(
        zoo.gradient_flow(),
        problems.quadratic(2, A=-np.eye(2)),
        {"theta": [[1.0, -1.0]]},
        t_span=(0, 10),
        scheme="heun",
        blowup=100.0,
    )
    assert tr.status[0] == "diverged" and np.abs(tr["theta"][-1]).max() <= 100


def test_gtol_with_an_adaptive_scheme_and_refused_by_solvers() -> None:
    tr = odeopt.integrate(
        zoo.gradient_flow(),
        problems.quadratic(2),
        {"theta": _starts(3)},
        t_span=(0, 30),
        scheme="euler_richardson",
        gtol=1e-3,
        save="final",
    )
    assert set(tr.status) == {"converged"} and (tr.grad_norm[-1] < 1e-3).all()
    with pytest.raises(ValueError, match="gtol"):
        odeopt.integrate(
            zoo.gradient_flow(),
            problems.quadratic(2),
            {"theta": _starts(3)},
            t_span=(0, 1),
            scheme="rk45",
            gtol=1e-3,
        )


def test_a_switch_does_not_hide_an_earlier_event() -> None:
    hb = zoo.heavy_ball(friction=0.0)
    p = hb.block("p")
    reset = odeopt.Event(lambda x, F, t: t - 0.505, action={"p": 0.46}, name="reset")
    watch = odeopt.Event(p - 0.45, direction=-1, once=False, name="watch")
    for order in ([reset, watch], [watch, reset]):
        tr = odeopt.integrate(
            hb,
            problems.quadratic(1),
            {"theta": [[1.0]]},
            steps=60,
            h=0.01,
            scheme="rk4",
            events=order,
        )
        assert sorted(e.name for e in tr.events) == ["reset", "watch"]


def test_callable_event_shapes() -> None:
    F = odeopt.loss(zoo.gradient_flow().blocks[0])
    th0 = np.array([[1.0], [2.0]])
    # t arrives as one value per row; a scalar result is broadcast
    ev = odeopt.Event(lambda x, F, t: t - 0.555, terminal=True)
    tr = odeopt.integrate(
        zoo.gradient_flow(), problems.quadratic(1), {"theta": th0}, steps=100, h=0.01, events=ev
    )
    np.testing.assert_allclose(tr.t_stop, [0.555, 0.555], atol=1e-9)
    bad = odeopt.Event(lambda x, F, t: np.zeros(3), terminal=True)
    with pytest.raises(ValueError, match=r"one value per trajectory, \(2,\)"):
        odeopt.integrate(
            zoo.gradient_flow(), problems.quadratic(1), {"theta": th0}, steps=3, h=0.01, events=bad
        )
    # one Event object serves several systems
    goal = odeopt.Event(F - 0.1, terminal=True)
    for system in (zoo.gradient_flow(), zoo.heavy_ball()):
        tr = odeopt.integrate(
            system, problems.quadratic(1), {"theta": th0}, t_span=(0, 10), h=0.01, events=goal
        )
        assert set(tr.status) == {"event"}
    del F


def test_scipy_batched_failure_does_not_stop_healthy_rows() -> None:
    """θ' = 4θ³ from θ₀ = 1 blows up at t = 1/8; from 0.01 it does not."""
    problem = problems.from_functions(
        lambda th: -(th**4).sum(-1), dim=1, grad=lambda th: -4 * th**3
    )
    tr = odeopt.integrate(
        zoo.gradient_flow(), problem, {"theta": [[1.0], [0.01]]}, t_span=(0, 1), scheme="rk45"
    )
    assert list(tr.status) == ["diverged", "ok"]
    exact = 0.01 / np.sqrt(1 - 8 * 0.01**2 * 1.0)
    np.testing.assert_allclose(tr["theta"][-1, 1, 0], exact, rtol=1e-5)


def test_h_min_gives_up_on_an_impossible_tolerance() -> None:
    ctrl = odeopt.schemes.StepController(rtol=1e-12, atol=1e-14, h_min=0.05)
    tr = odeopt.integrate(
        zoo.gradient_flow(),
        problems.quadratic(1, A=[[50.0]]),
        {"theta": [[1.0]]},
        t_span=(0, 1),
        scheme="euler_richardson",
        controller=ctrl,
    )
    assert tr.status[0] == "stalled"  # the tolerance cannot be met at h_min
    assert np.isfinite(tr["theta"]).all() and tr.t_stop[0] < 0.1


def test_nesterov_ode_meets_its_rate_bound_and_accelerates():
    """θ'' + 3/(t + t₀)θ' + ∇F = 0 on an ill-conditioned convex quadratic: F − F* stays under
    (t₀²(F₀ − F*) + 2|θ₀ − θ*|²)/(t + t₀)² at every saved time, and beats gradient flow."""
    dim, t0, T = 10, 0.5, 40.0
    problem = problems.quadratic(dim, A=np.diag(np.logspace(-3, 0, dim)))
    x0 = np.random.default_rng(0).uniform(-1, 1, (16, dim))
    tr = odeopt.integrate(
        zoo.nesterov(t0=t0), problem, {"theta": x0}, t_span=(0, T), h=0.01, scheme="rk4", save=20
    )
    F0 = problem.value_and_grad(x0)[0]
    bound = (t0**2 * F0 + 2 * (x0**2).sum(1)) / (tr.t[:, None] + t0) ** 2
    assert np.all(tr.loss <= bound * (1 + 1e-9))
    gf = odeopt.integrate(
        zoo.gradient_flow(),
        problem,
        {"theta": x0},
        t_span=(0, T),
        h=0.01,
        scheme="rk4",
        save="final",
    )
    assert tr.loss[-1].mean() < 0.3 * gf.loss[-1].mean()  # measured: 0.15
