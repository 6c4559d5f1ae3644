"""integrate()'s options, grouped as diffrax groups them, and their checks.

- :class:`SaveAt` — what to save: the states at times ``t`` (adaptive schemes and solvers
  land on them), every K-th step (fixed-step schemes), or the final state only;
- :class:`Stop` — when a trajectory stops early: |∇F| < ``gtol`` ("converged"), a state
  beyond ``blowup`` or not finite ("diverged"), ``max_steps`` steps of an adaptive scheme;
- step-size control: a :class:`~odeopt.schemes.StepController` (``controller=``), or its
  ``rtol``/``atol`` alone.

The simple keywords (``save="all"|"final"|K``, ``t_eval=``, ``gtol=``, ``blowup=``,
``max_steps=``) are the same options spelled flat; :func:`normalize` turns either spelling
into one :class:`Request`, the call every backend receives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..checks import check_count, check_positive, check_real
from ..schemes.adaptive import StepController
from .events import Event

if TYPE_CHECKING:
    from ..symbolic.system import PortHamiltonian

__all__ = ["Request", "SaveAt", "Stop", "normalize"]


@dataclass(frozen=True)
class SaveAt:
    """What integrate() saves (besides the start, always saved).

    ``SaveAt()`` saves every step of a fixed-step scheme and 101 equally spaced times of an
    adaptive one; ``SaveAt(every=K)`` every K-th step (and the last); ``SaveAt(final=True)``
    the last state only; ``SaveAt(t=[t0, …, t1])`` the states at those times (adaptive
    schemes and solvers, which land on them exactly). ``save="all"``, ``save=K``,
    ``save="final"`` and ``t_eval=`` are the same requests.

    ``best=True``, with any of these, also records ``Trajectory.best_loss``: min F over the
    start and every accepted state of each trajectory (a stopped one: up to the state it
    keeps), whatever is saved (backends numpy, torch and numba; scipy's and torchdiffeq's
    solvers refuse it).
    """

    t: Sequence[float] | None = None
    every: int | None = None
    final: bool = False
    best: bool = False

    def __post_init__(self) -> None:
        given = (self.t is not None) + (self.every is not None) + bool(self.final)
        if given > 1:
            raise ValueError(
                f"SaveAt takes one of t=, every=, final=True (each with best= or not); got "
                f"{self!r}: pick one"
            )
        if self.every is not None:
            object.__setattr__(self, "every", check_count("SaveAt.every", self.every))
        if not isinstance(self.best, (bool, np.bool_)):
            raise TypeError(f"SaveAt.best is True or False, got best={self.best!r}")
        object.__setattr__(self, "best", bool(self.best))

    @classmethod
    def of(cls, save: Any, t_eval: Any = None) -> SaveAt:
        """The request ``save=`` (a SaveAt, ``"all"``, ``"final"`` or K) with ``t_eval``."""
        if isinstance(save, SaveAt):
            if t_eval is not None:
                raise ValueError("give the times in save=SaveAt(t=...) or t_eval=, not both")
            return save
        if t_eval is not None:
            if not (isinstance(save, str) and save == "all"):
                raise ValueError(f"give t_eval= or save={save!r}, not both")
            return cls(t=t_eval)
        if isinstance(save, str) and save in ("all", "final"):
            return cls(final=save == "final")
        if isinstance(save, (int, np.integer)) and not isinstance(save, bool) and save >= 1:
            return cls(every=int(save))
        raise ValueError(
            f"save is 'all', 'final' or a positive integer K (every K-th step); got {save!r}"
        )


@dataclass(frozen=True)
class Stop:
    """When a trajectory stops before t1 (each stop is flagged in ``Trajectory.status``).

    ``gtol``: |∇F| < gtol at an accepted state → "converged" (None: never);
    ``blowup``: a state value beyond it in magnitude, or not finite → "diverged" with the last
    state within the bound; ``max_steps``: steps (accepted and rejected) of one trajectory of
    an adaptive scheme → "max_steps".
    """

    gtol: float | None = None
    blowup: float = 1e100
    max_steps: int = 100_000

    def __post_init__(self) -> None:
        if self.gtol is not None:
            object.__setattr__(self, "gtol", check_positive("gtol", self.gtol))
        object.__setattr__(self, "blowup", check_positive("blowup", self.blowup, allow_inf=True))
        object.__setattr__(self, "max_steps", check_count("max_steps", self.max_steps))


@dataclass
class Request:
    """One call of integrate(), checked and with its options grouped: what a backend runs."""

    system: PortHamiltonian
    problem: Any
    x0: Mapping[str, Any]
    t_span: tuple[float, float] | None
    steps: int | None
    h: float | None
    scheme: Any
    params: Mapping[str, Any] | None
    rtol: float
    atol: float
    controller: StepController | None
    save: SaveAt
    events: list[Event]
    stop: Stop
    chunk_size: int
    progress: bool | None
    scipy_mode: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str | None:
        """The scheme's name when it was given by name."""
        return self.scheme if isinstance(self.scheme, str) else None


