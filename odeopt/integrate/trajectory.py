"""What an integration returns, and the numeric energy check along it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .events import EventRecord

__all__ = ["EnergyIncrease", "EnergyReport", "Trajectory"]

#: every value ``Trajectory.status`` takes (the README lists them with their meaning)
STATUSES = (
    "ok",
    "converged",
    "diverged",
    "event",
    "domain",
    "max_steps",
    "stalled",
    "unconverged",
    "nonfinite",
)


@dataclass(frozen=True)
class EnergyIncrease:
    """H rose by ``size`` (> tolerance) on trajectory ``trajectory`` from saved point
    ``step`` to ``step + 1`` (times ``time`` → next)."""

    trajectory: int
    step: int
    time: float
    size: float


@dataclass
class EnergyReport:
    """The numeric energy check of a trajectory: every increase of the tracked quantity Q
    (H, or a declared Lyapunov function) between saved points beyond
    ``tol·max(1, |Q|)``, and the drift Q(t) − Q(t₀)."""

    quantity: str
    tol: float
    increases: list[EnergyIncrease]
    max_increase: float
    max_drift: float
    final_drift: np.ndarray
    trajectories: int

    @property
    def nonincreasing(self) -> bool:
        return not self.increases

    def __str__(self) -> str:
        lines = [
            f"{self.quantity} along {self.trajectories} trajectories (tolerance {self.tol:g}):",
            f"  increases beyond tolerance: {len(self.increases)}"
            + (f", largest {self.max_increase:.3g}" if self.increases else ""),
            f"  max |{self.quantity}(t) − {self.quantity}(t0)|: {self.max_drift:.3g}",
        ]
        for inc in self.increases[:10]:
            lines.append(
                f"    trajectory {inc.trajectory}, step {inc.step}, t = {inc.time:.6g}: "
                f"+{inc.size:.3g}"
            )
        if len(self.increases) > 10:
            lines.append(f"    … {len(self.increases) - 10} more")
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        rows = [
            f"**{self.quantity}** along {self.trajectories} trajectories, tolerance {self.tol:g}",
            "",
            "| increases | largest increase | max drift |",
            "|---|---|---|",
            f"| {len(self.increases)} | {self.max_increase:.3g} | {self.max_drift:.3g} |",
        ]
        return "\n".join(rows)


@dataclass
class Trajectory:
    """Saved states of a batch of trajectories.

    ``t`` (time,), ``traj[block]`` (time, batch, n), ``energy`` H, ``loss`` F and
    ``grad_norm`` |∇F|, each (time, batch); ``status`` per trajectory:

    * ``"ok"``: ran to the end;
    * ``"converged"``: |∇F| < gtol (adaptive schemes that report an Euler predictor also
      stop where the predictor meets it, at the predictor);
    * ``"diverged"``: the state became non-finite or exceeded the blow-up bound;
    * ``"event"``: stopped by a terminal event;
    * ``"domain"``: reached the edge of a level set's domain (BBI's V = F − ΔV → 0);
    * ``"max_steps"``: an adaptive run took ``max_steps`` steps (accepted and rejected) on
      this trajectory before the end;
    * ``"stalled"``: an adaptive step size underflowed (t + h = t) or was rejected at h_min:
      the tolerance cannot be met there;
    * ``"unconverged"``: an implicit scheme's solve missed its tolerance even after step
      halving (the discrete-gradient scheme's energy guarantee would not hold);
    * ``"nonfinite"``: F, ∇F or H became NaN at a finite state (the objective is undefined
      there; detected at the saved points and where a row stops). An overflow to ±inf
      there counts as ``"diverged"``.

    A stopped trajectory keeps its last good state (and its H, F, |∇F|) at later saved times,
    ``t_stop`` is when it stopped (NaN for "ok"): NaN never enters the arrays.
    ``events`` lists every event that fired. Arrays are numpy or torch like the input.

    ``steps`` (batch,): accepted steps from t₀ to the state the trajectory keeps — n for
    "ok"; a stop in step k counts k + 1 when it keeps the state after the step (converged),
    k when it keeps the state before it (diverged, domain, unconverged) or a state located
    within it (event); a stop at a save (nonfinite) counts the steps to the last saved
    state; adaptive schemes count accepted steps only (a stop at the Euler predictor counts
    as one); None for scipy and torchdiffeq, which do not report them per row. ``step_size``
    (time, batch, numpy float64 whatever the arrays), recorded by odeopt's adaptive schemes
    only (None otherwise), is the size of the last accepted step before each saved point
    that was not cut short to land on a saved time (h₀, the first step tried, until there
    is one);
    ``best_loss`` (batch,), with ``SaveAt(best=True)``, is min F over every accepted state of
    the trajectory (the start included).
    """

    t: Any
    states: dict[str, Any]
    energy: Any
    loss: Any
    grad_norm: Any
    status: np.ndarray
    t_stop: np.ndarray
    events: list[EventRecord] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    system_name: str = ""
    scheme: str = ""
    backend: str = ""
    steps: np.ndarray | None = None
    step_size: Any = None
    best_loss: Any = None

    def __getitem__(self, block: str) -> Any:
        try:
            return self.states[block]
        except KeyError:
            raise KeyError(f"no block {block!r}; saved blocks are {list(self.states)}") from None

    @property
    def batch(self) -> int:
        return len(self.status)

    @property
    def final(self) -> dict[str, Any]:
        """The last saved state of every block, (batch, n)."""
        return {b: v[-1] for b, v in self.states.items()}

    def count(self) -> dict[str, int]:
        """How many trajectories ended in each status."""
        return {s: int((self.status == s).sum()) for s in STATUSES}

    def __repr__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.count().items() if v)
        return (
            f"Trajectory({self.system_name} with {self.scheme} on {self.backend}: "
            f"{len(self.t)} saved times in [{float(self.t[0]):g}, {float(self.t[-1]):g}], "
            f"batch {self.batch} ({counts}), blocks {list(self.states)})"
        )

    def numpy(self) -> Trajectory:
        """The same trajectory with numpy arrays."""

        def conv(a: Any) -> Any:
            return a.detach().cpu().numpy() if hasattr(a, "detach") else a

        return Trajectory(
            conv(self.t),
            {b: conv(v) for b, v in self.states.items()},
            conv(self.energy),
            conv(self.loss),
            conv(self.grad_norm),
            self.status,
            self.t_stop,
            self.events,
            self.stats,
            self.system_name,
            self.scheme,
            "numpy",
            self.steps,
            None if self.step_size is None else conv(self.step_size),
            None if self.best_loss is None else conv(self.best_loss),
        )

    # -- numeric energy check
    def energy_report(
        self, tol: float = 1e-9, quantity: Any = None, name: str | None = None
    ) -> EnergyReport:
        """Track H (or ``quantity``, an array (time, batch) such as a Lyapunov function
        computed from this trajectory) and report every increase between consecutive saved
        points larger than ``tol·max(1, |Q|)``."""
        Q = self.energy if quantity is None else quantity
        Q = np.asarray(Q.detach().cpu().numpy() if hasattr(Q, "detach") else Q, dtype=float)
        label = name or ("H" if quantity is None else "Q")
        t = np.asarray(self.numpy().t, dtype=float)
        rise = Q[1:] - Q[:-1]
        scale = np.maximum(1.0, np.abs(Q[:-1]))
        with np.errstate(invalid="ignore"):
            bad = np.argwhere(rise > tol * scale)
        incs = [EnergyIncrease(int(j), int(k), float(t[k]), float(rise[k, j])) for k, j in bad]
        incs.sort(key=lambda e: (e.trajectory, e.step))
        drift = Q - Q[:1]
        return EnergyReport(
            label,
            tol,
            incs,
            max((e.size for e in incs), default=0.0),
            float(np.nanmax(np.abs(drift))) if drift.size else 0.0,
            drift[-1],
            Q.shape[1],
        )

    # -- plots (odeopt.plot draws them; matplotlib is imported there, when called)
    def plot(
        self,
        block: str = "theta",
        coords: Sequence[int] | None = None,
        ax: Any = None,
        max_lines: int = 200,
        **kwargs: Any,
    ) -> Any:
        """Paths of coordinates ``coords = (i, j)`` of ``block`` in the plane, or one
        coordinate ``(i,)`` against t (the default for a one-dimensional block), starts and
        ends marked; see :func:`odeopt.plot.trajectory`. Returns the matplotlib axes."""
        from .. import plot

        return plot.trajectory(self, block, coords, ax=ax, max_lines=max_lines, **kwargs)

    def plot_loss(self, ax: Any = None, max_lines: int = 50, **kwargs: Any) -> Any:
        """F(t) of the first ``max_lines`` trajectories (log axis when F > 0); see
        :func:`odeopt.plot.loss`."""
        from .. import plot

        return plot.loss(self, ax=ax, max_lines=max_lines, **kwargs)

    def plot_energy(self, ax: Any = None, max_lines: int = 50, **kwargs: Any) -> Any:
        """H(t) of the first ``max_lines`` trajectories; see :func:`odeopt.plot.energy`."""
        from .. import plot

        return plot.energy(self, ax=ax, max_lines=max_lines, **kwargs)

    def plot_step_size(self, ax: Any = None, max_lines: int = 50, **kwargs: Any) -> Any:
        """The accepted step size h against t (adaptive schemes only); see
        :func:`odeopt.plot.step_size`."""
        from .. import plot

        return plot.step_size(self, ax=ax, max_lines=max_lines, **kwargs)
