"""Studies: named runs of a system and scheme over a batch of starts, with outcome tables.

A :class:`Study` holds a problem, the starts ``x0`` (a dict of blocks, as for
:func:`odeopt.integrate`) and named :class:`Run` s, each a system, a scheme and exactly the
keywords ``integrate`` takes. :meth:`Study.run` integrates every run over chunks of the starts
with ``save="final"``; every trajectory depends on its own start only, so the result does not
depend on ``chunk_size``. The :class:`StudyResult` gives the final states as an xarray Dataset
(run × start), the outcome of every start decided as Bensaid's protocol does
(ALGORITHMS.md §5), the table of outcome shares per run and success shares F < threshold.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .checks import check_problem, check_starts
from .integrate import integrate
from .schemes.base import Scheme
from .symbolic.system import PortHamiltonian

__all__ = ["OUTCOMES", "Run", "Study", "StudyResult"]

#: the keywords of integrate() that a Run may set (the study sets x0, problem and save itself)
RUN_KEYWORDS = tuple(
    k
    for k in inspect.signature(integrate).parameters
    if k not in ("system", "problem", "x0", "scheme", "save", "t_eval", "chunk_size", "progress")
)
#: the outcome labels that follow the minima's labels, in table order
OUTCOMES = ("other", "not converged", "diverged")


@dataclass(frozen=True)
class Run:
    """One run of a study: ``integrate(system, problem, x0, scheme=scheme, **kwargs)``.

    ``kwargs`` are keywords of :func:`odeopt.integrate` (h, steps, t_span, params, gtol,
    max_steps, backend, ...) except ``save``, ``t_eval``, ``chunk_size`` and ``progress``, which
    the study decides.
    """

    system: PortHamiltonian
    scheme: str | Scheme = "symplectic_euler"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __init__(
        self, system: PortHamiltonian, scheme: str | Scheme = "symplectic_euler", **kwargs: Any
    ) -> None:
        if not isinstance(system, PortHamiltonian):
            raise TypeError(
                f"Run: system must be a PortHamiltonian (e.g. oo.zoo.gradient_flow()); "
                f"got {type(system).__name__}"
            )
        if not isinstance(scheme, (str, Scheme)):
            raise TypeError(
                f"Run: scheme must be a scheme name or an odeopt scheme; got {scheme!r}"
            )
        unknown = sorted(set(kwargs) - set(RUN_KEYWORDS))
        if unknown:
            raise TypeError(
                f"Run: unknown integrate keyword(s) {unknown}; a Run takes {list(RUN_KEYWORDS)} "
                "(system parameters go in params={...}, save is always 'final')"
            )
        object.__setattr__(self, "system", system)
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "kwargs", dict(kwargs))

    @classmethod
    def grid(
        cls, system: PortHamiltonian, scheme: str | Scheme = "symplectic_euler", **values: Any
    ) -> dict[str, Run]:
        """Named runs over the cartesian grid of every list-valued keyword.

        Keywords are integrate keywords or parameters of ``system`` (given to it through
        ``params``); a ``list`` value is a grid axis, anything else (a tuple such as ``t_span``
        included) is fixed. Names list the grid values in keyword order: ``"h=0.1,
        friction=0.5"``; without a list the one run is named ``"run"``.
        """
        names = {p.name for p in system.parameters}
        bad = sorted(k for k in values if k not in RUN_KEYWORDS and k not in names)
        if bad:
            raise TypeError(
                f"Run.grid: unknown keyword(s) {bad}; give integrate keywords "
                f"{list(RUN_KEYWORDS)} or parameters of {system.name} {sorted(names)}"
            )
        axes = [k for k, v in values.items() if isinstance(v, list)]
        for k in axes:
            if not values[k]:
                raise ValueError(f"Run.grid: {k}=[] is empty; give at least one value")
        runs: dict[str, Run] = {}
        for combo in itertools.product(*(values[k] for k in axes)):
            chosen = {**values, **dict(zip(axes, combo, strict=True))}
            params = dict(chosen.pop("params", None) or {})
            for k in list(chosen):
                if k in names:
                    params[k] = chosen.pop(k)
            if params:
                chosen["params"] = params
            name = (
                ", ".join(
                    f"{k}={v:g}" if _is_real(v) else f"{k}={v}"
                    for k, v in zip(axes, combo, strict=True)
                )
                or "run"
            )
            runs[name] = cls(system, scheme, **chosen)
        return runs


def _position(system: PortHamiltonian) -> str:
    """The block the objective reads (θ), or the system's first block."""
    return system.loss.block.name if system.loss is not None else system.blocks[0].name


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class Study:
    """A problem, the starts ``x0`` (block name → (batch, n) array; the position block has
    the problem's dimension) and named :class:`Run` s."""

    def __init__(self, problem: Any, x0: Mapping[str, Any], runs: Mapping[str, Run]) -> None:
        check_problem(problem, "Study")
        check_starts(x0, "Study")
        if not isinstance(runs, Mapping) or not runs:
            raise ValueError(
                f"Study: runs must be a non-empty dict of name → oo.Run(...); got {runs!r}"
            )
        for name, r in runs.items():
            if not isinstance(r, Run):
                raise TypeError(
                    f"Study: runs[{name!r}] must be an oo.Run(system, scheme, **kwargs); "
                    f"got {type(r).__name__}"
                )
        starts = {b: np.asarray(v, dtype=np.float64) for b, v in x0.items()}
        batch = None
        for b, v in starts.items():
            if v.ndim != 2:
                raise ValueError(f"Study: x0[{b!r}] must have shape (batch, n); got {v.shape}")
            if batch is not None and v.shape[0] != batch:
                raise ValueError(f"Study: x0[{b!r}] has {v.shape[0]} starts, not {batch}")
            batch = v.shape[0]
        dim = getattr(problem, "dim", None)
        for name, r in runs.items():
            pos = _position(r.system)
            if pos not in starts:
                raise ValueError(
                    f"Study: x0 needs the position block {pos!r} of runs[{name!r}]; "
                    f"it has {sorted(starts)}"
                )
            if dim is not None and starts[pos].shape[1] != dim:
                raise ValueError(
                    f"Study: x0[{pos!r}] has shape {starts[pos].shape}, but the problem has "
                    f"dim {dim}; give (batch, {dim})"
                )
        self.problem = problem
        self.x0 = starts
        self.runs = dict(runs)
        self.batch = int(batch or 0)

    def run(self, chunk_size: int | None = None) -> StudyResult:
        """Integrate every run over chunks of ``chunk_size`` starts (None: one chunk) with
        ``save="final"``; the result is independent of ``chunk_size``."""
        if chunk_size is None:
            chunk_size = max(self.batch, 1)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
            raise TypeError(f"Study.run: chunk_size must be a positive int; got {chunk_size!r}")
        if chunk_size < 1:
            raise ValueError(f"Study.run: chunk_size must be ≥ 1; got {chunk_size}")
        import xarray as xr

        n_runs = len(self.runs)
        finals: dict[str, np.ndarray] = {}
        F = np.full((n_runs, self.batch), np.nan)
        G = np.full((n_runs, self.batch), np.nan)
        t_stop = np.full((n_runs, self.batch), np.nan)
        status = np.full((n_runs, self.batch), "", dtype=object)
        for i, r in enumerate(self.runs.values()):
            own = {b.name for b in r.system.all_blocks}
            x0 = {b: v for b, v in self.x0.items() if b in own}
            for lo in range(0, self.batch, chunk_size):
                sl = slice(lo, min(lo + chunk_size, self.batch))
                tr = integrate(
                    r.system,
                    self.problem,
                    {b: v[sl] for b, v in x0.items()},
                    scheme=r.scheme,
                    save="final",
                    progress=False,
                    **r.kwargs,
                ).numpy()
                for b, v in tr.final.items():
                    v = np.asarray(v, dtype=np.float64)
                    if b not in finals:
                        finals[b] = np.full((n_runs, self.batch, v.shape[1]), np.nan)
                    finals[b][i, sl] = v
                F[i, sl] = np.asarray(tr.loss[-1], dtype=np.float64)
                G[i, sl] = np.asarray(tr.grad_norm[-1], dtype=np.float64)
                t_stop[i, sl] = tr.t_stop
                status[i, sl] = tr.status
        dims = ("run", "start")
        data = {b: ((*dims, f"{b}_dim"), v) for b, v in finals.items()}
        data.update(F=(dims, F), grad_norm=(dims, G), t_stop=(dims, t_stop))
        data["status"] = (dims, status.astype(str))
        for b, v in self.x0.items():
            data[f"x0_{b}"] = (("start", f"{b}_dim"), v)
        ds = xr.Dataset(data, coords={"run": list(self.runs), "start": np.arange(self.batch)})
        ds["F"].attrs["long_name"] = "F at the final state"
        ds["grad_norm"].attrs["long_name"] = "|∇F| at the final state"
        ds["t_stop"].attrs["long_name"] = "time the trajectory stopped (NaN: ran to the end)"
        ds.attrs["position"] = sorted({_position(r.system) for r in self.runs.values()})[0]
        return StudyResult(ds, self.problem)


