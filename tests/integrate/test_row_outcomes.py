"""Per-trajectory outcomes of ``integrate``: a failing trajectory is flagged by its own
status while the others run on (never a whole-batch failure, never NaN in the results)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import nan_beyond

import odeopt as oo
from odeopt import problems, zoo
from odeopt.integrate.trajectory import STATUSES


def test_statuses_are_listed_in_one_place() -> None:
    assert {"max_steps", "stalled", "unconverged", "nonfinite"} <= set(STATUSES)


@pytest.mark.parametrize(
    ("backend", "scheme", "h"),
    [("numpy", "euler", 0.01), ("numpy", "euler_richardson", None)],
)
def test_an_undefined_objective_flags_its_row_and_no_nan_enters(backend, scheme, h) -> None:
    """θ₀ = 1 reaches the NaN region θ > 1.5 at t = ln 1.5 ≈ 0.405; θ₀ = 0.1 never does (the
    same for every backend with rk4 or its own solver: tests/integrate/test_backends.py)."""
    x0 = np.array([[1.0], [0.1]])
    if backend in ("torch", "torchdiffeq"):
        x0 = torch.tensor(x0)
    tr = oo.integrate(
        zoo.gradient_flow(),
        nan_beyond(1.5),
        {"theta": x0},
        t_span=(0.0, 1.0),
        h=h,
        scheme=scheme,
        backend=backend,
    ).numpy()
    assert list(tr.status) == ["nonfinite", "ok"]
    for arr in (tr["theta"], tr.energy, tr.loss, tr.grad_norm):
        assert np.isfinite(np.asarray(arr)).all()
    assert 0.3 < tr.t_stop[0] < 0.41  # the last saved time where F was defined
    assert float(tr["theta"][-1, 0, 0]) <= 1.5
    np.testing.assert_allclose(tr["theta"][-1, 1, 0], 0.1 * np.e, rtol=1e-2)


def test_an_undefined_objective_at_the_start_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"not finite at the start of trajectories \[0\]"):
        oo.integrate(
            zoo.gradient_flow(), nan_beyond(1.5), {"theta": [[2.0], [0.1]]}, steps=3, h=0.1
        )


def test_one_stiff_trajectory_hits_max_steps_alone() -> None:
    """F = ½θ₁²(1 + 10⁴θ₂²): θ₁ collapses and θ₂ then barely moves, so the curvature in θ₁
    stays 1 + 10⁴θ₂². From θ₂ = 10 (curvature 10⁶) explicit Euler–Richardson is held to
    h ~ 10⁻⁶ and runs out of steps; from θ₂ = 0 it needs few. Before, the whole batch raised
    (and with the old default max_steps = 10⁷ ran for minutes)."""

    def value(th):
        return 0.5 * th[:, 0] ** 2 * (1 + 1e4 * th[:, 1] ** 2)

    def grad(th):
        c = 1 + 1e4 * th[:, 1] ** 2
        return np.stack([th[:, 0] * c, 1e4 * th[:, 0] ** 2 * th[:, 1]], axis=-1)

    pb = problems.from_functions(value, grad, dim=2)
    tr = oo.integrate(
        zoo.gradient_flow(),
        pb,
        {"theta": [[1.0, 10.0], [1.0, 0.0]]},
        t_span=(0.0, 1.0),
        scheme="euler_richardson",
        rtol=1e-3,
        atol=1e-6,
        max_steps=300,
    )
    assert list(tr.status) == ["max_steps", "ok"]
    assert 0 < tr.t_stop[0] < 0.01 and np.isfinite(tr["theta"]).all()
    np.testing.assert_allclose(tr["theta"][-1, 1], [np.exp(-1.0), 0.0], rtol=1e-2)


def test_dopri5_freezes_a_diverging_row_and_finishes_the_others() -> None:
    """θ' = 4θ³ (F = −θ⁴) blows up at t = 1/8 from θ₀ = 1; from 0.01 it does not. dopri5's
    step is shared by the batch: before, the blow-up collapsed it and raised for all rows."""
    pb = problems.from_functions(lambda th: -(th**4).sum(-1), lambda th: -4 * th**3, dim=1)
    tr = oo.integrate(
        zoo.gradient_flow(),
        pb,
        {"theta": torch.tensor([[1.0], [0.01]], dtype=torch.float64)},
        t_span=(0.0, 1.0),
        scheme="dopri5",
        backend="torchdiffeq",
        blowup=1e6,
    ).numpy()
    assert list(tr.status) == ["diverged", "ok"]
    assert 0.12 <= tr.t_stop[0] <= 0.14 and np.abs(tr["theta"][:, 0]).max() <= 1e6
    exact = 0.01 / np.sqrt(1 - 8 * 0.01**2 * 1.0)
    np.testing.assert_allclose(tr["theta"][-1, 1, 0], exact, rtol=1e-5)


class _HalfSolved(oo.schemes.Scheme):
    """Euler that reports its (fictitious) implicit solve as failed on rows with θ > 1."""

    name = "half_solved"
    order = 1
    implicit = True
    tol = 1e-12

    def step(self, f, x, t, h):
        new = {b: x[b] + h * v for b, v in f(x, t).items()}
        residual = np.where(np.asarray(x["theta"])[:, 0] > 1.0, 1e-3, 0.0)
        return oo.schemes.Step(new, info={"residual": residual})


def test_a_failed_implicit_solve_stops_its_row_as_unconverged() -> None:
    tr = oo.integrate(
        zoo.gradient_flow(),
        problems.quadratic(1),
        {"theta": [[2.0], [0.5]]},
        steps=100,
        h=0.01,
        scheme=_HalfSolved(),
    )
    assert list(tr.status) == ["unconverged", "ok"]
    assert tr.t_stop[0] == pytest.approx(0.01)
    assert (tr["theta"][:, 0, 0] == 2.0).all()  # never moved: no step was solved
    assert tr.stats["unconverged_solves"] == 1


# ------------------------------------------------------------ values where a row stops
def _sqrt_problem():
    """F = Σ√θ: undefined (NaN) for θ < 0, which a large gradient step jumps into."""
    return problems.from_functions(
        lambda th: np.sqrt(th).sum(-1), lambda th: 0.5 / np.sqrt(th), dim=1
    )


@pytest.mark.parametrize("save", ["final", 2])
def test_a_row_stopping_where_f_is_undefined_keeps_its_last_saved_values(save) -> None:
    """Between saved points a row can stop (here: diverged, its next state NaN) at a state
    where F is undefined; it keeps the last saved state instead of putting NaN in the arrays."""
    with np.errstate(invalid="ignore", divide="ignore"):
        tr = oo.integrate(
            zoo.gradient_flow(),
            _sqrt_problem(),
            {"theta": [[0.01], [4.0]]},
            steps=5,
            h=1.0,
            scheme="euler",
            save=save,
        )
    assert list(tr.status) == ["nonfinite", "ok"]
    assert tr.t_stop[0] == 0.0  # the last saved time where F was defined
    for arr in (tr["theta"], tr.energy, tr.loss, tr.grad_norm):
        assert np.isfinite(arr).all()


def test_an_adaptive_row_stopping_where_f_is_undefined_keeps_its_last_saved_values() -> None:
    with np.errstate(invalid="ignore", divide="ignore"):
        tr = oo.integrate(
            zoo.gradient_flow(),
            _sqrt_problem(),
            {"theta": [[0.01], [4.0]]},
            t_span=(0.0, 1.0),
            h=3.0,
            rtol=10.0,
            atol=10.0,
            scheme="euler_richardson",
        )
    assert tr.status[0] == "nonfinite" and tr.status[1] == "ok"
    for arr in (tr["theta"], tr.energy, tr.loss, tr.grad_norm):
        assert np.isfinite(arr).all()


def test_a_huge_finite_gradient_is_not_called_undefined() -> None:
    """|∇F| = 4e20 is finite in float32, though Σg² overflows: the start is accepted, and the
    row that then overflows F to inf is "diverged" (a blow-up), not "nonfinite"."""
    x0 = torch.tensor([[1e6, 0.0], [1.0, 1.0]], dtype=torch.float32)
    tr = oo.integrate(
        zoo.gradient_flow(), problems.rosenbrock(), {"theta": x0}, steps=2, h=1e-3
    ).numpy()
    assert tr.grad_norm[0, 0] == pytest.approx(4e20, rel=1e-3)
    assert list(tr.status) == ["diverged", "ok"]


def test_the_start_error_names_the_trajectory_across_chunks() -> None:
    x0 = np.array([[1.0], [0.5], [0.2], [2.0]])  # the last start lies where F is NaN
    with pytest.raises(ValueError, match=r"start of trajectories \[3\]"):
        oo.integrate(
            zoo.gradient_flow(), nan_beyond(1.5), {"theta": x0}, steps=2, h=0.1, chunk_size=2
        )


def test_a_state_overflowing_to_inf_is_diverged_even_when_blowup_squared_overflows() -> None:
    """blowup = 1.5e308: blowup² is inf, so the quick Σx² test cannot bound the rows; a state
    that overflows to inf (1e308 + 1e308) is still "diverged" with its last finite state."""
    big = problems.from_functions(
        lambda th: 0.0 * th.sum(-1), lambda th: np.full_like(th, -1e308), dim=1
    )
    tr = oo.integrate(
        oo.zoo.gradient_flow(),
        big,
        {"theta": np.array([[1.0], [0.0]])},
        steps=4,
        h=1.0,
        scheme="euler",
        blowup=1.5e308,
    )
    assert tr.status.tolist() == ["diverged", "diverged"]
    np.testing.assert_array_equal(tr.t_stop, [2.0, 2.0])
    assert np.all(tr["theta"][1:] == 1e308)
