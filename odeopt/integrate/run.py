"""One chunk of trajectories being integrated: its saved arrays, statuses and working rows.

Rows that stop (diverged, converged, an event, …) are dropped from the working arrays, so the
common case (nothing stops) pays for no masking; ``active`` maps working rows to rows of the
chunk. Every backend that runs batches (numpy, torch, scipy, torchdiffeq) fills a :class:`Run`,
and :func:`assemble` joins the chunks into one :class:`~.trajectory.Trajectory`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..arrays import arrays, row_norm, take
from .events import EventRecord
from .field import NumericField
from .trajectory import Trajectory

if TYPE_CHECKING:
    from ..symbolic.system import PortHamiltonian

__all__ = ["Run", "StepState", "assemble"]


class StepState:
    """A step of the working rows: ``x_old`` at ``t_old`` → ``x_new`` at ``t_new``.

    Times are one float for the batch (fixed steps), or per working row (adaptive steps),
    held in ``run.per_row`` under "t_old" and "t" so that they follow dropped rows. ``info``
    is the scheme's :class:`~odeopt.schemes.Step` info, per working row; ``k`` the step index
    and ``h`` the step of a fixed-step run.

    The accepted steps to the state before and after the step (:meth:`count`) are ``k`` and
    ``k + 1`` for fixed steps; an adaptive run keeps them per working row in ``run.per_row``
    ("accepted_old", "accepted"), with the size of the last accepted step
    ("h_accepted_old", "h_accepted", :meth:`last_h`).
    """

    def __init__(
        self,
        run: Run,
        x_old: dict[str, Any],
        x_new: dict[str, Any],
        t_old: float | None,
        t_new: float | None,
        info: Mapping[str, Any],
        k: int = -1,
        h: float | None = None,
    ) -> None:
        self.run = run
        self.h = h
        self.x_old, self.x_new = x_old, x_new
        self._t_old, self._t_new = t_old, t_new
        self.info = info
        self.k = k

    @property
    def t_old(self) -> Any:
        return self._t_old if self._t_old is not None else self.run.per_row["t_old"]

    @property
    def t_new(self) -> Any:
        return self._t_new if self._t_new is not None else self.run.per_row["t"]

    def count(self, state: str, mask: np.ndarray) -> Any:
        """Accepted steps from t₀ to the state before (``state="old"``) or after (``"new"``)
        the step, for the working rows ``mask``."""
        if self.k >= 0:  # fixed steps: k steps before this one, k + 1 after it
            return self.k + (state == "new")
        return self.run.per_row["accepted" if state == "new" else "accepted_old"][mask]

    def last_h(self, state: str, mask: np.ndarray) -> Any:
        """The size of the last accepted step to that state (adaptive runs; None for fixed)."""
        if self.k >= 0 or "h_accepted" not in self.run.per_row:
            return None
        return self.run.per_row["h_accepted" if state == "new" else "h_accepted_old"][mask]


class Run:
    """One chunk of trajectories of ``system`` on ``problem`` from ``x`` (arrays of
    ``library``), with ``saves`` saved slots per trajectory (NaN until written).

    Per row of the chunk it also records, for the Trajectory's fields of the same names:
    ``steps``, the accepted steps from t₀ to the state the row keeps (set by a stepping loop,
    which sets ``counts``: solvers leave it unset); ``step_size`` (saves, B), the size of the
    last accepted step before each saved point (adaptive schemes: :meth:`record_step_size`);
    ``best`` with ``best=True``, min F over the accepted states up to the one the row keeps
    (:meth:`fold_best`, and every save and stop)."""

    def __init__(
        self,
        system: PortHamiltonian,
        problem: Any,
        x: dict[str, Any],
        params: dict[str, Any],
        library: str,
        saves: int,
        best: bool = False,
    ) -> None:
        self.system = system
        self.library = library
        self.a = arrays(library)
        ref = next(iter(x.values()))
        self.ref = ref
        self.field = NumericField(system, problem, params, library)
        self.names = list(x)
        self.position = self.field.position[0]
        self.B, n = ref.shape
        self.out = {b: self.a.empty((saves, self.B, n), ref) for b in self.names}
        self.H, self.F, self.G = (self.a.empty((saves, self.B), ref) for _ in range(3))
        self.status = np.full(self.B, "ok", dtype="<U11")
        self.t_saved = np.full(self.B, np.nan)  # the time of each row's last saved state
        self.t_stop = np.full(self.B, np.nan)
        self.offset = 0  # the chunk's first trajectory, for messages
        self.active = np.arange(self.B)
        self.all_active = True
        self.x = x
        self.log: list[EventRecord] = []
        self.saved = 0
        self.stats: dict[str, Any] = {"steps": 0, "rejected": 0, "unconverged_solves": 0}
        #: numpy values per working row (adaptive t, h, steps, …), filtered with the rows
        self.per_row: dict[str, np.ndarray] = {}
        #: called with the mask of dropped working rows (per-row state of stops)
        self.on_drop: list[Callable[[np.ndarray], None]] = []
        #: accepted steps to each row's kept state, and to its last saved state
        self.steps = np.zeros(self.B, dtype=np.int64)
        self.steps_saved = np.zeros(self.B, dtype=np.int64)
        self.counts = False  # set by a stepping loop that counts the steps
        #: (saves, B) the last accepted step size before each save (adaptive schemes)
        self.step_size: np.ndarray | None = None
        #: min F over the accepted states (with best=True), and its value at the last save
        self.best: Any = None
        self.best_saved: Any = None
        if best:
            self.best = self.a.empty((self.B,), ref)
            self.best[:] = np.inf
            self.best_saved = self.a.copy(self.best)

    # -- times and rows
    def time(self, t: Any) -> Any:
        """A time for the field: a float as is, per-row values as a column (rows, 1)."""
        return t if np.ndim(t) == 0 else self.a.column(np.asarray(t, dtype=float), self.ref)

    def index(self, mask: np.ndarray) -> Any:
        return self.a.index(np.asarray(mask), self.ref)

    def _glob(self, rows: np.ndarray) -> Any:
        return self.index(np.asarray(rows, dtype=np.int64))

    # -- saving
    def snapshot(self, x: Mapping[str, Any], t: Any, field: NumericField) -> tuple[Any, Any, Any]:
        """H, F and |∇F| per row of x at time t."""
        F, g = field.loss_and_grad(x[self.position], t)
        H = field.energy(dict(x), t)[:, 0]
        return H, F, row_norm(self.a, g)

    def save(self, t: Any, count: Any = 0, h_last: Any = None) -> np.ndarray | None:
        """Save the working rows at time ``t`` (a float, or numpy values per row), reached
        after ``count`` accepted steps (an int, or per working row) whose last had size
        ``h_last`` (per working row, adaptive schemes; None otherwise). A row whose
        H, F or |∇F| is not finite there is stopped with its last saved state and values kept,
        status ``"nonfinite"`` (NaN: the objective is undefined) or ``"diverged"`` (±inf: an
        overflow); returns the mask of the rows that go on (None when all do). A start where
        they are not finite is an error."""
        s = self.saved
        H, F, gn = self.snapshot(self.x, self.time(t), self.field)
        keep = None
        bad = self.a.nonfinite(H, F, gn)
        if bad is not None:
            self._keep_last_saved(self.active[bad], self._kind(H, F, gn)[bad])
            keep = ~bad
            idx = self.index(keep)
            self.drop(bad)
            self.x = take(self.x, idx)
            H, F, gn = H[idx], F[idx], gn[idx]
            if np.ndim(t):
                t = np.asarray(t)[keep]
            if np.ndim(count):
                count = np.asarray(count)[keep]
            if h_last is not None:
                h_last = np.asarray(h_last)[keep]
        if len(self.active):
            rows: Any = slice(None) if self.all_active else self._glob(self.active)
            for b in self.names:
                self.out[b][s, rows] = self.x[b]
            self.H[s, rows], self.F[s, rows], self.G[s, rows] = H, F, gn
            self.t_saved[self.active] = np.asarray(t, dtype=float).reshape(-1) if np.ndim(t) else t
            self.steps_saved[self.active] = count
            if self.step_size is not None and h_last is not None:
                self.step_size[s, self.active] = h_last
            if self.best is not None:
                self.best[rows] = self.a.module.fmin(self.best[rows], F)
                self.best_saved[rows] = self.best[rows]
        self.saved += 1
        return keep

    def fold_best(self, x: Mapping[str, Any], t: Any) -> None:
        """With ``best``: min F so far of the working rows, with F at their states ``x`` at
        time ``t`` (after a step; NaN values are passed over, as np.fmin does)."""
        if self.best is None or not len(self.active):
            return
        F, _ = self.field.loss_and_grad(x[self.position], self.time(t))
        rows: Any = slice(None) if self.all_active else self._glob(self.active)
        self.best[rows] = self.a.module.fmin(self.best[rows], F)

    def record_step_size(self, h0: float) -> None:
        """Record the last accepted step size before each save, ``h0`` until the first."""
        self.step_size = np.full((len(self.H), self.B), float(h0))

    def skip_save(self) -> None:
        """A save slot with no working rows (the stopped ones hold their values already)."""
        self.saved += 1

    def _kind(self, *values: Any) -> np.ndarray:
        """Per row: "nonfinite" where a value is NaN, "diverged" where one is ±inf only (an
        overflow at a finite state is a blow-up, not an undefined objective)."""
        nan = np.zeros(len(self.a.to_numpy(values[0])), dtype=bool)
        for v in values:
            nan |= np.isnan(np.asarray(self.a.to_numpy(v), dtype=float))
        return np.where(nan, "nonfinite", "diverged")

    def _keep_last_saved(self, glob: np.ndarray, status: np.ndarray) -> None:
        """Rows ``glob`` (of the chunk) keep their last saved state and values in every later
        slot, with ``status`` and t_stop the time of that save."""
        s = self.saved
        if s == 0:
            raise ValueError(
                f"the objective (F, ∇F or H) is not finite at the start of trajectories "
                f"{(glob[:10] + self.offset).tolist()}{' …' if len(glob) > 10 else ''}; give "
                "starts where it is finite"
            )
        rows = self._glob(glob)
        for b in self.names:
            self.out[b][s:, rows] = self.out[b][s - 1, rows]
        for arr in (self.H, self.F, self.G):
            arr[s:, rows] = arr[s - 1, rows]
        if self.step_size is not None:
            self.step_size[s:, glob] = self.step_size[s - 1, glob]
        if self.best is not None:
            self.best[rows] = self.best_saved[rows]
        self.steps[glob] = self.steps_saved[glob]
        self.status[glob] = status
        self.t_stop[glob] = self.t_saved[glob]

    # -- stopping
    def drop(self, mask: np.ndarray) -> Any:
        """Remove working rows ``mask`` from the run; returns the index of those that go on."""
        keep = self.index(~mask)
        self.field = self.field.subset(keep)
        self.active = self.active[~mask]
        self.all_active = False
        for k in self.per_row:
            self.per_row[k] = self.per_row[k][~mask]
        for fn in self.on_drop:
            fn(mask)
        return keep

    def stop(
        self,
        mask: np.ndarray,
        status: str,
        t_at: Any,
        frozen: Mapping[str, Any],
        t_frozen: Any,
        steps: Any = 0,
        h_last: Any = None,
    ) -> Any:
        """Stop working rows ``mask`` with their state ``frozen`` (rows of the mask only, at
        time ``t_frozen``, reached after ``steps`` accepted steps, the last of size ``h_last``
        for an adaptive run) kept in all later saved slots, flagged ``status`` at ``t_at``;
        returns the index of the rows that go on."""
        glob = self.active[mask]
        self.status[glob] = status
        self.t_stop[glob] = t_at
        self.steps[glob] = steps
        field = self.field.subset(self.index(mask))
        H, F, gn = self.snapshot(frozen, self.time(t_frozen), field)
        rows = self._glob(glob)
        s = self.saved
        for b in self.names:
            self.out[b][s:, rows] = frozen[b]
        self.H[s:, rows], self.F[s:, rows], self.G[s:, rows] = H, F, gn
        if self.step_size is not None and h_last is not None:
            self.step_size[s:, glob] = h_last
        if self.best is not None:  # the kept state is the last accepted one
            self.best[rows] = self.a.module.fmin(self.best[rows], F)
        bad = self.a.nonfinite(H, F, gn)
        if bad is not None:  # the objective is undefined where it stops: keep the last save
            self._keep_last_saved(glob[bad], self._kind(H, F, gn)[bad])
        return self.drop(mask)

    def stop_rows(self, step: StepState, mask: np.ndarray, status: str, state: str = "old") -> None:
        """Stop rows ``mask`` of ``step`` with ``status`` at the step's new time, keeping
        their state before the step (``state="old"``) or after it (``"new"``)."""
        if not mask.any():
            return
        idx = self.index(mask)
        frozen = take(step.x_old if state == "old" else step.x_new, idx)
        t_state = step.t_old if state == "old" else step.t_new
        t_new = step.t_new
        t_at = t_new if np.ndim(t_new) == 0 else t_new[mask]
        t_fr = t_state if np.ndim(t_state) == 0 else t_state[mask]
        n, h_last = step.count(state, mask), step.last_h(state, mask)
        keep = self.stop(mask, status, t_at, frozen, t_fr, n, h_last)
        step.x_old, step.x_new = take(step.x_old, keep), take(step.x_new, keep)

    # -- the solver backends: values after the fact
    def fill_globals(self, grid: np.ndarray) -> None:
        """H, F and |∇F| at every saved state (after the fact, for the solver backends).

        A row where they are not finite at a saved (finite) state is flagged ``"nonfinite"``
        and keeps its previous saved state and values from there on; at the start it is an
        error (the objective must be finite at x₀)."""
        field = NumericField(self.system, self.field.objective, self.field.params, self.library)
        for s in range(len(grid)):
            x = {b: self.out[b][s] for b in self.names}
            self.H[s], self.F[s], self.G[s] = self.snapshot(x, grid[s], field)
            bad = self.a.nonfinite(self.H[s], self.F[s], self.G[s])
            if bad is None:
                continue
            rows = np.flatnonzero(bad)
            if s == 0:
                raise ValueError(
                    f"the objective (F, ∇F or H) is not finite at the start of trajectories "
                    f"{(rows[:10] + self.offset).tolist()}; give starts where it is finite"
                )
            kind = self._kind(self.H[s], self.F[s], self.G[s])[bad]
            idx = self.index(bad)
            for b in self.names:
                self.out[b][s:, idx] = self.out[b][s - 1, idx]
            for arr in (self.H, self.F, self.G):
                arr[s, idx] = arr[s - 1, idx]
            fresh = self.status[rows] == "ok"
            self.status[rows[fresh]] = kind[fresh]
            self.t_stop[rows[fresh]] = grid[s - 1]
        self.saved = len(grid)


def assemble(
    parts: list[Run], grid: np.ndarray, system: PortHamiltonian, backend: str, scheme: Any
) -> Trajectory:
    """The chunks joined into one Trajectory (event records renumbered across chunks)."""
    a = parts[0].a
    ref = parts[0].ref
    t = a.constant(grid, ref) if a.torch else grid
    names = parts[0].names
    offset = 0
    log: list[EventRecord] = []
    stats: dict[str, Any] = {}
    for r in parts:
        log += [EventRecord(e.trajectory + offset, e.time, e.name, e.step) for e in r.log]
        offset += r.B
        for k, v in r.stats.items():
            stats[k] = stats.get(k, 0) + v
    step_size = [r.step_size for r in parts]
    best = [r.best for r in parts]
    return Trajectory(
        t=t,
        states={b: a.concatenate([r.out[b] for r in parts], 1) for b in names},
        energy=a.concatenate([r.H for r in parts], 1),
        loss=a.concatenate([r.F for r in parts], 1),
        grad_norm=a.concatenate([r.G for r in parts], 1),
        status=np.concatenate([r.status for r in parts]),
        t_stop=np.concatenate([r.t_stop for r in parts]),
        events=log,
        stats=stats,
        system_name=system.name,
        scheme=scheme if isinstance(scheme, str) else getattr(scheme, "name", str(scheme)),
        backend=backend,
        steps=np.concatenate([r.steps for r in parts]) if all(r.counts for r in parts) else None,
        step_size=None if any(v is None for v in step_size) else np.concatenate(step_size, 1),
        best_loss=None if any(v is None for v in best) else a.concatenate(best, 0),
    )
