"""``backend="torchdiffeq"``: torchdiffeq's ``odeint`` methods on the batch (torch tensors).

One step size is shared by the whole batch, so a row that must stop is frozen instead (zero
derivative) and flagged afterwards, with the definitions of :mod:`odeopt.integrate.stops`:
a state beyond ``blowup`` or a non-finite derivative → ``"diverged"`` with the last state
within the bound (:func:`~..stops.beyond`); a level set's domain (:class:`~..stops.Domain`)
→ ``"domain"`` once V ≤ ε^⅜·V(x₀), ε the dtype's epsilon (t_stop: the first saved time at
the edge, or the last one inside when a fixed-grid step jumped past it). Events, gtol,
switches and ``SaveAt(best=True)`` (odeint's accepted states are not seen) are refused;
``Trajectory.steps`` is None (the batch shares one step sequence, odeint does not report it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...arrays import torch_arrays
from ..stops import Domain, beyond
from . import register
from .batch import BatchBackend, Plan

if TYPE_CHECKING:
    from ..options import Request
    from ..run import Run

__all__ = ["TorchdiffeqBackend", "torchdiffeq_methods"]


def torchdiffeq_methods() -> list[str]:
    """The method names torchdiffeq.odeint accepts."""
    from torchdiffeq._impl.odeint import SOLVERS

    return sorted(SOLVERS)


class TorchdiffeqBackend(BatchBackend):
    """torchdiffeq's methods (adaptive and fixed-grid) on torch tensors."""

    name = "torchdiffeq"
    arrays: ClassVar[str] = "torch"
    features = frozenset({"level_sets"})

    def methods(self) -> list[str]:
        return torchdiffeq_methods()

    def check(self, request: Request) -> str:
        names = torchdiffeq_methods()
        if request.method not in names:
            raise ValueError(f"torchdiffeq has methods {names}, got {request.scheme!r}")
        if request.events or request.stop.gtol is not None:
            raise ValueError(
                "events and gtol are not supported with torchdiffeq; use backend='torch'"
            )
        if request.save.best:  # odeint's accepted states are not seen, only its output
            raise self.refusal("best")
        if request.system.switches:
            raise ValueError(
                f"{request.system.name} switches parameters at an event located per "
                "trajectory; integrate it with an odeopt fixed-step scheme (e.g. 'rk4'), not "
                "a torchdiffeq solver (backend='numpy' or 'torch')"
            )
        return request.method

    def run_chunk(self, run: Run, request: Request, plan: Plan) -> None:
        ctrl = request.controller
        rtol, atol = (ctrl.rtol, ctrl.atol) if ctrl is not None else (request.rtol, request.atol)
        _solve(run, plan.method, plan.grid, rtol, atol, request.h, request.stop.blowup)


