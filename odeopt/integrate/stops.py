"""The post-step stop pipeline: each stop is a small object run, in order, after every step.

A stop looks at a :class:`~.run.StepState` (the working rows before and after the step) and
stops the rows it concerns with their status (see ``Trajectory.status``), through
:meth:`~.run.Run.stop_rows`. The pipeline of a run (:func:`pipeline`) lists the stops that can
fire, in priority order: a row that meets two is stopped by the first.

=================== ============================================ ==========================
stop                a row stops when                              it keeps
=================== ============================================ ==========================
UnconvergedSolve    an implicit step's residual > the scheme's tol  its state before the step
Divergence          a value is not finite or |xᵢ| > blowup          its state before the step
Domain              it left a level set's domain (:class:`Domain`)  its state before the step
Events              a terminal event fired (others switch it)       the state at the event
Stalled             an adaptive step cannot shrink (t + h = t)      its last accepted state
Convergence         |∇F| < gtol                                     its state after the step
MaxSteps            an adaptive row took max_steps steps            its last accepted state
=================== ============================================ ==========================

A row's ``Trajectory.steps`` counts the accepted steps to the state it keeps: the step
that stops it counts where it keeps the state after the step (converged, stalled,
max_steps: there the state after an adaptive attempt, which counts when it was accepted),
not where it keeps the state before it (unconverged, diverged, domain) nor at an event (the
located state lies within the step). A row stopped at a save because F, ∇F or H is not
finite there keeps its previous saved state and the steps to it.

The divergence test (:func:`beyond`) and the domain rule (:class:`Domain`) are also what the
solver backends (scipy, torchdiffeq) apply to their results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..arrays import Arrays
from .events import Event
from .locate import EventHandler

if TYPE_CHECKING:
    from ..symbolic.system import PortHamiltonian
    from .field import NumericField
    from .run import Run, StepState

__all__ = [
    "Convergence",
    "Divergence",
    "Domain",
    "MaxSteps",
    "Stalled",
    "UnconvergedSolve",
    "beyond",
    "pipeline",
]

Stop = Any  # an object with ``__call__(run, step) -> None``


def beyond(a: Arrays, x: dict[str, Any] | Sequence[Any], blowup: float) -> np.ndarray:
    """The divergence test, per row: a value of any block not finite or beyond ``blowup``
    (each block (…, rows, n); the mask has the leading shape)."""
    blocks = list(x.values()) if isinstance(x, dict) else list(x)
    bad = a.beyond(blocks[0], blowup)
    for v in blocks[1:]:
        bad = bad | a.beyond(v, blowup)
    return bad


class UnconvergedSolve:
    """An implicit scheme reports its solve's residual per row (``info["residual"]``): rows
    above the scheme's ``tol`` (after its own step halving) stop as ``"unconverged"`` with
    their last state, since the step does not solve the scheme's equation (the discrete
    gradient's H(x') ≤ H(x) would not hold)."""

    def __init__(self, tol: float) -> None:
        self.tol = tol

    def __call__(self, run: Run, step: StepState) -> None:
        residual = step.info.get("residual")
        if residual is None:
            return
        r = np.asarray(run.a.to_numpy(residual), dtype=float).reshape(-1)
        m = len(run.active)
        r = np.broadcast_to(r, (m,)) if r.size in (1, m) else r[:m]
        with np.errstate(invalid="ignore"):
            failed = r > self.tol  # a NaN residual comes with a NaN state: "diverged" next
        run.stats["unconverged_solves"] += int(failed.sum())
        run.stop_rows(step, failed, "unconverged")


class Divergence:
    """A state not finite or beyond ``blowup`` → ``"diverged"`` with its last state.

    Fast path: Σ x² per block (one BLAS pass, no cancellation; NaN and ±inf propagate) bounds
    every |xᵢ|; only when it exceeds the bound are the rows tested one by one."""

    def __init__(self, blowup: float) -> None:
        self.blowup = blowup
        self.bound = blowup * blowup

    def __call__(self, run: Run, step: StepState) -> None:
        sumsq = run.a.sumsq
        total = sum(sumsq(v) for v in step.x_new.values())
        if total <= self.bound and total < math.inf:  # False for NaN, and for ±inf even
            return  # when blowup² overflows (blowup > 1.3e154): then the rows are tested
        run.stop_rows(step, beyond(run.a, step.x_new, self.blowup), "diverged")


class Domain:
    """A level set's domain V > 0 (BBI: V = F − ΔV), the one domain rule of every backend.

    The field is not defined outside, so a row whose state has V ≤ 1e-40 (:data:`EDGE`), or
    V ≤ its ``margin`` when one is given, stops as ``"domain"`` with its last state inside.
    The flow reaches V = 0 in finite time with the field singular there, so steps shrink
    towards it without end: adaptive schemes and scipy stop a row at V ≤ 1e-12·V(x₀)
    (:data:`ADAPTIVE`), torchdiffeq, whose step the batch shares, at ε^⅜·V(x₀)."""

    EDGE = 1e-40
    ADAPTIVE = 1e-12

    def __init__(self, system: PortHamiltonian, library: str) -> None:
        from ..symbolic.system import compiled_expression

        ls = system.level_set
        assert ls is not None and ls.domain is not None
        self.expr = ls.domain
        self.system = system
        self.fn = compiled_expression(system, [], [ls.domain], library)
        self.symbol_of = {p.name: p.symbol.name for p in system.parameters}
        self.margin: np.ndarray | None = None  # per row of the chunk

    @classmethod
    def of(cls, system: PortHamiltonian, library: str) -> Domain | None:
        """The domain of ``system``'s level set, None when it has none."""
        ls = system.level_set
        return None if ls is None or ls.domain is None else cls(system, library)

    def values(self, field: NumericField, x: dict[str, Any], t: Any) -> Any:
        """V per row of x (an array of the field's library, (rows,) or (rows, 1))."""
        F, _ = field.loss_and_grad(x[field.position[0]], t)
        values = {self.symbol_of[k]: v for k, v in field.params.items()}
        (v,) = self.fn(dict(x), F, None, t, **values)
        return v

    def numpy_values(self, run: Run, x: dict[str, Any], t: Any) -> np.ndarray:
        """V at the working rows of the run, in numpy, (rows,)."""
        v = run.a.to_numpy(self.values(run.field, x, t)).reshape(-1).astype(float)
        return np.broadcast_to(v, (len(run.active),)).copy()

    @classmethod
    def outside(cls, v: np.ndarray, margin: np.ndarray | None = None) -> np.ndarray:
        """Rows outside the domain: V ≤ 1e-40 (NaN included), or V ≤ ``margin``."""
        with np.errstate(invalid="ignore"):
            out = ~(v > cls.EDGE)
            return out if margin is None else out | (v <= margin)

    def event(self, margin: float) -> Event:
        """The rule as a terminal event V − margin = 0 crossed from above (scipy)."""
        return Event(self.expr - margin, terminal=True, direction=-1, name="domain")

    def start(self, run: Run, t0: float, adaptive: bool) -> None:
        """Rows that start outside stop at t₀; an adaptive run keeps 1e-12·V(x₀) per row."""
        v0 = self.numpy_values(run, run.x, t0)
        if adaptive:
            self.margin = np.zeros(run.B)
            self.margin[run.active] = self.ADAPTIVE * v0
        out = self.outside(v0)
        if out.any():
            idx = run.index(out)
            keep = run.stop(out, "domain", t0, {b: v[idx] for b, v in run.x.items()}, t0)
            run.x = {b: v[keep] for b, v in run.x.items()}

    def __call__(self, run: Run, step: StepState) -> None:
        if not len(run.active):
            return
        v = self.numpy_values(run, step.x_new, run.time(step.t_new))
        margin = None if self.margin is None else self.margin[run.active]
        run.stop_rows(step, self.outside(v, margin), "domain")


