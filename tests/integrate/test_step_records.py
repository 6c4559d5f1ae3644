"""Trajectory.steps, Trajectory.step_size and Trajectory.best_loss.

``steps`` counts the accepted steps to the state a trajectory keeps: n for one that ran to
the end, k + 1 for one that converged in step k (it keeps the state after the step), k for
one that diverged or met an event in step k (it keeps the state before the step, or the
located one within it); numpy, torch and numba agree exactly. Adaptive schemes count their
accepted steps and record the last accepted step size before each saved point; ``best_loss``
(``SaveAt(best=True)``) is min F over the start and every accepted state.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import odeopt as oo
from odeopt import problems, zoo

HB = zoo.heavy_ball(mass=1.0, friction=0.5)
GF = zoo.gradient_flow()
HIMMELBLAU = problems.himmelblau()
#: F reaching 1 from above, terminal
F_DOWN = oo.Event(HB.loss - 1, terminal=True, direction=-1, name="F = 1")


def _starts() -> np.ndarray:
    x = np.random.default_rng(3).uniform(-4, 4, (12, 2))
    x[0] = [40.0, 40.0]  # diverges with h = 0.1 (blowup 1e6) after a few steps
    x[1] = [3.0, 2.0]  # the minimum: converges in step 0 with gtol
    return x


#: (keywords, the statuses that must occur): no stop, gtol, divergence, an event
CASES = {
    "none": ({"steps": 40, "h": 0.02}, {"ok"}),
    "gtol": ({"steps": 300, "h": 0.1, "gtol": 1e-3}, {"converged", "ok"}),
    "diverged": ({"steps": 40, "h": 0.1, "blowup": 1e6}, {"diverged", "ok"}),
    "event": ({"steps": 60, "h": 0.1, "events": [F_DOWN], "blowup": 1e6}, {"event", "ok"}),
}


def _run(backend: str, case: str, save: object = "all", chunk_size: int = 1 << 17, x=None):
    kw, _ = CASES[case]
    x0 = _starts() if x is None else x
    if case == "none":  # no row stops (row 0 would overflow F with the default blowup)
        x0 = x0[1:]
    if backend == "torch":
        x0 = torch.tensor(x0)
    return oo.integrate(
        HB,
        HIMMELBLAU,
        {"theta": x0},
        backend=backend,
        save=save,
        chunk_size=chunk_size,
        **kw,
    )


def _expected_steps(tr, n: int, h: float) -> np.ndarray:
    """The rule, from the status and the stop time: n for "ok"; for a stop in step k (t_stop
    in (k·h, (k+1)·h]) k + 1 where the row keeps the state after it (converged), k else."""
    k = np.ceil(np.round(np.nan_to_num(tr.t_stop) / h, 9)) - 1
    return np.where(tr.status == "ok", n, np.where(tr.status == "converged", k + 1, k)).astype(
        np.int64
    )


@pytest.mark.parametrize("case", list(CASES))
def test_fixed_steps_follow_the_rule(case: str) -> None:
    tr = _run("numpy", case)
    kw, statuses = CASES[case]
    assert statuses <= set(tr.status)
    assert tr.steps is not None and tr.steps.dtype == np.int64
    np.testing.assert_array_equal(tr.steps, _expected_steps(tr, kw["steps"], kw["h"]))
    if case == "gtol":
        assert tr.steps[1] == 1  # converged in its first step, which it keeps
    if case == "diverged":
        assert 0 < tr.steps[0] < kw["steps"]
        # it keeps the state after its last counted step: the saved state there
        np.testing.assert_array_equal(tr["theta"][-1, 0], tr["theta"][tr.steps[0], 0])
    if case == "event":
        fired = tr.status == "event"
        # an event in step k: t_stop lies within that step, after the k counted steps
        h = kw["h"]
        assert np.all(tr.steps[fired] * h < tr.t_stop[fired] + 1e-12)
        assert np.all(tr.t_stop[fired] <= (tr.steps[fired] + 1) * h + 1e-12)
    assert tr.step_size is None  # fixed steps record no step size


@pytest.mark.parametrize("case", list(CASES))
def test_numpy_torch_and_chunks_agree_on_steps_and_best(case: str) -> None:
    ref = _run("numpy", case, save=oo.SaveAt(best=True))
    for other in (
        _run("torch", case, save=oo.SaveAt(best=True)),
        _run("numpy", case, save=oo.SaveAt(every=7, best=True), chunk_size=5),
        _run("numpy", case, save=oo.SaveAt(final=True, best=True), chunk_size=1),
    ):
        np.testing.assert_array_equal(other.status, ref.status)
        np.testing.assert_array_equal(other.steps, ref.steps)
        best = other.best_loss
        if isinstance(best, torch.Tensor):
            best = best.numpy()
        np.testing.assert_allclose(best, ref.best_loss, rtol=1e-13, atol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_best_loss_is_the_min_over_the_saved_losses(case: str) -> None:
    tr = _run("numpy", case, save=oo.SaveAt(best=True))
    F = np.asarray(tr.loss)
    np.testing.assert_array_equal(tr.best_loss, F.min(0))  # every step is saved
    assert np.all(tr.best_loss <= F[-1]) and np.all(tr.best_loss <= F[0])
    trt = _run("torch", case, save=oo.SaveAt(best=True))
    assert isinstance(trt.best_loss, torch.Tensor)
    np.testing.assert_array_equal(trt.best_loss.numpy(), trt.loss.numpy().min(0))


def test_best_loss_is_not_the_final_loss_when_f_rises() -> None:
    # heavy ball overshoots: the final F is above the best one on some rows
    tr = _run("numpy", "none", save=oo.SaveAt(final=True, best=True))
    assert len(tr.t) == 2
    full = _run("numpy", "none", save="all")
    np.testing.assert_array_equal(tr.best_loss, full.loss.min(0))
    assert np.any(tr.best_loss < tr.loss[-1])


def test_best_is_none_unless_asked() -> None:
    tr = _run("numpy", "none", save="final")
    assert tr.best_loss is None and tr.steps is not None


@pytest.mark.parametrize("case", list(CASES))
def test_numba_agrees_exactly_on_steps(case: str) -> None:
    pytest.importorskip("numba")
    ref = _run("numpy", case, save=oo.SaveAt(best=True))
    for save in (oo.SaveAt(best=True), oo.SaveAt(every=7, best=True)):
        nb = _run("numba", case, save=save)
        np.testing.assert_array_equal(nb.status, ref.status)
        np.testing.assert_array_equal(nb.steps, ref.steps)
        # F from the sympy formula in the kernel, from numpy's code here: to rounding
        np.testing.assert_allclose(nb.best_loss, ref.best_loss, rtol=1e-12, atol=1e-300)
    if case == "none":  # the kernel without best= (a kernel of its own) leaves it None
        plain = _run("numba", case, save="final")
        assert plain.best_loss is None
        np.testing.assert_array_equal(plain.steps, ref.steps)


# -- adaptive schemes
def test_adaptive_steps_sum_to_the_accepted_steps() -> None:
    x0 = _starts()[2:]
    for scheme, kw in (
        ("euler_richardson", {"gtol": 1e-2, "rtol": 1e-3}),
        (oo.schemes.EulerRichardson("reference"), {"gtol": 1e-2, "rtol": 1e-3}),
        (oo.schemes.EnergyDecrease("euler"), {}),  # stalls some rows (they keep "new")
    ):
        tr = oo.integrate(GF, HIMMELBLAU, {"theta": x0}, t_span=(0, 1), h=0.05, scheme=scheme, **kw)
        assert tr.steps is not None and tr.steps.shape == (len(x0),)
        assert int(tr.steps.sum()) == tr.stats["steps"], scheme
        assert tr.step_size.shape == (len(tr.t), len(x0))
        assert np.all(tr.step_size > 0)
        chunked = oo.integrate(
            GF, HIMMELBLAU, {"theta": x0}, t_span=(0, 1), h=0.05, scheme=scheme, chunk_size=3, **kw
        )
        np.testing.assert_array_equal(chunked.steps, tr.steps)
        np.testing.assert_array_equal(chunked.step_size, tr.step_size)
        trt = oo.integrate(
            GF, HIMMELBLAU, {"theta": torch.tensor(x0)}, t_span=(0, 1), h=0.05, scheme=scheme, **kw
        )
        np.testing.assert_array_equal(trt.steps, tr.steps)
        assert isinstance(trt.step_size, np.ndarray) and trt.step_size.dtype == np.float64
        np.testing.assert_allclose(trt.step_size, tr.step_size, rtol=1e-8)  # rounding


def test_step_size_follows_the_controller_by_hand() -> None:
    """LC_EGD on F = ½x² (1-D): the Euler step x(1 − η) is accepted iff η ≤ 1; η ← 10⁴η
    after an acceptance, η/2 after a rejection, each step capped at the next saved time; the
    recorded size is that of the last accepted step not cut short by a saved time."""
    grid = [0.0, 2.0, 3.5, 4.0]
    h0 = 1.6
    x0 = np.array([[1.0], [-2.5]])
    tr = oo.integrate(
        GF,
        problems.quadratic(1),
        {"theta": x0},
        t_span=(0, 4),
        h=h0,
        scheme=oo.schemes.EnergyDecrease("euler"),
        save=oo.SaveAt(t=grid, best=True),
    )
    t, h, accepted, rejected, sizes, last, cut = 0.0, h0, 0, 0, [h0], h0, 0
    for target in grid[1:]:
        while t < target - 1e-12 * max(1.0, abs(target)):
            hs = min(h, target - t)
            assert abs(hs - 1) > 1e-6  # the test η ≤ 1 is then decided away from rounding
            if hs < 1:
                if hs == h:  # a step of the controller's size, not one cut to land
                    last = hs
                else:
                    cut += 1
                t, h, accepted = t + hs, hs * 1e4, accepted + 1
            else:
                h, rejected = hs * 0.5, rejected + 1
        sizes.append(last)
    assert rejected >= 2 and cut >= 1  # the sequence goes through rejections and cut steps
    assert len(set(sizes)) > 2
    assert list(tr.status) == ["ok", "ok"]
    np.testing.assert_array_equal(tr.steps, [accepted, accepted])
    np.testing.assert_array_equal(tr.step_size, np.array([sizes, sizes]).T)
    assert tr.stats["rejected"] == 2 * rejected
    # F decreases along LC_EGD: the best F is the final one
    np.testing.assert_allclose(tr.best_loss, tr.loss[-1], rtol=0, atol=0)


def test_adaptive_stopped_rows_keep_their_step_size() -> None:
    x0 = _starts()[1:6]
    tr = oo.integrate(
        GF,
        HIMMELBLAU,
        {"theta": x0},
        t_span=(0, 20),
        h=0.05,
        scheme="euler_richardson",
        gtol=1e-6,
        save=oo.SaveAt(best=True),
    )
    conv = np.flatnonzero(tr.status == "converged")
    assert len(conv)
    for j in conv:
        after = np.flatnonzero(tr.t > tr.t_stop[j])
        assert len(after) > 1
        assert np.all(tr.step_size[after, j] == tr.step_size[after[0], j])
    np.testing.assert_array_equal(tr.best_loss, np.minimum(tr.loss.min(0), tr.best_loss))
    assert np.all(tr.best_loss <= tr.loss[-1])


# -- refusals
@pytest.mark.parametrize(
    ("backend", "scheme", "x0"),
    [("scipy", "rk45", np.ones((2, 2))), ("torchdiffeq", "dopri5", torch.ones(2, 2))],
)
def test_solvers_refuse_best_and_count_no_steps(backend: str, scheme: str, x0) -> None:
    with pytest.raises(
        ValueError,
        match=rf"backend '{backend}' does not run SaveAt\(best=True\).*use backend='numpy' or "
        r"'torch'.*'numba'",
    ):
        oo.integrate(
            GF,
            HIMMELBLAU,
            {"theta": x0},
            t_span=(0, 1),
            scheme=scheme,
            backend=backend,
            save=oo.SaveAt(final=True, best=True),
        )
    tr = oo.integrate(GF, HIMMELBLAU, {"theta": x0}, t_span=(0, 1), scheme=scheme, backend=backend)
    assert tr.steps is None and tr.step_size is None and tr.best_loss is None


def test_saveat_best_is_a_bool() -> None:
    with pytest.raises(TypeError, match=r"SaveAt.best is True or False, got best='yes'"):
        oo.SaveAt(best="yes")
    assert oo.SaveAt(every=3, best=True).best
