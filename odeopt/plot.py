"""Plots people read: phase portraits, trajectories, loss / energy / step-size curves, basin
maps and outcome tables of studies (matplotlib, imported only when a function is called).

Every function draws into ``ax`` (default: the current axes, ``plt.gca()``) and returns it;
every figure has labelled axes and a title, and a colour bar or legend wherever colour
carries meaning. Outcome colours are fixed per label (:func:`outcome_colours`): the k-th
minimum of a problem's catalogue always gets the k-th colour of :data:`MINIMUM_COLOURS`,
``"other"`` is grey, ``"not converged"`` near-black and ``"diverged"`` red, in every run and
every figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .integrate.trajectory import Trajectory
    from .study import StudyResult
    from .symbolic.system import PortHamiltonian

__all__ = [
    "MINIMUM_COLOURS",
    "OUTCOME_COLOURS",
    "basins",
    "energy",
    "learned_energy",
    "loss",
    "outcome_colours",
    "phase_portrait",
    "step_size",
    "table",
    "trajectory",
]

#: colours of the minima in catalogue order (no red, grey or black: those mean outcomes)
MINIMUM_COLOURS = (
    "#1f77b4",  # blue
    "#ff7f0e",  # orange
    "#2ca02c",  # green
    "#9467bd",  # purple
    "#17becf",  # cyan
    "#e377c2",  # pink
    "#bcbd22",  # olive
    "#8c564b",  # brown
)
#: the colours of the outcomes that are not a minimum
OUTCOME_COLOURS = {"other": "#a0a0a0", "not converged": "#303030", "diverged": "#d62728"}

# colours on which white text reads better than black
_DARK = {"#1f77b4", "#9467bd", "#8c564b", "#303030", "#d62728"}

#: what the step-size plot says when a trajectory has none
NO_STEP_SIZES = (
    "only odeopt's adaptive schemes (euler_richardson, heun, oo.schemes.EnergyDecrease(...)) "
    "record the accepted step sizes; this trajectory's scheme is fixed-step (h is constant) "
    "or an external solver (scipy, torchdiffeq)"
)


def _axes(ax: Any) -> Any:
    import matplotlib.pyplot as plt

    return plt.gca() if ax is None else ax


def _numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=float)


def _max_lines(max_lines: Any, where: str) -> int:
    if isinstance(max_lines, bool) or not isinstance(max_lines, (int, np.integer)):
        raise TypeError(f"{where}: max_lines must be a positive int; got {max_lines!r}")
    if max_lines < 1:
        raise ValueError(f"{where}: max_lines must be ≥ 1; got {max_lines}")
    return int(max_lines)


def _who(tr: Trajectory) -> str:
    return " with ".join(s for s in (tr.system_name, tr.scheme) if s) or "trajectory"


def _shown(batch: int, n: int) -> str:
    return f" (first {n} of {batch})" if n < batch else ""


# ---------------------------------------------------------------- phase portraits
def _uses_time(system: PortHamiltonian) -> bool:
    from .symbolic.language import Time

    exprs = [system.hamiltonian, *system.vector_field.values()]
    return any(isinstance(s, Time) for e in exprs for s in e.free_symbols)


def phase_portrait(
    system: PortHamiltonian,
    problem: Any = None,
    ax: Any = None,
    t: float = 0.0,
    lim: float | tuple[float, float] = 2.5,
    grid: int = 41,
    density: float = 1.1,
    params: dict[str, Any] | None = None,
    levels: int = 20,
    cmap: str = "Blues",
    colorbar: bool = True,
) -> Any:
    """The flow of a two-block ``system`` (position θ and one other block, e.g. momentum p)
    on a one-dimensional objective: streamlines of (θ̇, ṗ) over filled level sets of H, on a
    ``grid``² grid of [−lim, lim]² (or [lo, hi]² for ``lim=(lo, hi)``), with a colour bar
    for H.

    ``problem``: None for F = θ²/2 + 1/2, or a problem of dim 1 with a ``sympy()`` form.
    A time-dependent system (e.g. nesterov's friction r/(t + t₀)) is drawn at time ``t`` and
    the title says so. ``params`` sets the system's parameters (defaults otherwise).
    Raises ValueError for systems that are not position + one block (no auxiliary blocks)
    and for problems that are not one-dimensional or have no symbolic form.
    """
    import sympy as sp

    name = getattr(system, "name", type(system).__name__)
    if getattr(system, "loss", None) is None:
        raise ValueError(f"phase_portrait: system {name!r} has no loss F; give a zoo system")
    blocks = [b.name for b in system.blocks]
    if len(blocks) != 2 or system.aux_blocks:
        aux = [b.name for b in system.aux_blocks]
        raise ValueError(
            f"phase_portrait: system {name!r} has blocks {blocks}"
            + (f" and auxiliary blocks {aux}" if aux else "")
            + "; a phase portrait needs exactly two blocks (the position and one other, "
            "e.g. heavy_ball's theta and p) and no auxiliary blocks"
        )
    if system.metric is not None:
        raise ValueError(
            f"phase_portrait: system {name!r} has a full metric P(θ); the portrait draws "
            "coordinate-wise systems only"
        )
    position = system.loss.block.name
    other = blocks[1] if blocks[0] == position else blocks[0]
    if problem is None:
        x = sp.Symbol("x", real=True)
        F, coords = x**2 / 2 + sp.Rational(1, 2), (x,)
        what = "F = θ²/2 + 1/2"
    else:
        pname = getattr(problem, "name", type(problem).__name__)
        dim = getattr(problem, "dim", None)
        if dim != 1:
            raise ValueError(
                f"phase_portrait: problem {pname!r} has dim {dim}; the (θ, {other}) plane of "
                f"system {name!r} needs a problem of dim 1 (e.g. oo.problems.quadratic(1))"
            )
        form = problem.sympy() if hasattr(problem, "sympy") else None
        if form is None:
            raise ValueError(
                f"phase_portrait: problem {pname!r} has no sympy() form; the portrait of "
                f"system {name!r} needs the exact F(θ)"
            )
        F, coords = form
        what = f"F = {F}" if len(str(F)) <= 30 else f"F = {pname}"
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
        raise ValueError(f"phase_portrait: grid must be an int ≥ 2; got {grid!r}")
    if np.isscalar(lim):
        lo, hi = -float(lim), float(lim)  # type: ignore[arg-type]
    else:
        lo, hi = (float(v) for v in lim)  # type: ignore[union-attr]
    if not hi > lo:
        raise ValueError(f"phase_portrait: lim must give lo < hi; got {lim!r}")
    ax = _axes(ax)
    comp = system.explicit(F, list(coords)).compile("numpy")
    axis = np.linspace(lo, hi, int(grid))
    TH, P = np.meshgrid(axis, axis)
    state = {position: TH.reshape(-1, 1), other: P.reshape(-1, 1)}
    values = dict(params or {})
    with np.errstate(all="ignore"):
        f = comp.field(state, t, **values)
        H = np.asarray(comp.energy(state, t, **values), dtype=float).reshape(TH.shape)
    U = np.asarray(f[position], dtype=float).reshape(TH.shape)
    W = np.asarray(f[other], dtype=float).reshape(TH.shape)
    bad = ~(np.isfinite(U) & np.isfinite(W))
    U, W = np.where(bad, 0.0, U), np.where(bad, 0.0, W)
    filled = ax.contourf(TH, P, np.ma.masked_invalid(H), levels=levels, cmap=cmap, alpha=0.7)
    ax.streamplot(TH, P, U, W, color="k", density=density, linewidth=0.7, arrowsize=0.8)
    if colorbar:
        ax.figure.colorbar(filled, ax=ax, label="H")
    when = f" at t = {t:g}" if _uses_time(system) else ""
    ax.set_title(f"{name}: flow over level sets of H{when}")
    ax.set_xlabel(f"{position} ({what})")
    ax.set_ylabel(other)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    return ax


# ---------------------------------------------------------------- trajectories
def trajectory(
    tr: Trajectory,
    block: str = "theta",
    coords: Sequence[int] | None = None,
    ax: Any = None,
    max_lines: int = 200,
    **kwargs: Any,
) -> Any:
    """Paths of the first ``max_lines`` trajectories: coordinates ``coords = (i, j)`` of
    ``block`` in the plane, or one coordinate ``coords = (i,)`` against t (the default for
    a one-dimensional block; ``(0, 1)`` otherwise). Starts are marked ○, ends ■ (a stopped
    trajectory ends where it stopped). ``kwargs`` go to ``ax.plot``."""
    n_lines = _max_lines(max_lines, "trajectory")
    tr = tr.numpy()
    X = _numpy(tr[block])
    if X.ndim != 3:
        raise ValueError(f"trajectory: block {block!r} has shape {X.shape}, not (time, batch, n)")
    dim = X.shape[2]
    if coords is None:
        coords = (0,) if dim == 1 else (0, 1)
    coords = tuple(coords)
    if len(coords) not in (1, 2):
        raise ValueError(
            f"trajectory: coords must be (i,) (coordinate i against t) or (i, j) (a plane); "
            f"got {coords!r}"
        )
    for c in coords:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not -dim <= c < dim:
            raise IndexError(
                f"trajectory: coords={coords!r} is out of range for block {block!r} with {dim} "
                f"coordinate(s); give indices in 0 … {dim - 1}"
                + (" or coords=None (its coordinate against t)" if dim == 1 else "")
            )
    ax = _axes(ax)
    t = _numpy(tr.t)
    n = min(X.shape[1], n_lines)
    kwargs.setdefault("lw", 0.8)
    if len(coords) == 1:
        (i,) = coords
        stop = np.asarray(tr.t_stop, dtype=float)[:n]
        t_end = np.where(np.isfinite(stop), stop, t[-1])
        for b in range(n):
            ax.plot(t, X[:, b, i], **kwargs)
        xs, ys = np.full(n, t[0]), X[0, :n, i]
        xe, ye = t_end, X[-1, :n, i]
        ax.set_xlabel("t")
        ax.set_ylabel(f"{block}[{i}]")
        ax.set_title(f"{_who(tr)}: {block}[{i}](t){_shown(X.shape[1], n)}")
    else:
        i, j = coords
        for b in range(n):
            ax.plot(X[:, b, i], X[:, b, j], **kwargs)
        xs, ys, xe, ye = X[0, :n, i], X[0, :n, j], X[-1, :n, i], X[-1, :n, j]
        ax.set_xlabel(f"{block}[{i}]")
        ax.set_ylabel(f"{block}[{j}]")
        ax.set_title(f"{_who(tr)}: paths of {block}{_shown(X.shape[1], n)}")
    ax.scatter(xs, ys, s=18, facecolors="none", edgecolors="k", lw=0.8, zorder=3, label="start")
    ax.scatter(xe, ye, s=14, marker="s", c="k", lw=0, zorder=3, label="end")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def _curves(
    tr: Trajectory,
    values: Any,
    what: str,
    ylabel: str,
    title: str,
    ax: Any,
    max_lines: int,
    log: bool | None,
    kwargs: dict[str, Any],
) -> Any:
    n_lines = _max_lines(max_lines, what)
    tr = tr.numpy()
    Y = _numpy(values)
    t = _numpy(tr.t)
    batch = Y.shape[1]
    n = min(batch, n_lines)
    Y = Y[:, :n]
    ax = _axes(ax)
    kwargs.setdefault("lw", 0.8)
    if len(t) < 3:
        kwargs.setdefault("marker", ".")
    ax.plot(t, Y, **kwargs)
    finite = Y[np.isfinite(Y)]
    if log is None:
        log = finite.size > 0 and bool((finite > 0).all())
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{_who(tr)}: {title}{_shown(batch, n)}")
    return ax


def _stopped_note(tr: Trajectory, ax: Any, n: int) -> None:
    stopped = np.isfinite(np.asarray(tr.t_stop, dtype=float)[:n])
    if stopped.any():
        ax.text(
            0.99,
            0.98,
            f"{int(stopped.sum())} stopped early: they keep their last value",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize="small",
            color="0.3",
        )


def loss(
    tr: Trajectory, ax: Any = None, max_lines: int = 50, log: bool | None = None, **kwargs: Any
) -> Any:
    """F(t) of the first ``max_lines`` trajectories; a log axis when every value is > 0
    (``log=None``) or as asked. A trajectory that stopped (converged, diverged, …) keeps its
    last value at later saved times: the plot says how many did."""
    ax = _curves(tr, tr.loss, "loss", "F", "F(t)", ax, max_lines, log, kwargs)
    _stopped_note(tr, ax, max_lines)
    return ax


def energy(
    tr: Trajectory, ax: Any = None, max_lines: int = 50, log: bool | None = False, **kwargs: Any
) -> Any:
    """H(t) of the first ``max_lines`` trajectories (a linear axis unless ``log``)."""
    ax = _curves(tr, tr.energy, "energy", "H", "H(t)", ax, max_lines, log, kwargs)
    _stopped_note(tr, ax, max_lines)
    return ax


def step_size(tr: Trajectory, ax: Any = None, max_lines: int = 50, **kwargs: Any) -> Any:
    """The accepted step size h against t (log axis) of the first ``max_lines`` trajectories,
    from ``tr.step_size`` (time, batch): the size of the last step accepted before each saved
    point. ValueError where the trajectory has none (fixed-step schemes and solvers)."""
    if getattr(tr, "step_size", None) is None:
        raise ValueError(
            f"step_size: the trajectory of {_who(tr)} (backend {tr.backend or '?'}) has no "
            f"step sizes (tr.step_size is None): {NO_STEP_SIZES}"
        )
    h = _numpy(tr.step_size)
    h = np.where(h > 0, h, np.nan)  # stopped rows, if recorded as 0, leave no point
    ax = _curves(tr, h, "step_size", "accepted step size h", "h(t)", ax, max_lines, True, kwargs)
    _stopped_note(tr, ax, max_lines)
    return ax


# ---------------------------------------------------------------- studies
def outcome_colours(labels: StudyResult | Sequence[str]) -> dict[str, str]:
    """Label → colour for a study's outcomes: the minima (a :class:`StudyResult`'s
    ``minima()`` order, or the labels given, "other"/"not converged"/"diverged" excluded)
    take :data:`MINIMUM_COLOURS` in turn (cycling past eight), then :data:`OUTCOME_COLOURS`."""
    if hasattr(labels, "minima"):
        names = [label for label, _ in labels.minima()]
    else:
        names = [str(label) for label in labels if label not in OUTCOME_COLOURS]
    out = {label: MINIMUM_COLOURS[k % len(MINIMUM_COLOURS)] for k, label in enumerate(names)}
    out.update(OUTCOME_COLOURS)
    return out


def _run_index(result: StudyResult, run: str, where: str) -> int:
    names = [str(r) for r in result.data["run"].values.tolist()]
    if run not in names:
        raise KeyError(f"{where}: no run {run!r}; the study's runs are {names}")
    return names.index(run)


def _problem_name(result: StudyResult) -> str:
    name = result.data.attrs.get("problem")
    if name:
        return str(name)
    problem = getattr(result, "problem", None)
    return "the problem" if problem is None else getattr(problem, "name", type(problem).__name__)


def _short(label: str, result: StudyResult) -> str:
    """A legend's name for an outcome: the minimum's exact label when it is short, its
    numeric point to 3 digits when the exact form is long (roots of cubics: Himmelblau)."""
    if len(label) <= 24:
        return label
    for name, point in result.minima():
        if name == label:
            return "(" + ", ".join(f"{v:.3g}" for v in np.asarray(point).ravel()) + ")"
    return label[:21] + "…"


def basins(
    result: StudyResult,
    run: str,
    ax: Any = None,
    coords: Sequence[int] = (0, 1),
    s: float | None = None,
    legend: bool = True,
) -> Any:
    """The starts of ``run`` coloured by their outcome (:func:`outcome_colours`), the
    minima marked ★ in their colours, a legend with each outcome's share.

    Two or more coordinates: the plane of ``coords`` (the starts' other coordinates are
    projected out); one coordinate: the starts along θ, one row per outcome. One scatter per
    outcome with small rasterized markers (size ``s``, default shrinking with the number of
    starts), so that 10⁶ starts draw in seconds."""
    k = _run_index(result, run, "basins")
    data = result.data
    position = result.position(k)
    x0 = np.asarray(data[f"x0_{position}"].values, dtype=float)
    labels = np.asarray(result.outcome.values[k]).astype(str)
    colours = outcome_colours(result)
    minima = result.minima()
    order = [label for label in colours if (labels == label).any()]
    order += sorted(set(labels.tolist()) - set(order))  # none today; drawn grey if ever
    dim = x0.shape[1]
    n = x0.shape[0]
    if s is None:
        s = float(np.clip(20_000.0 / max(n, 1), 0.5, 16.0))
    ax = _axes(ax)
    if dim == 1:
        rows = {label: r for r, label in enumerate(order)}
        for label in order:
            hit = labels == label
            ax.scatter(
                x0[hit, 0],
                np.full(hit.sum(), rows[label], dtype=float),
                s=max(s, 4.0),
                c=colours.get(label, "#a0a0a0"),
                marker="|",
                rasterized=True,
                label=f"{_short(label, result)}: {hit.mean():.1%}",
            )
        stars = [(label, p) for label, p in minima if label in rows]
        if stars:
            ax.scatter(
                [p[0] for _, p in stars],
                [rows[label] for label, _ in stars],
                marker="*",
                s=240,
                c=[colours[label] for label, _ in stars],
                edgecolors="k",
                linewidths=1.5,
                zorder=3,
                label="_minima",
            )
        ax.set_yticks(range(len(order)), order)
        ax.set_ylim(-0.6, len(order) - 0.4)
        ax.set_xlabel(f"{position}[0] at the start")
        ax.set_ylabel("outcome")
    else:
        coords = tuple(coords)
        if len(coords) != 2 or not all(
            isinstance(c, (int, np.integer)) and not isinstance(c, bool) and -dim <= c < dim
            for c in coords
        ):
            raise IndexError(
                f"basins: coords={coords!r} must be two coordinate indices in 0 … {dim - 1} "
                f"of the starts' {position!r} ({dim} coordinates)"
            )
        i, j = coords
        for label in order:
            hit = labels == label
            ax.scatter(
                x0[hit, i],
                x0[hit, j],
                s=s,
                c=colours.get(label, "#a0a0a0"),
                marker="o" if n <= 20_000 else ".",
                linewidths=0,
                rasterized=True,
                label=f"{_short(label, result)}: {hit.mean():.1%}",
            )
        if minima:
            pts = np.array([p for _, p in minima], dtype=float)
            ax.scatter(
                pts[:, i],
                pts[:, j],
                marker="*",
                s=240,
                c=[colours[label] for label, _ in minima],
                edgecolors="k",
                linewidths=1.5,
                zorder=3,
                label="_minima",
            )
        lo, hi = x0.min(axis=0), x0.max(axis=0)
        pad = 0.02 * np.maximum(hi - lo, 1e-12)
        ax.set_xlim(lo[i] - pad[i], hi[i] + pad[i])
        ax.set_ylim(lo[j] - pad[j], hi[j] + pad[j])
        ax.set_xlabel(f"{position}[{i}] at the start")
        ax.set_ylabel(f"{position}[{j}] at the start")
    ax.set_title(f"{run} on {_problem_name(result)}: outcome of {n:,} starts")
    if legend:
        from matplotlib.lines import Line2D

        handles, names = ax.get_legend_handles_labels()
        if minima:  # the stars take their minimum's colour; the key shows the shape
            star = Line2D([], [], ls="", marker="*", ms=11, mfc="w", mec="k")
            handles, names = [*handles, star], [*names, "minimum"]
        key = ax.legend(
            handles, names, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small"
        )
        key.set_title("outcome (share)")
        for handle in key.legend_handles:
            if hasattr(handle, "set_sizes"):
                handle.set_sizes([30.0])
    return ax


def table(result: StudyResult, ax: Any = None, legend: bool = True) -> Any:
    """``result.table()`` as stacked horizontal bars, one per run (the first on top), each
    outcome in its colour (:func:`outcome_colours`), shares ≥ 8 % written on the bar."""
    shares = result.table()
    colours = outcome_colours(result)
    ax = _axes(ax)
    runs = [str(r) for r in shares.index]
    y = np.arange(len(runs))
    left = np.zeros(len(runs))
    for label in shares.columns:
        width = shares[label].to_numpy(dtype=float)
        bars = ax.barh(
            y,
            width,
            left=left,
            color=colours.get(label, "#a0a0a0"),
            label=_short(label, result),
            height=0.7,
        )
        text = [f"{w:.0%}" if w >= 0.08 else "" for w in width]
        dark = colours.get(label) in _DARK
        ax.bar_label(bars, text, label_type="center", fontsize="small", color="w" if dark else "k")
        left = left + width
    ax.set_yticks(y, runs)
    ax.set_ylim(len(runs) - 0.5, -0.5)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("share of starts")
    ax.set_ylabel("run")
    n = result.data.sizes["start"]
    ax.set_title(f"Outcomes of {n:,} starts on {_problem_name(result)}")
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", title="outcome")
    return ax


def learned_energy(
    trace: Any, axes: Any = None, problem: int | None = None, symlog_power: bool = True
) -> Any:
    """The energy view of the learned pH optimizer (:func:`odeopt.learned.energy_trace`),
    three panels against the step k, next to each other:

    1. the loss F(θ_k) (log axis);
    2. the cell's energy H(q_k, p_k) = Σ ½M⁻¹p² + Φ(q) at its input of step k;
    3. the powers at that state: dissipated −∇HᵀD∇H (≤ 0, D = KKᵀ), supplied yᵀu
       (y = M⁻¹p, u = G(q)) and their sum dH/dt = ∇Hᵀẋ (the cell's balance) — a symlog
       axis unless ``symlog_power`` is False.

    Curves are the mean over the trace's problems, or problem ``problem`` alone. ``axes``: a
    sequence of three matplotlib Axes, or None for a new figure. Returns the three axes.
    """
    names = ("loss", "H", "dissipated", "supplied", "dH_dt")
    if not all(isinstance(getattr(trace, n, None), np.ndarray) for n in names):
        raise TypeError(
            "learned_energy: trace must be an odeopt.learned.EnergyTrace "
            f"(learned.energy_trace(net, problems, steps)), got {type(trace).__name__}"
        )
    n = trace.loss.shape[1]
    if problem is not None and (
        isinstance(problem, bool) or not isinstance(problem, int) or not 0 <= problem < n
    ):
        raise ValueError(
            f"learned_energy: problem must be None or an integer in [0, {n}), got "
            f"problem={problem!r}"
        )
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    axes = list(axes)
    if len(axes) != 3:
        raise ValueError(f"learned_energy: axes must hold three Axes, got {len(axes)}")

    def curve(name: str) -> np.ndarray:
        a = getattr(trace, name)
        return a.mean(axis=1) if problem is None else a[:, problem]

    k = np.arange(trace.loss.shape[0])
    who = f"mean over {n} problems" if problem is None else f"problem {problem}"
    ax_loss, ax_h, ax_p = axes
    loss_curve = curve("loss")
    ax_loss.plot(k, loss_curve, color="k")
    if np.all(loss_curve > 0):
        ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step k")
    ax_loss.set_ylabel("F(θ_k)")
    ax_loss.set_title(f"loss ({who})")
    ax_h.plot(k, curve("H"), color="#1f77b4")
    ax_h.set_xlabel("step k")
    ax_h.set_ylabel("H(q_k, p_k)")
    ax_h.set_title("energy of the learned cell")
    ax_p.plot(k, curve("dissipated"), color="#d62728", label="dissipated −∇HᵀD∇H")
    ax_p.plot(k, curve("supplied"), color="#2ca02c", label="supplied yᵀu")
    ax_p.plot(k, curve("dH_dt"), color="k", ls="--", label="dH/dt = sum")
    ax_p.axhline(0.0, color="0.6", lw=0.8)
    if symlog_power:
        ax_p.set_yscale("symlog", linthresh=1.0)
    ax_p.set_xlabel("step k")
    ax_p.set_ylabel("power")
    ax_p.set_title("power balance of the cell")
    ax_p.legend(fontsize="small")
    return axes