class StudyResult:
    """The result of :meth:`Study.run`: ``data`` (xarray Dataset, run × start: one variable
    per final block with a coordinate dimension ``<block>_dim``, ``F``, ``grad_norm``,
    ``status``, ``t_stop``; the starts ``x0_<block>`` (start × ``<block>_dim``); attribute
    ``position``, the block F reads), the outcome of every start and tables over them."""

    def __init__(self, data: Any, problem: Any, radius: float = 0.05) -> None:
        if not radius > 0:
            raise ValueError(f"StudyResult: radius must be > 0; got {radius!r}")
        self.data = data
        self.problem = problem
        self.radius = float(radius)

    def minima(self) -> list[tuple[str, np.ndarray]]:
        """(label, point) of every minimum an outcome can name: the critical points of kind
        "minimum" in ``problem.critical_points()``'s order, or ``problem.minima`` where the
        problem has no exact catalogue. The label is ``str`` of the exact point."""
        from .problems.base import CriticalPointsUnavailable

        try:
            cps = self.problem.critical_points()
        except (CriticalPointsUnavailable, AttributeError):
            return [(str(m.point), m.numeric) for m in getattr(self.problem, "minima", [])]
        return [(str(c.point), c.numeric) for c in cps if c.kind == "minimum"]

    @property
    def outcome(self) -> Any:
        """Per run and start, Bensaid's protocol: status "diverged" → "diverged"; "converged"
        within ``radius`` (Euclidean) of a minimum → its label (the nearest if several);
        "converged" elsewhere → "other"; any other status → "not converged"."""
        import xarray as xr

        status = self.data["status"].values
        theta = self.data[self.data.attrs["position"]].values
        out = np.full(status.shape, "not converged", dtype=object)
        out[status == "diverged"] = "diverged"
        conv = status == "converged"
        out[conv] = "other"
        best = np.full(status.shape, np.inf)
        for label, point in self.minima():
            with np.errstate(invalid="ignore"):
                d = np.linalg.norm(theta - point, axis=-1)
            hit = conv & (d < self.radius) & (d < best)
            out[hit] = label
            best = np.where(hit, d, best)
        return xr.DataArray(
            out.astype(str),
            coords=self.data["status"].coords,
            dims=("run", "start"),
            name="outcome",
        )

    def table(self) -> Any:
        """Share of starts per outcome: a pandas DataFrame indexed by run name with one column
        per minimum (labelled as in :meth:`minima`), then "other", "not converged",
        "diverged"; each row sums to 1."""
        import pandas as pd

        out = self.outcome.values
        cols = [label for label, _ in self.minima()] + list(OUTCOMES)
        n = max(out.shape[1], 1)
        table = pd.DataFrame(
            [[np.count_nonzero(row == c) / n for c in cols] for row in out],
            index=pd.Index(self.data["run"].values.tolist(), name="run"),
            columns=cols,
        )
        return table

    def success(self, threshold: float) -> Any:
        """Share of starts per run whose final F < ``threshold`` (a pandas Series)."""
        import pandas as pd

        if not _is_real(threshold):
            raise TypeError(f"success: threshold must be a real number; got {threshold!r}")
        F = self.data["F"].values
        return pd.Series(
            (F < threshold).mean(axis=1),
            index=pd.Index(self.data["run"].values.tolist(), name="run"),
            name=f"F < {threshold:g}",
        )

    def plot_basins(self, run: str, **kwargs: Any) -> Any:
        """The starts of ``run`` coloured by outcome, minima marked (see
        :func:`odeopt.plot.basins`); returns the matplotlib axes."""
        from . import plot

        return plot.basins(self, run, **kwargs)

    def plot_table(self, **kwargs: Any) -> Any:
        """The outcome shares of every run as stacked bars (see :func:`odeopt.plot.table`)."""
        from . import plot

        return plot.table(self, **kwargs)

    def __repr__(self) -> str:
        return (
            f"StudyResult({self.data.sizes['run']} runs × {self.data.sizes['start']} starts "
            f"on {getattr(self.problem, 'name', type(self.problem).__name__)})"
        )
