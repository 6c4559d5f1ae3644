"""``backend="scipy"``: scipy's ``solve_ivp`` methods on the flattened batch.

``scipy_mode="batched"`` solves the whole chunk as one system (one step size for all rows; if
it fails, the rows are solved one by one), ``"per_trajectory"`` one row at a time, which
events and level sets need. Stops, with the definitions of :mod:`odeopt.integrate.stops`:
a saved state beyond ``blowup`` or not finite is ``"diverged"`` (:func:`~..stops.beyond`);
a terminal event is ``"event"``; a level set's domain (:class:`~..stops.Domain`) is a terminal
event at V = 1e-12·V(x₀), ``"domain"``. gtol, non-terminal events and ``SaveAt(best=True)``
(solve_ivp's accepted states are not seen) are refused; ``Trajectory.steps`` is None
(solve_ivp reports no count of accepted steps, and a batched solve shares its steps).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...arrays import NUMPY
from ..events import Event, EventRecord
from ..field import NumericField
from ..stops import Domain, beyond
from . import register
from .batch import BatchBackend, Plan

if TYPE_CHECKING:
    from ..options import Request
    from ..run import Run

__all__ = ["SCIPY_METHODS", "ScipyBackend"]

SCIPY_METHODS = {m.lower(): m for m in ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")}


class ScipyBackend(BatchBackend):
    """solve_ivp's methods (adaptive, their own error control), on numpy arrays."""

    name = "scipy"
    arrays: ClassVar[str] = "numpy"
    features = frozenset({"level_sets"})
    claims_methods = True

    def methods(self) -> list[str]:
        return list(SCIPY_METHODS)

    def check(self, request: Request) -> str:
        method, scheme = request.method, request.scheme
        if method is None or method.lower() not in SCIPY_METHODS:
            raise ValueError(
                f"backend 'scipy' runs solve_ivp's methods {list(SCIPY_METHODS)}, got {scheme!r}"
            )
        if request.save.best:  # solve_ivp's accepted states are not seen, only its output
            raise self.refusal("best")
        mode = request.scipy_mode
        if mode not in ("batched", "per_trajectory"):
            raise ValueError(f"scipy_mode is 'batched' or 'per_trajectory', got {mode!r}")
        if request.stop.gtol is not None:
            raise ValueError(
                "gtol stops trajectories of odeopt's own schemes; scipy's solvers "
                "run to t1 (use an event on |∇F| via a terminal Event instead, or "
                "backend='numpy' / 'torch')"
            )
        events = request.events
        if events and (mode == "batched" or any(not e.terminal for e in events)):
            raise ValueError(
                "with scipy, events must be terminal and scipy_mode='per_trajectory' "
                "(backend='numpy' or 'torch' locate any event)"
            )
        if request.system.switches:
            raise ValueError(
                f"{request.system.name} switches parameters at an event located per "
                "trajectory; integrate it with an odeopt fixed-step scheme (e.g. 'rk4'), not "
                "a scipy solver (backend='numpy' or 'torch')"
            )
        return SCIPY_METHODS[method.lower()]

    def run_chunk(self, run: Run, request: Request, plan: Plan) -> None:
        ctrl = request.controller
        rtol, atol = (ctrl.rtol, ctrl.atol) if ctrl is not None else (request.rtol, request.atol)
        _solve(
            run,
            plan.method,
            plan.grid,
            rtol,
            atol,
            request.scipy_mode,
            plan.events,
            request.h,
            request.stop.blowup,
        )


def _flat_field(
    system: Any, problem: Any, params: dict[str, Any], names: list[str], m: int, n: int
) -> tuple[NumericField, Any]:
    field = NumericField(system, problem, params, "numpy")

    def fun(t: float, y: np.ndarray) -> np.ndarray:
        blocks = y.reshape(len(names), m, n)
        x = {b: blocks[i] for i, b in enumerate(names)}
        dx = field(x, t)
        return np.concatenate([dx[b].reshape(-1) for b in names])

    return field, fun


