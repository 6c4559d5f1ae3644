"""Events in the stop pipeline: crossings located per trajectory on the scheme's own step.

After a fixed step x → x′ every event's value e is compared before and after; a row where e
crossed (in the event's direction, while armed) has its crossing located by bisection on the
step τ ∈ (0, h] to within the event's ``tol``. A terminal event stops the row at the event
(status ``"event"``); otherwise the event's action switches its parameters or resets blocks,
and the rest of the step, h − τ, is taken from the event with the new values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from ..arrays import scatter, take
from .events import Event, EventRecord

if TYPE_CHECKING:
    from .field import NumericField
    from .run import Run, StepState

__all__ = ["EventHandler", "crossed"]


def crossed(v_old: np.ndarray, v_new: np.ndarray, direction: int) -> np.ndarray:
    """Per row: e went from v_old to v_new across 0 in ``direction`` (+1 up, −1 down, 0 both)."""
    up = (v_old < 0) & (v_new >= 0)
    down = (v_old > 0) & (v_new <= 0)
    return up if direction > 0 else down if direction < 0 else (up | down)


class EventHandler:
    """The events of a fixed-step run, as one stop of its pipeline."""

    def __init__(self, run: Run, events: Sequence[Event], scheme: Any) -> None:
        self.events = list(events)
        self.scheme = scheme
        self.armed = [np.ones(run.B, dtype=bool) for _ in self.events]
        self.old: list[np.ndarray | None] = [None for _ in self.events]
        run.on_drop.append(self._drop)

    def _drop(self, mask: np.ndarray) -> None:
        self.old = [None if v is None else v[~mask] for v in self.old]

    def values(
        self, run: Run, ev: Event, x: Mapping[str, Any], t: Any, field: NumericField
    ) -> np.ndarray:
        """e per row of x, in numpy, (rows,)."""
        a = run.a
        F = field.loss_and_grad(x[run.position], t)[0] if ev.needs_loss(run.system) else None
        m = next(iter(x.values())).shape[0]
        if not isinstance(ev.fn, sp.Expr):  # a callable sees t as one value per row, (m,)
            tt = np.asarray(a.to_numpy(t) if hasattr(t, "shape") else t, dtype=float)
            t = np.broadcast_to(tt.reshape(-1), (m,)).copy()
            if a.torch:
                t = a.constant(t, run.ref)
        raw = ev.values(run.system, run.library, x, F, t, field.params)
        v = np.asarray(a.to_numpy(raw) if hasattr(raw, "shape") else raw, dtype=float)
        if v.size not in (1, m):
            raise ValueError(
                f"event {ev.name!r} returned shape {v.shape}; it must give one value per "
                f"trajectory, ({m},)"
            )
        return np.broadcast_to(v.reshape(-1), (m,)).copy()

    def locate(
        self,
        run: Run,
        ev: Event,
        field: NumericField,
        x_old: dict[str, Any],
        t_old: Any,
        h: np.ndarray,
        v_old: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Bisection on the step τ ∈ (0, h] for the crossing, to within ``ev.tol``."""
        lo, hi = np.zeros(len(v_old)), np.array(h, dtype=float)
        col = run.time
        while (hi - lo).max() > ev.tol:
            mid = 0.5 * (lo + hi)
            xm = self.scheme.step(field, x_old, t_old, col(mid)).x
            vm = self.values(run, ev, xm, t_old + col(mid), field)
            c = crossed(v_old, vm, ev.direction)
            hi, lo = np.where(c, mid, hi), np.where(c, lo, mid)
        return hi, self.scheme.step(field, x_old, t_old, col(hi)).x

    @staticmethod
    def apply(ev: Event, x: dict[str, Any], params: dict[str, Any]) -> tuple[dict, dict]:
        """The event's action on the rows that fired: new parameters, reset blocks."""
        action = ev.action
        if action is None:
            return x, params
        if callable(action):
            return action(dict(x), dict(params))
        x, params = dict(x), dict(params)
        for k, v in action.items():
            if k in x:
                x[k] = x[k] * 0 + v
            elif k in params:
                params[k] = v
            else:
                raise KeyError(
                    f"event action names {k!r}, neither a block ({list(x)}) nor a parameter "
                    f"({list(params)})"
                )
        return x, params

    def __call__(self, run: Run, step: StepState) -> None:
        if not len(run.active):
            return
        t_old, h = step.t_old, step.h
        for e, ev in enumerate(self.events):
            v_old = self.old[e]
            if v_old is None:
                v_old = self.values(run, ev, step.x_old, t_old, run.field)
            v_new = self.values(run, ev, step.x_new, t_old + h, run.field)
            fired = crossed(v_old, v_new, ev.direction) & self.armed[e][run.active]
            self.old[e] = v_new
            if not fired.any():
                continue
            idx = run.index(fired)
            sub = run.field.subset(idx)
            h_rows = np.full(int(fired.sum()), h)
            x_rows = take(step.x_old, idx)
            tau, x_e = self.locate(run, ev, sub, x_rows, t_old, h_rows, v_old[fired])
            glob = run.active[fired]
            run.log += [
                EventRecord(int(i), float(t_old + tau[j]), ev.name, step.k)
                for j, i in enumerate(glob)
            ]
            if ev.once:
                self.armed[e][glob] = False
            if ev.terminal:
                # the row keeps the located state within the step: the steps before it
                n, h_last = step.count("old", fired), step.last_h("old", fired)
                keep = run.stop(fired, "event", t_old + tau, x_e, t_old + tau, n, h_last)
                step.x_new, step.x_old = take(step.x_new, keep), take(step.x_old, keep)
                continue
            # switch, then take the rest of the step from the event with the new parameters
            x_e, new = self.apply(ev, x_e, sub.params)
            m = len(run.active)
            params = dict(run.field.params)
            for k, v in new.items():
                if v is sub.params.get(k):
                    continue
                col = run.a.per_row(params[k], m, run.ref)
                col[idx] = v
                params[k] = col
            run.field.params = params
            sub = run.field.subset(idx)
            rest = self.scheme.step(sub, x_e, t_old + run.time(tau), run.time(h - tau)).x
            step.x_new = scatter(run.a, step.x_new, idx, rest)
            self.old[e] = self.values(run, ev, step.x_new, t_old + h, run.field)
            for j in range(e):  # earlier events saw the state before this switch
                self.old[j] = None
