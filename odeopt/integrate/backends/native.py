"""``backend="numpy"`` and ``backend="torch"``: odeopt's own schemes, one stepping loop.

Both step every scheme of :mod:`odeopt.schemes` — fixed-step and adaptive, explicit and
implicit — through :func:`~odeopt.integrate.loop.step_loop` with the stop pipeline of
:mod:`odeopt.integrate.stops`; they differ only in their array library (:mod:`odeopt.arrays`).
Everything integrate() offers runs here: events, gtol, switches, level sets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ... import schemes as _schemes
from ...schemes.adaptive import StepController
from ..loop import AdaptiveSteps, FixedSteps, step_loop
from ..stops import Domain, pipeline
from . import register
from .batch import BatchBackend, Plan

if TYPE_CHECKING:
    from ...schemes.base import Scheme
    from ..options import Request
    from ..run import Run

__all__ = ["NumpyBackend", "TorchBackend"]


class NumpyBackend(BatchBackend):
    """odeopt's schemes on numpy arrays."""

    name = "numpy"
    arrays: ClassVar[str] = "numpy"
    features = frozenset({"fixed", "adaptive", "events", "gtol", "switches", "level_sets", "best"})

    def check(self, request: Request) -> Scheme:
        return _schemes.for_system(_schemes.get(request.scheme), request.system)

    def run_chunk(self, run: Run, request: Request, plan: Plan) -> None:
        scheme = plan.scheme
        assert scheme is not None
        stop = request.stop
        domain = Domain.of(run.system, run.library)
        controller = None
        if plan.fixed:
            assert plan.h is not None and plan.steps is not None and plan.save_at is not None
            policy = FixedSteps(scheme, plan.t0, plan.h, plan.steps, plan.save_at, domain, plan.bar)
        else:
            controller = (
                request.controller
                or getattr(scheme, "controller", None)
                or StepController(rtol=request.rtol, atol=request.atol)
            )
            h0 = request.h if request.h is not None else (plan.t1 - plan.t0) / 100
            policy = AdaptiveSteps(scheme, plan.grid, h0, controller, stop.gtol, domain, plan.bar)
        stops = pipeline(
            run,
            tol=getattr(scheme, "tol", 0.0),
            blowup=stop.blowup,
            domain=domain,
            events=plan.events,
            scheme=scheme,
            gtol=stop.gtol,
            adaptive=controller,
            max_steps=stop.max_steps,
            t1=plan.t1,
        )
        step_loop(run, policy, stops)


class TorchBackend(NumpyBackend):
    """odeopt's schemes on torch tensors (dtype and device of the starts)."""

    name = "torch"
    arrays: ClassVar[str] = "torch"


register(NumpyBackend())
register(TorchBackend())
