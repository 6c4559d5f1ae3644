"""What the batch backends (numpy, torch, scipy, torchdiffeq) share: the starts and
parameters as arrays of the backend's library, the saved times, chunks and the assembly.

A :class:`BatchBackend` implements :meth:`~BatchBackend.run_chunk` only: fill one
:class:`~odeopt.integrate.run.Run` (a chunk of at most ``chunk_size`` trajectories) along
the :class:`Plan`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..inputs import prepare_params, prepare_starts, stored_energy, switches
from ..options import _save_steps, _time_grid, adaptive_grid
from ..run import Run, assemble
from . import Backend

if TYPE_CHECKING:
    from ...schemes.base import Scheme
    from ..events import Event
    from ..options import Request
    from ..trajectory import Trajectory

__all__ = ["BatchBackend", "Plan"]


@dataclass
class Plan:
    """A request made concrete: the scheme (None for a solver's own method), the events
    (with the system's switches), the saved times ``grid`` and, for fixed steps, the steps."""

    scheme: Scheme | None
    method: Any
    events: list[Event]
    grid: np.ndarray
    t0: float
    t1: float
    fixed: bool
    steps: int | None = None
    h: float | None = None
    save_at: list[int] | None = None
    bar: Any = None


class BatchBackend(Backend):
    """A backend that runs chunks of the batch through :meth:`run_chunk`."""

    def run_chunk(self, run: Run, request: Request, plan: Plan) -> None:
        raise NotImplementedError

    def run(self, request: Request) -> Trajectory:
        resolved = self.check(request)
        scheme = resolved if not isinstance(resolved, str) else None
        method = resolved if isinstance(resolved, str) else None
        req, system = request, request.system
        stop = req.stop
        dim = getattr(req.problem, "dim", None)
        x = prepare_starts(system, req.x0, self.arrays, dim, stop.blowup)
        ref = next(iter(x.values()))
        B = ref.shape[0]
        p = prepare_params(system, req.params, B, self.arrays, ref)
        t_start = float(req.t_span[0]) if req.t_span is not None else 0.0
        events = list(req.events)
        if system.switches:
            p, switch_events = switches(system, req.problem, x, p, self.arrays, t_start)
            events = [*events, *switch_events]
        p = stored_energy(system, req.problem, x, p, self.arrays, t_start)
        plan = self.plan(req, scheme, method, events)
        if req.progress is None:
            work = B * (plan.steps or 100)
            progress = bool(getattr(sys.stderr, "isatty", lambda: False)()) and work > 5e7
        else:
            progress = req.progress
        chunks = max(1, math.ceil(B / req.chunk_size))
        if progress:
            from tqdm.auto import tqdm

            total = (plan.steps or len(plan.grid)) * chunks
            plan.bar = tqdm(total=total, unit="step", desc=system.name)
        parts: list[Run] = []
        try:
            for c in range(chunks):
                sl = slice(c * req.chunk_size, min(B, (c + 1) * req.chunk_size))
                xc = {b: v[sl] for b, v in x.items()}
                pc = {k: (v[sl] if hasattr(v, "shape") and v.ndim else v) for k, v in p.items()}
                run = Run(system, req.problem, xc, pc, self.arrays, len(plan.grid), req.save.best)
                run.offset = sl.start
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    self.run_chunk(run, req, plan)
                run.stats["evaluations"] = run.field.evaluations
                run.stats["evaluated_points"] = run.field.evaluated_points
                parts.append(run)
        finally:
            if plan.bar is not None:
                plan.bar.close()
        return assemble(parts, plan.grid, system, self.name, req.scheme)

    @staticmethod
    def plan(req: Request, scheme: Scheme | None, method: Any, events: list[Event]) -> Plan:
        """The saved times (and steps, for a fixed-step scheme) of the request."""
        fixed = scheme is not None and not scheme.adaptive
        if not fixed and req.t_span is None:
            raise ValueError("adaptive schemes and solvers need t_span=(t0, t1)")
        t0, t1, n_steps, h_fixed = _time_grid(req.t_span, req.steps, req.h if fixed else None)
        if fixed:
            assert scheme is not None
            if n_steps is None or h_fixed is None:
                raise ValueError(
                    f"the fixed-step scheme {scheme.name!r} needs a step: give h or steps"
                )
            save_at = _save_steps(req.save, n_steps)
            grid = t0 + np.asarray(save_at, dtype=float) * h_fixed
            return Plan(scheme, method, events, grid, t0, t1, True, n_steps, h_fixed, save_at)
        if events and scheme is not None:
            if req.system.switches and not req.events:
                raise ValueError(
                    f"{req.system.name} switches parameters at an event located per trajectory "
                    f"on a fixed step; the adaptive scheme {scheme.name!r} does not locate "
                    "events: pick a fixed-step scheme, e.g. 'rk4'"
                )
            raise ValueError("events are located with fixed-step schemes; pick one, e.g. 'rk4'")
        return Plan(scheme, method, events, adaptive_grid(req.save, t0, t1), t0, t1, False)
