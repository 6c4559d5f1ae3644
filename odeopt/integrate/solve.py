"""``integrate``: the one door to batched integration of a system on an objective.

integrate() checks its arguments, groups its options (:mod:`.options`: what to save, when
to stop, step-size control) into one :class:`~.options.Request`, and hands it to a backend
of :mod:`.backends` (numpy, torch, scipy, torchdiffeq, numba), which runs it or refuses what it
does not run, naming the backends that do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..arrays import is_torch
from ..checks import check_problem, check_starts
from ..schemes.adaptive import StepController
from ..schemes.base import Scheme
from .backends import choose, get
from .backends.scipy import SCIPY_METHODS
from .backends.torchdiffeq import torchdiffeq_methods
from .events import Event
from .options import Request, SaveAt, Stop, _check_arguments, normalize
from .trajectory import Trajectory

if TYPE_CHECKING:
    from ..symbolic.system import PortHamiltonian

__all__ = ["SCIPY_METHODS", "integrate", "torchdiffeq_methods"]


def integrate(
    system: PortHamiltonian,
    problem: Any,
    x0: Mapping[str, Any],
    t_span: tuple[float, float] | None = None,
    *,
    steps: int | None = None,
    h: float | None = None,
    scheme: str | Scheme = "symplectic_euler",
    backend: str | None = None,
    params: Mapping[str, Any] | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    controller: StepController | None = None,
    save: str | int | SaveAt = "all",
    t_eval: Sequence[float] | None = None,
    events: Sequence[Event] | Event = (),
    stop: Stop | None = None,
    gtol: float | None = None,
    blowup: float | None = None,
    max_steps: int | None = None,
    chunk_size: int = 1 << 17,
    progress: bool | None = None,
    scipy_mode: str = "batched",
) -> Trajectory:
    """Integrate ẋ = f(x, t) of ``system`` on ``problem`` from a batch of initial states.

    ``x0`` maps block names to arrays of shape (batch, n) (a missing block starts at 0).
    Time: ``t_span=(t0, t1)`` with ``h`` or ``steps``, or ``steps`` with ``h`` from t0 = 0.
    ``scheme`` is an odeopt scheme (see :mod:`odeopt.schemes`), a scipy ``solve_ivp`` method
    (``"rk45"``, …; backend ``"scipy"``) or a torchdiffeq method (``"dopri5"``, …; backend
    ``"torchdiffeq"``). ``backend`` (see :func:`odeopt.integrate.backends.names`) defaults
    to scipy for its method names, torch for tensor inputs and numpy otherwise. ``params``
    gives the system's parameters by keyword, scalars or per-trajectory arrays.

    What to save, ``save=``: a :class:`SaveAt`, or ``"all"`` (every step of a fixed-step
    scheme; 101 equally spaced times of an adaptive one), ``K`` (every K-th step),
    ``"final"``; adaptive schemes and solvers land on the times ``t_eval`` exactly.
    ``SaveAt(..., best=True)`` also records min F along each trajectory
    (``Trajectory.best_loss``; numpy, torch and numba). odeopt's schemes count each
    trajectory's accepted steps (``Trajectory.steps``) and adaptive ones record their step
    size at the saved points (``Trajectory.step_size``).

    Step-size control of adaptive schemes (``euler_richardson``, ``heun``, scipy,
    torchdiffeq): ``controller=StepController(rtol=, atol=, h_min=, h_max=, …)`` or its
    ``rtol``, ``atol`` alone; ``h`` is then the first step.

    When to stop, ``stop=Stop(gtol=, blowup=, max_steps=)`` or the same keywords: a
    trajectory whose state becomes non-finite or exceeds ``blowup`` (1e100) in magnitude is
    stopped with its last finite state and flagged ``"diverged"`` with the time; with
    ``gtol`` one whose |∇F| < gtol is stopped as ``"converged"``; an adaptive row stops after
    ``max_steps`` (100 000) steps. ``events`` are located per trajectory (odeopt's
    fixed-step schemes; terminal events also with scipy per trajectory). Every status is
    listed in :class:`Trajectory`.

    Large batches run in chunks of ``chunk_size`` trajectories so that memory stays bounded.
    """
    from ..symbolic.system import PortHamiltonian

    if not isinstance(system, PortHamiltonian):
        raise TypeError(f"integrate() takes a PortHamiltonian system, got {type(system).__name__}")
    check_problem(problem)
    check_starts(x0)
    t_span, steps, h, rtol, atol, *_, chunk_size, _ = _check_arguments(
        t_span, steps, h, rtol, atol, None, 1.0, chunk_size, 1
    )
    save_at, stop, controller = normalize(
        save=save,
        t_eval=t_eval,
        stop=stop,
        gtol=gtol,
        blowup=blowup,
        max_steps=max_steps,
        controller=controller,
    )
    if backend is None:
        be = choose(scheme, any(is_torch(v) for v in x0.values()))
    else:
        be = get(backend)
    request = Request(
        system=system,
        problem=problem,
        x0=x0,
        t_span=t_span,
        steps=steps,
        h=h,
        scheme=scheme,
        params=params,
        rtol=rtol,
        atol=atol,
        controller=controller,
        save=save_at,
        events=[events] if isinstance(events, Event) else list(events),
        stop=stop,
        chunk_size=chunk_size,
        progress=progress,
        scipy_mode=scipy_mode,
    )
    return be.run(request)
