"""The result of a study: data (xarray), outcomes by Bensaid's protocol, tables, files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .runs import is_real

__all__ = ["OUTCOMES", "StudyResult"]

#: the outcome labels that follow the minima's labels, in table order
OUTCOMES = ("other", "not converged", "diverged")


def _minima_of(problem: Any) -> list[tuple[str, np.ndarray]]:
    """(label, point) of every minimum an outcome can name: the critical points of kind
    "minimum" in ``problem.critical_points()``'s order, or ``problem.minima`` where the
    problem has no exact catalogue. The label is ``str`` of the exact point."""
    from ..problems.base import CriticalPointsUnavailable

    try:
        cps = problem.critical_points()
    except (CriticalPointsUnavailable, AttributeError):
        return [
            (str(m.point), np.asarray(m.numeric, dtype=float))
            for m in getattr(problem, "minima", [])
        ]
    return [(str(c.point), np.asarray(c.numeric, dtype=float)) for c in cps if c.kind == "minimum"]


class StudyResult:
    """The result of :meth:`Study.run`.

    ``data`` is an xarray Dataset with dimensions run × start:

    * one variable per final block (run × start × ``<block>_dim``) and the starts
      ``x0_<block>`` (start × ``<block>_dim``);
    * ``F``, ``grad_norm`` (|∇F|), ``status`` (as :class:`~odeopt.Trajectory` names it),
      ``t_stop`` (NaN: ran to the end), ``steps`` (accepted steps; −1 where the backend does
      not count them) and, when asked, ``best_F`` (least F along the run);
    * the minima an outcome can name: coordinate ``minimum`` (labels) and
      ``minimum_point`` (minimum × position dim); per run the coordinates ``base`` and
      ``grid_<key>`` (the grid values that named it, "" where none);
    * per run the coordinate ``position`` (the block F reads; the attribute ``position`` is
      the first run's), attributes ``problem`` (its name) and ``radius``.

    ``result.outcome`` decides each start by Bensaid's protocol, ``table()`` counts them.
    The result is saved and loaded whole (:meth:`save`, :meth:`load`: netCDF).
    """

    def __init__(self, data: Any, problem: Any = None, radius: float = 0.05) -> None:
        if not (is_real(radius) and radius > 0):
            raise ValueError(f"StudyResult: radius must be a number > 0; got {radius!r}")
        if "minimum" not in data.coords:
            if problem is None:
                raise ValueError("StudyResult: give the problem (its minima name the outcomes)")
            pos = (
                str(data["position"].values[0])
                if "position" in data.coords
                else (data.attrs["position"])
            )
            minima = _minima_of(problem)
            dim = data[pos].shape[-1]
            points = np.array([p for _, p in minima], dtype=float).reshape(len(minima), dim)
            data = data.assign_coords(minimum=[label for label, _ in minima])
            data["minimum_point"] = (("minimum", f"{pos}_dim"), points)
            data.attrs["problem"] = getattr(problem, "name", type(problem).__name__)
        data.attrs["radius"] = float(radius)
        self.data = data
        self.problem = problem
        self.radius = float(radius)
        self._outcome: Any = None

    def minima(self) -> list[tuple[str, np.ndarray]]:
        """(label, point) of every minimum an outcome can name (``str`` of the exact point,
        in the problem's catalogue order)."""
        labels = self.data["minimum"].values.tolist()
        points = self.data["minimum_point"].values
        return [(str(label), points[k]) for k, label in enumerate(labels)]

    def position(self, run: int | str) -> str:
        """The block F reads in ``run`` (an index or a name)."""
        i = run if isinstance(run, (int, np.integer)) else self.runs.index(run)
        if "position" in self.data.coords:
            return str(self.data["position"].values[i])
        return str(self.data.attrs["position"])

    @property
    def runs(self) -> list[str]:
        return [str(r) for r in self.data["run"].values]

    @property
    def outcome(self) -> Any:
        """Per run and start, Bensaid's protocol: status "diverged" → "diverged"; "converged"
        within ``radius`` (Euclidean) of a minimum → its label (the nearest if several);
        "converged" elsewhere → "other"; any other status → "not converged". Computed once
        (the result's data are not meant to change)."""
        if self._outcome is not None:
            return self._outcome
        import xarray as xr

        status = self.data["status"].values
        out = np.full(status.shape, "not converged", dtype=object)
        out[status == "diverged"] = "diverged"
        conv = status == "converged"
        out[conv] = "other"
        best = np.full(status.shape, np.inf)
        d = np.full(status.shape, np.inf)
        for label, point in self.minima():
            for i in range(status.shape[0]):  # each run's own position block
                theta = self.data[self.position(i)].values[i]
                with np.errstate(invalid="ignore"):
                    d[i] = np.linalg.norm(theta - point, axis=-1)
            hit = conv & (d < self.radius) & (d < best)
            out[hit] = label
            best = np.where(hit, d, best)
        self._outcome = xr.DataArray(
            out.astype(str),
            coords={"run": self.data["run"], "start": self.data["start"]},
            dims=("run", "start"),
            name="outcome",
        )
        return self._outcome

    def table(self) -> Any:
        """Share of starts per outcome: a pandas DataFrame indexed by run name with one column
        per minimum (labelled as in :meth:`minima`), then "other", "not converged",
        "diverged"; each row sums to 1."""
        import pandas as pd

        out = self.outcome.values
        cols = [label for label, _ in self.minima()] + list(OUTCOMES)
        n = max(out.shape[1], 1)
        return pd.DataFrame(
            [[np.count_nonzero(row == c) / n for c in cols] for row in out],
            index=pd.Index(self.runs, name="run"),
            columns=cols,
        )

    def success(self, threshold: float, best: bool = False, any_over: str | None = None) -> Any:
        """Share of starts whose F < ``threshold`` (a pandas Series per run): F at the end,
        or with ``best=True`` the least F along the run (``Study.run(best=True)``).

        ``any_over="seed"`` counts a start as a success when any run of a group succeeds
        from it, the groups being the runs that differ in grid value ``seed`` only (ECD's
        "any of 5 runs"); the Series is then indexed by group (the runs' names without that
        value; a run without that grid value is a group of its own, under its name)."""
        import pandas as pd

        if not is_real(threshold):
            raise TypeError(f"success: threshold must be a real number; got {threshold!r}")
        if best and "best_F" not in self.data:
            raise ValueError(
                "success(best=True) needs the best F along each run: run the study with "
                "Study.run(best=True)"
            )
        F = self.data["best_F" if best else "F"].values
        ok = F < threshold
        name = f"{'best ' if best else ''}F < {threshold:g}"
        if any_over is None:
            return pd.Series(ok.mean(axis=1), index=pd.Index(self.runs, name="run"), name=name)
        key = f"grid_{any_over}"
        if key not in self.data.coords:
            grid = sorted(str(c)[5:] for c in self.data.coords if str(c).startswith("grid_"))
            raise ValueError(
                f"success: any_over={any_over!r} is not a grid keyword of these runs; they "
                f"have {grid} (name runs with Run.grid / Run.torch grids)"
            )
        others = [c for c in self.data.coords if str(c).startswith("grid_") and c != key]
        groups: dict[str, list[int]] = {}
        for i, run in enumerate(self.runs):
            if not str(self.data[key].values[i]):  # not a repeat over any_over: on its own
                groups.setdefault(run, []).append(i)
                continue
            parts = [str(self.data["base"].values[i])] + [
                f"{str(c)[5:]}={self.data[c].values[i]}"
                for c in others
                if str(self.data[c].values[i])
            ]
            group = ", ".join(p for p in parts if p) or "run"
            if group in self.runs and not str(self.data[key].values[self.runs.index(group)]):
                raise ValueError(
                    f"success: the group {group!r} of runs over {any_over} is also a run's "
                    "name; give the grid another name= (Run.grid(..., name=...))"
                )
            groups.setdefault(group, []).append(i)
        return pd.Series(
            [ok[idx].any(axis=0).mean() for idx in groups.values()],
            index=pd.Index(list(groups), name="group"),
            name=f"{name}, any over {any_over}",
        )

    # -- files
    def save(self, path: str | Path) -> Path:
        """Write the whole result (data, minima, radius) to a netCDF file; returns the path."""
        path = Path(path)
        self.data.to_netcdf(path, engine="scipy")
        return path

    @classmethod
    def load(cls, path: str | Path, problem: Any = None) -> StudyResult:
        """A result written by :meth:`save` (``problem`` is optional: the minima are in the
        file)."""
        import xarray as xr

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"StudyResult.load: no file {str(path)!r}")
        data = xr.load_dataset(path, engine="scipy")
        # netCDF3 stores strings as characters and integers in 32 bits: back to str, int64
        for v in list(data.variables):
            arr = data[v]
            if arr.dtype == object or arr.dtype.kind == "U":
                values = arr.values.astype(str)
            elif arr.dtype.kind == "i":
                values = arr.values.astype(np.int64)
            else:
                continue
            if v in data.coords:
                data = data.assign_coords({v: (arr.dims, values, arr.attrs)})
            else:
                data[v] = (arr.dims, values, arr.attrs)
        return cls(data, problem, float(data.attrs["radius"]))

    # -- plots
    def plot_basins(self, run: str, **kwargs: Any) -> Any:
        """The starts of ``run`` coloured by outcome, minima marked (see
        :func:`odeopt.plot.basins`); returns the matplotlib axes."""
        from .. import plot

        return plot.basins(self, run, **kwargs)

    def plot_table(self, **kwargs: Any) -> Any:
        """The outcome shares of every run as stacked bars (see :func:`odeopt.plot.table`)."""
        from .. import plot

        return plot.table(self, **kwargs)

    def __repr__(self) -> str:
        return (
            f"StudyResult({self.data.sizes['run']} runs × {self.data.sizes['start']} starts "
            f"on {self.data.attrs.get('problem', '?')})"
        )