class Stalled:
    """An adaptive row whose step cannot shrink (t + h = t: the step underflowed, or h ≤ 0)
    or that was rejected at h_min → ``"stalled"`` with its last accepted state."""

    def __init__(self, h_min: float) -> None:
        self.h_min = h_min

    def __call__(self, run: Run, step: StepState) -> None:
        t, h = run.per_row["t"], run.per_row["h"]
        stalled = (t + h == t) | ~(h > 0)
        if self.h_min > 0:
            stalled |= run.per_row["rejected_at"] <= self.h_min * (1 + 1e-12)
        run.stop_rows(step, stalled, "stalled", state="new")


class Convergence:
    """|∇F| < ``gtol`` at the state after the step → ``"converged"`` with that state."""

    def __init__(self, gtol: float) -> None:
        self.gtol = gtol

    def met(self, run: Run, field: NumericField, x: dict[str, Any], t: Any) -> np.ndarray:
        """Per row of x: |∇F(x)| < gtol."""
        _, g = field.loss_and_grad(x[run.position], t)
        return run.a.to_numpy((g * g).sum(-1) ** 0.5) < self.gtol

    def __call__(self, run: Run, step: StepState) -> None:
        if not len(run.active):
            return
        conv = self.met(run, run.field, step.x_new, run.time(step.t_new))
        run.stop_rows(step, conv, "converged", state="new")


class MaxSteps:
    """An adaptive row that took ``max_steps`` steps (accepted and rejected) before t1 →
    ``"max_steps"`` with its last accepted state."""

    def __init__(self, max_steps: int, t1: float) -> None:
        self.max_steps = max_steps
        self.t_end = t1 - 1e-12 * max(1.0, abs(t1))

    def __call__(self, run: Run, step: StepState) -> None:
        over = (run.per_row["n"] >= self.max_steps) & (run.per_row["t"] < self.t_end)
        run.stop_rows(step, over, "max_steps", state="new")


def pipeline(
    run: Run,
    *,
    tol: float,
    blowup: float,
    domain: Domain | None,
    events: Sequence[Event],
    scheme: Any,
    gtol: float | None,
    adaptive: Any = None,
    max_steps: int = 0,
    t1: float = 0.0,
) -> list[Stop]:
    """The stops of a run in priority order (those that cannot fire are left out).

    ``adaptive`` is the step controller of an adaptive run (None: fixed steps), whose rows
    take ``max_steps`` steps at most before ``t1``."""
    stops: list[Stop] = [UnconvergedSolve(tol), Divergence(blowup)]
    if domain is not None:
        stops.append(domain)
    if events:
        stops.append(EventHandler(run, events, scheme))
    if adaptive is not None:
        stops.append(Stalled(adaptive.h_min))
    if gtol is not None:
        stops.append(Convergence(gtol))
    if adaptive is not None:
        stops.append(MaxSteps(max_steps, t1))
    return stops