def _solve(
    run: Run, method: str, grid: np.ndarray, rtol: float, atol: float, h: Any, blowup: float
) -> None:
    import torch
    from torchdiffeq import odeint
    from torchdiffeq._impl.odeint import SOLVERS
    from torchdiffeq._impl.solvers import FixedGridODESolver

    names = run.names
    field = run.field
    y0 = tuple(run.x[b] for b in names)
    ref = y0[0]
    # a level set's domain (BBI: V = F − ΔV > 0): the flow reaches V = 0 in finite time,
    # singular there, so a row whose V is at most ε^⅜·V(x₀) is frozen (zero derivative):
    # dopri5's steps, shared by the batch, stall closer to the edge (at 1e-12·V₀ they do).
    # ECDSep with F₀ = min F reaches V → 0 by converging: such rows stop early as "domain".
    domain = Domain.of(run.system, "torch")
    margin = None
    if domain is not None:
        v0 = domain.numpy_values(run, run.x, grid[0])
        rel = torch.finfo(ref.dtype).eps ** 0.375  # 1.3e-6 in float64, 2.6e-3 in float32
        margin = torch.as_tensor(rel * v0, dtype=ref.dtype, device=ref.device).reshape(-1, 1)
        margin = torch.clamp(margin, min=torch.finfo(ref.dtype).tiny)

    def v_of(xs: dict[str, Any], t: Any) -> Any:  # V per row, (batch, 1)
        assert domain is not None
        v = domain.values(field, xs, t)
        return torch.as_tensor(v, dtype=ref.dtype, device=ref.device).reshape(-1, 1)

    def func(t: Any, y: tuple[Any, ...]) -> tuple[Any, ...]:
        # rows are independent but share dopri5's step: a row whose state passed the blow-up
        # bound, or whose derivative is not finite, is frozen (zero derivative) so that it
        # cannot stall the others; it is flagged "diverged" afterwards with its last state
        # within the bound
        xs = dict(zip(names, y, strict=True))
        dx = field(xs, t)
        live = None
        for b in names:
            ok = torch.isfinite(dx[b]).all(-1, keepdim=True) & (
                y[names.index(b)].abs().amax(-1, keepdim=True) <= blowup
            )
            live = ok if live is None else live & ok
        if margin is not None:
            live = live & (v_of(xs, t) > margin)
        if bool(live.all()):
            return tuple(dx[b] for b in names)
        return tuple(torch.where(live, dx[b], torch.zeros_like(dx[b])) for b in names)

    tt = torch.as_tensor(grid, dtype=ref.dtype, device=ref.device)
    fixed = issubclass(SOLVERS[method], FixedGridODESolver)
    if fixed and h is None:
        raise ValueError(f"torchdiffeq's fixed-grid method {method!r} needs a step: give h")
    options = {"step_size": h} if fixed else ({"first_step": h} if h is not None else None)
    try:
        ys = odeint(func, y0, tt, method=method, rtol=rtol, atol=atol, options=options)
    except AssertionError as exc:  # torchdiffeq signals a collapsed step this way
        raise FloatingPointError(
            f"torchdiffeq's {method} failed ({exc}); one step size is shared by the whole "
            "batch, and it collapsed on rows still within blowup (a stiff or singular "
            f"trajectory, or one blowing up in finite time before |x| reaches blowup = "
            f"{blowup:g}): give a smaller blowup= (rows beyond it are frozen and flagged "
            "'diverged'), or use backend='torch' with an odeopt scheme, or scipy per trajectory"
        ) from exc
    k = len(grid)
    Y = torch.stack(ys, 1)  # (time, blocks, batch, n)
    finite_np = ~beyond(torch_arrays(), [Y[:, i] for i in range(len(names))], blowup)
    for i, b in enumerate(names):
        run.out[b][:] = Y[:, i]
    for j in np.flatnonzero(~finite_np.all(0)):
        last = int(np.argmin(finite_np[:, j]))
        for b in names:
            run.out[b][last:, j] = run.out[b][last - 1, j] if last else run.x[b][j]
        run.status[j] = "diverged"
        run.t_stop[j] = grid[last]
    run.stats["nfev"] = run.field.evaluations
    if margin is not None:  # frozen at the domain's edge: t_stop is the first saved time there
        vs = torch.stack(
            [v_of({b: Y[s, i] for i, b in enumerate(names)}, tt[s])[:, 0] for s in range(k)]
        )
        at_edge = (vs <= margin[:, 0]).cpu().numpy()
        outside = Domain.outside(vs.cpu().numpy())
        for j in np.flatnonzero(at_edge.any(0) & (run.status == "ok")):
            s = int(np.argmax(at_edge[:, j]))
            if outside[s, j]:  # a fixed step jumped past the edge: keep the last state inside
                for b in names:
                    run.out[b][s:, j] = run.out[b][s - 1, j] if s else run.x[b][j]
                s = max(s - 1, 0)
            run.status[j] = "domain"
            run.t_stop[j] = grid[s]
    run.saved = k
    run.fill_globals(grid)


register(TorchdiffeqBackend())
