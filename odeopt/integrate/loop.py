"""The one stepping loop of odeopt's schemes (numpy and torch), fixed-step and adaptive.

:func:`step_loop` asks a step policy for the next step of the working rows, runs the stop
pipeline (:mod:`.stops`) on it, and hands it back to the policy, which keeps it and saves:

- :class:`FixedSteps`: every row steps t₀ + k·h → t₀ + (k+1)·h together, n steps, saving at
  the chosen step indices;
- :class:`AdaptiveSteps`: each row has its own t and h and lands on each saved time. A step
  is accepted when the controller's err ≤ 1, and h ← h·factor(err) either way (within
  [h_min, h_max]); a step whose error estimate is not finite is rejected and h divided by 10.
  With ``gtol``, a scheme that reports its Euler predictor x + h·f(x) (``info["predictor"]``:
  the reference code's test for Euler–Richardson GD) stops a row there as ``"converged"``
  when |∇F| < gtol at the predictor.

Both record, per row, the accepted steps to the state it keeps (``Trajectory.steps``): a
fixed-step row that runs to the end made n steps, one stopped by a step made the steps
before it, plus that step when it keeps the state after it (converged); the count is
derived from the step index at the stop and at the saves, not incremented per row and step.
The adaptive loop counts each row's accepted steps (a stop at the Euler predictor counts
as one) and records the size of the last one before each save that was not cut short to
land on a saved time (``Trajectory.step_size``).
With ``SaveAt(best=True)`` both fold F at every accepted state into the row's best value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..arrays import scatter, take
from ..schemes.adaptive import StepController
from ..schemes.base import Scheme
from .run import Run, StepState
from .stops import Convergence, Domain

__all__ = ["AdaptiveSteps", "FixedSteps", "step_loop"]


def step_loop(run: Run, policy: Any, stops: Sequence[Any]) -> None:
    """Step ``run`` with ``policy`` until it is done, running ``stops`` after every step."""
    policy.begin(run)
    while (step := policy.next(run)) is not None:
        for stop in stops:
            stop(run, step)
        policy.done(run, step)
    policy.end(run)


class FixedSteps:
    """n steps of size h from t0 for every row, saving after the steps in ``save_at``."""

    def __init__(
        self,
        scheme: Scheme,
        t0: float,
        h: float,
        n: int,
        save_at: Sequence[int],
        domain: Domain | None,
        bar: Any,
    ) -> None:
        self.scheme, self.t0, self.h, self.n = scheme, t0, h, n
        self.save_at = list(save_at)
        self.save_set = set(save_at)
        self.domain = domain
        self.bar = bar
        self.tick = max(1, n // 200)
        self.k = 0

    def begin(self, run: Run) -> None:
        run.counts = True
        run.save(self.t0)
        if self.domain is not None:  # a start outside stops at t₀
            self.domain.start(run, self.t0, adaptive=False)

    def next(self, run: Run) -> StepState | None:
        if self.k >= self.n or not len(run.active):
            return None
        k, h = self.k, self.h
        t_old, t_new = self.t0 + k * h, self.t0 + (k + 1) * h
        st = self.scheme.step(run.field, run.x, t_old, h)
        return StepState(run, run.x, st.x, t_old, t_new, st.info, k, h)

    def done(self, run: Run, step: StepState) -> None:
        run.x = step.x_new
        run.stats["steps"] += 1
        self.k += 1
        if run.best is not None:
            run.fold_best(run.x, step.t_new)
        if self.k in self.save_set:
            if len(run.active):
                run.save(step.t_new, self.k)
            else:
                run.skip_save()
        if self.bar is not None and self.k % self.tick == 0:
            self.bar.update(self.tick)

    def end(self, run: Run) -> None:
        run.steps[run.active] = self.k  # the rows that ran to the end (or were never stopped)
        while run.saved < len(self.save_at):  # every trajectory stopped early
            run.skip_save()


class AdaptiveSteps:
    """Per-row steps from ``grid[0]`` landing on each time of ``grid``, controlled by
    ``controller`` (the pipeline's :class:`~.stops.MaxSteps` bounds the steps per row)."""

    def __init__(
        self,
        scheme: Scheme,
        grid: np.ndarray,
        h0: float,
        controller: StepController,
        gtol: float | None,
        domain: Domain | None,
        bar: Any,
    ) -> None:
        self.scheme, self.grid, self.h0, self.controller = scheme, grid, h0, controller
        self.convergence = Convergence(gtol) if gtol is not None else None
        self.domain = domain
        self.bar = bar
        self.j = 1  # the saved time being stepped to

    def begin(self, run: Run) -> None:
        t0 = float(self.grid[0])
        c = self.controller
        h0 = float(np.clip(self.h0, c.h_min, c.h_max))
        run.counts = True
        run.record_step_size(h0)
        run.save(np.full(len(run.active), t0))
        if self.domain is not None:  # a start outside stops at t₀
            self.domain.start(run, t0, adaptive=True)
        m = len(run.active)
        run.per_row.update(
            t=np.full(m, t0),
            t_old=np.full(m, t0),
            h=np.full(m, h0),
            n=np.zeros(m, dtype=np.int64),
            rejected_at=np.full(m, np.inf),
            accepted=np.zeros(m, dtype=np.int64),
            accepted_old=np.zeros(m, dtype=np.int64),
            h_accepted=np.full(m, h0),
            h_accepted_old=np.full(m, h0),
        )

    def next(self, run: Run) -> StepState | None:
        while self.j < len(self.grid):
            target = float(self.grid[self.j])
            if len(run.active):
                todo = run.per_row["t"] < target - 1e-12 * max(1.0, abs(target))
                if todo.any():
                    step = self._attempt(run, todo, target)
                    if step is not None:
                        return step
                    continue
                pr = run.per_row
                run.save(pr["t"], pr["accepted"], pr["h_accepted"])
            else:
                run.skip_save()
            if self.bar is not None:
                self.bar.update(1)
            self.j += 1
        return None

    def _stop(
        self, run: Run, mask: np.ndarray, status: str, state: dict, t_at: Any, h_last: Any
    ) -> None:
        """Stop rows ``mask`` at ``state`` after one more accepted step, of size ``h_last``."""
        steps = run.per_row["accepted"][mask] + 1
        keep = run.stop(mask, status, t_at, state, t_at, steps, h_last)
        run.x = take(run.x, keep)

    def _attempt(self, run: Run, todo: np.ndarray, target: float) -> StepState | None:
        """One step of the rows ``todo`` (capped at ``target``); None when none is left."""
        a, pr, c = run.a, run.per_row, self.controller
        pr["n"][todo] += 1
        idx = run.index(todo)
        xs = take(run.x, idx)
        hs = np.minimum(pr["h"][todo], target - pr["t"][todo])
        sub = run.field.subset(idx)
        st = self.scheme.step(sub, xs, run.time(pr["t"][todo]), run.time(hs))
        x_step, error = st.x, st.error
        pred = st.info.get("predictor")
        if self.convergence is not None and pred is not None:
            pconv = self.convergence.met(run, sub, pred, run.time(pr["t"][todo] + hs))
            if pconv.any():  # stopped at the predictor, which meets gtol
                mask = np.zeros(len(todo), dtype=bool)
                mask[np.flatnonzero(todo)[pconv]] = True
                t_at = pr["t"][mask] + hs[pconv]
                run.stats["steps"] += int(pconv.sum())  # a step to the predictor, accepted
                pred_rows = take(pred, run.index(pconv))
                self._stop(run, mask, "converged", pred_rows, t_at, hs[pconv])
                sel = run.index(~pconv)
                x_step, xs = take(x_step, sel), take(xs, sel)
                error = {b: e[sel] for b, e in error.items()}
                hs, todo = hs[~pconv], todo[~mask]
                if not todo.any():
                    return None
        rows = np.flatnonzero(todo)
        err = a.to_numpy(c.error_norm(a.module, xs, x_step, error)).astype(float)
        fac = np.asarray(c.factor(err, self.scheme.error_order), dtype=float)
        finite_err = np.isfinite(err)
        with np.errstate(invalid="ignore"):
            acc = finite_err & (err <= 1.0)
        run.stats["steps"] += int(acc.sum())
        run.stats["rejected"] += int((~acc).sum())
        acc_rows = rows[acc]
        new_x = scatter(a, run.x, run.index(acc_rows), take(x_step, run.index(acc)))
        pr["t_old"] = pr["t"].copy()
        pr["t"][acc_rows] += hs[acc]
        pr["accepted_old"] = pr["accepted"].copy()
        pr["accepted"][acc_rows] += 1
        pr["h_accepted_old"] = pr["h_accepted"].copy()
        # the step size history: accepted steps of the controller's size, not the ones cut
        # short to land on a saved time (those say where the saves are, not what h is)
        full = acc & (hs >= pr["h"][rows])
        pr["h_accepted"][rows[full]] = hs[full]
        fac = np.where(finite_err & np.isfinite(fac), fac, 0.1)
        pr["h"][rows] = np.clip(hs * fac, c.h_min, c.h_max)
        pr["rejected_at"] = np.full(len(pr["t"]), np.inf)
        pr["rejected_at"][rows[~acc]] = hs[~acc]
        info: dict[str, Any] = {}
        residual = st.info.get("residual")
        if residual is not None:  # per working row: only accepted steps count
            r = np.zeros(len(pr["t"]))
            res = np.asarray(a.to_numpy(residual), dtype=float).reshape(-1)
            if res.size in (1, len(rows)):
                r[acc_rows] = np.broadcast_to(res, (len(rows),))[acc]
            info["residual"] = r
        return StepState(run, run.x, new_x, None, None, info)

    def done(self, run: Run, step: StepState) -> None:
        run.x = step.x_new
        if run.best is not None:  # a rejected row's state is unchanged: min over it again
            run.fold_best(run.x, run.per_row["t"])

    def end(self, run: Run) -> None:
        run.steps[run.active] = run.per_row["accepted"]
        while run.saved < len(self.grid):
            run.skip_save()
