"""``backend="numba"``: one fused compiled kernel per (system, scheme, problem, dtype).

A thin adapter: :mod:`odeopt.integrate.numba_backend` (imported, with numba, only when this
backend runs) generates, compiles and runs the kernel, and refuses what it does not compile
with the reason and the backends that can (``backend='numpy' or backend='torch'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from . import Backend, register

if TYPE_CHECKING:
    from ..options import Request
    from ..trajectory import Trajectory

__all__ = ["NumbaBackend"]


class NumbaBackend(Backend):
    """Fixed-step explicit schemes of objectives with an exact sympy form, on numpy arrays."""

    name = "numba"
    arrays: ClassVar[str] = "numpy"
    features = frozenset({"fixed", "gtol", "events"})

    def check(self, request: Request) -> Any:
        """Nothing here: ``integrate_numba`` refuses, with its reasons, what it cannot run."""
        return None

    def run(self, request: Request) -> Trajectory:
        from ..numba_backend import integrate_numba

        save, t_eval = request.save.legacy()
        return integrate_numba(
            request.system,
            request.problem,
            request.x0,
            request.t_span,
            steps=request.steps,
            h=request.h,
            scheme=request.scheme,
            params=request.params,
            gtol=request.stop.gtol,
            blowup=request.stop.blowup,
            save=save,
            events=request.events,
            controller=request.controller,
            t_eval=t_eval,
        )


register(NumbaBackend())