def normalize(
    *,
    save: Any,
    t_eval: Any,
    stop: Stop | None,
    gtol: Any,
    blowup: Any,
    max_steps: Any,
    controller: Any,
) -> tuple[SaveAt, Stop, StepController | None]:
    """The grouped options from either spelling; giving one option both ways is an error."""
    if stop is not None:
        if not isinstance(stop, Stop):
            raise TypeError(f"stop is a Stop(gtol=, blowup=, max_steps=), got {stop!r}")
        flat = {"gtol": gtol, "blowup": blowup, "max_steps": max_steps}
        both = [k for k, v in flat.items() if v is not None]
        if both:
            raise ValueError(f"give {both[0]} in stop=Stop(...) or as {both[0]}=, not both")
    else:
        stop = Stop(
            gtol=gtol,
            blowup=1e100 if blowup is None else blowup,
            max_steps=100_000 if max_steps is None else max_steps,
        )
    if controller is not None and not isinstance(controller, StepController):
        raise TypeError(
            f"controller is an odeopt.schemes.StepController(rtol=, atol=, ...), got {controller!r}"
        )
    return SaveAt.of(save, t_eval), stop, controller


# ----------------------------------------------------------------------- argument checks
def _check_arguments(
    t_span: Any,
    steps: Any,
    h: Any,
    rtol: Any,
    atol: Any,
    gtol: Any,
    blowup: Any,
    chunk_size: Any,
    max_steps: Any,
) -> tuple[Any, Any, Any, float, float, Any, float, int, int]:
    """integrate()'s scalar arguments checked up front (each error names the argument)."""
    if t_span is not None:
        if isinstance(t_span, (str, bytes)) or not hasattr(t_span, "__len__") or len(t_span) != 2:
            raise ValueError(f"t_span is (t0, t1), got t_span={t_span!r}")
        t0 = check_real("t_span[0]", t_span[0], finite=False)
        t1 = check_real("t_span[1]", t_span[1], finite=False)
        if not (math.isfinite(t0) and math.isfinite(t1)):
            raise ValueError(f"t_span must be finite, got t_span=({t0}, {t1})")
        if not t1 > t0:
            raise ValueError(f"t_span must have t1 > t0, got t_span=({t0:g}, {t1:g})")
        t_span = (t0, t1)
    if steps is not None:
        steps = check_count("steps", steps)
    if h is not None:
        h = check_positive("h", h)
    rtol = check_positive("rtol", rtol, allow_zero=True)
    atol = check_positive("atol", atol, allow_zero=True)
    if gtol is not None:
        gtol = check_positive("gtol", gtol)
    blowup = check_positive("blowup", blowup, allow_inf=True)
    chunk_size = check_count("chunk_size", chunk_size)
    max_steps = check_count("max_steps", max_steps)
    return t_span, steps, h, rtol, atol, gtol, blowup, chunk_size, max_steps


def _time_grid(t_span: Any, steps: Any, h: Any) -> tuple[float, float, int | None, float | None]:
    """(t0, t1, steps, h) of a fixed grid; steps and h are None when neither was given."""
    if t_span is not None:
        if len(t_span) != 2:
            raise ValueError(f"t_span is (t0, t1), got {t_span!r}")
        t0, t1 = float(t_span[0]), float(t_span[1])
        if not t1 > t0:
            raise ValueError(f"t_span must have t1 > t0, got {t_span!r}")
        if steps is not None and h is not None:
            raise ValueError("give t_span with h or with steps, not both")
        if steps is not None:
            return t0, t1, int(steps), (t1 - t0) / int(steps)
        if h is not None:
            n = (t1 - t0) / h
            if abs(n - round(n)) > 1e-9 * max(1.0, n):
                raise ValueError(
                    f"t1 − t0 = {t1 - t0:g} is not a multiple of h = {h:g}; give steps= or an h "
                    "that divides the span"
                )
            return t0, t1, max(1, round(n)), float(h)
        return t0, t1, None, None
    if steps is None or h is None:
        raise ValueError("give t_span=(t0, t1), or steps=N with h")
    return 0.0, int(steps) * float(h), int(steps), float(h)


def _save_steps(save: Any, n: int) -> list[int]:
    """The step indices a fixed-step run of n steps saves (0 and n always)."""
    if isinstance(save, SaveAt):
        if save.t is not None:
            raise ValueError("t_eval is for adaptive schemes; fixed-step ones take save='all'/K")
        save = "final" if save.final else (save.every or 1)
    if save == "all":
        return list(range(n + 1))
    if save == "final":
        return [0, n]
    if isinstance(save, (int, np.integer)) and not isinstance(save, bool) and save >= 1:
        idx = list(range(0, n + 1, int(save)))
        return idx if idx[-1] == n else [*idx, n]
    raise ValueError(
        f"save is 'all', 'final' or a positive integer K (every K-th step); got {save!r}"
    )


def adaptive_grid(save: SaveAt, t0: float, t1: float) -> np.ndarray:
    """The saved times of an adaptive scheme or solver on (t0, t1)."""
    if save.t is not None:
        from .inputs import real_array

        grid = np.asarray(real_array("t_eval", save.t), dtype=float).reshape(-1)
        if (
            grid.size < 2
            or grid[0] != t0
            or grid[-1] != t1
            or not np.isfinite(grid).all()
            or np.any(np.diff(grid) <= 0)
        ):
            raise ValueError(f"t_eval must increase from t0 = {t0:g} to t1 = {t1:g}")
        return grid
    if save.final:
        return np.array([t0, t1])
    if save.every is None:
        return np.linspace(t0, t1, 101)
    raise ValueError("adaptive schemes save at t_eval, or save='all' / 'final'")