def _solve(
    run: Run,
    method: str,
    grid: np.ndarray,
    rtol: float,
    atol: float,
    mode: str,
    events: Sequence[Event],
    h0: float | None,
    blowup: float,
) -> None:
    from scipy.integrate import solve_ivp

    names = run.names
    x = run.x
    B, n = x[names[0]].shape
    opts: dict[str, Any] = {"rtol": rtol, "atol": atol}
    if h0 is not None:
        opts["first_step"] = h0
    domain = Domain.of(run.system, "numpy")
    v0 = domain.numpy_values(run, x, grid[0]) if domain is not None else None
    if v0 is not None:
        mode = "per_trajectory"
    groups = [np.arange(B)] if mode == "batched" else [np.array([i]) for i in range(B)]
    for rows in groups:
        m = len(rows)
        params = {k: (v[rows] if np.ndim(v) else v) for k, v in run.field.params.items()}
        field, fun = _flat_field(run.system, run.field.objective, params, names, m, n)
        y0 = np.concatenate([x[b][rows].reshape(-1) for b in names]).astype(np.float64)
        all_events = list(events)
        if domain is not None and v0 is not None:
            row = int(rows[0])
            if Domain.outside(v0[row : row + 1])[0]:  # a start outside the domain stops at t₀
                for b in names:
                    run.out[b][:, row] = x[b][row]
                run.status[row], run.t_stop[row] = "domain", grid[0]
                continue
            all_events.append(domain.event(Domain.ADAPTIVE * float(v0[row])))
        scipy_events = [_scipy_event(run, ev, field, params, m, n) for ev in all_events]
        with np.errstate(all="ignore"):
            sol = solve_ivp(
                fun,
                (grid[0], grid[-1]),
                y0,
                method=method,
                t_eval=grid,
                events=scipy_events or None,
                **opts,
            )
        run.stats["nfev"] = run.stats.get("nfev", 0) + int(sol.nfev)
        if mode == "batched" and sol.status == -1 and len(rows) > 1:
            # one step size is shared by the flattened batch: a failing row stops all of them,
            # so solve the rows one by one instead
            _solve(run, method, grid, rtol, atol, "per_trajectory", events, h0, blowup)
            return
        Y = sol.y.T.reshape(len(sol.t), len(names), m, n)
        k = len(sol.t)
        finite = ~beyond(NUMPY, [Y[:, i] for i in range(len(names))], blowup)
        for j, row in enumerate(rows):
            good = finite[:, j]
            last = k if good.all() else int(np.argmin(good))
            for i, b in enumerate(names):
                col = Y[:last, i, j]
                run.out[b][:last, row] = col
                if last < len(grid):
                    run.out[b][last:, row] = col[-1] if last else x[b][row]
            if last < k or (sol.status == -1 and last < len(grid)):
                run.status[row] = "diverged"
                run.t_stop[row] = grid[last] if last < len(grid) else grid[-1]
            elif sol.status == 1 and k < len(grid):
                which = [len(te) > 0 for te in sol.t_events].index(True)
                t_ev = float(sol.t_events[which][0])
                ye = sol.y_events[which][0].reshape(len(names), m, n)
                for i, b in enumerate(names):
                    run.out[b][k:, row] = ye[i, j]
                run.t_stop[row] = t_ev
                if which < len(events):
                    run.status[row] = "event"
                    run.log.append(EventRecord(int(row), t_ev, events[which].name, -1))
                else:
                    run.status[row] = "domain"
    run.fill_globals(grid)


def _scipy_event(
    run: Run, ev: Event, field: NumericField, params: dict[str, Any], m: int, n: int
) -> Any:
    """The event as solve_ivp wants it: a scalar function of (t, y), terminal, directed."""
    names = run.names

    def efn(t: float, y: np.ndarray) -> float:
        blocks = y.reshape(len(names), m, n)
        xs = {b: blocks[i] for i, b in enumerate(names)}
        F = field.loss_and_grad(xs[run.position], t)[0] if ev.needs_loss(run.system) else None
        return float(np.asarray(ev.values(run.system, "numpy", xs, F, t, params)).reshape(-1)[0])

    efn.terminal = True  # type: ignore[attr-defined]
    efn.direction = ev.direction  # type: ignore[attr-defined]
    return efn


register(ScipyBackend())
