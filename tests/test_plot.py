"""odeopt.plot (Agg backend): phase portraits, trajectory curves, basin maps and outcome tables
rendered on 1-D, 2-D and 10-D problems, with what each figure must show checked."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from helpers import bensaid_runs  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

import odeopt as oo  # noqa: E402
from odeopt import plot  # noqa: E402

DIMS = (1, 2, 10)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _problem(dim: int):
    return oo.problems.poly_three() if dim == 2 else oo.problems.quadratic(dim)


def _starts(dim: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(
        -3 if dim == 2 else -2, 3 if dim == 2 else 2, (n, dim)
    )


@pytest.fixture(scope="module")
def results():
    """A study per dimension: runs whose outcomes differ (minima, diverged, not converged)."""
    gf = oo.zoo.gradient_flow()
    out = {}
    for dim in DIMS:
        if dim == 2:  # Bensaid's polyThree: GD diverges, LC_EGD reaches the four minima
            runs = bensaid_runs(max_steps=3000, gd_steps=300)
        else:
            runs = {
                "GD": oo.Run(gf, "euler", h=0.5, steps=60, gtol=1e-3),
                "GD h=3": oo.Run(gf, "euler", h=3.0, steps=400, gtol=1e-3),
                "short": oo.Run(gf, "euler", h=0.1, steps=3, gtol=1e-3),
            }
        out[dim] = oo.Study(_problem(dim), {"theta": _starts(dim, 120)}, runs).run()
    return out


@pytest.fixture(scope="module")
def trajectories():
    """Per dimension: a fixed-step heavy-ball run and an adaptive (LC_EGD) run that stops."""
    hb, gf = oo.zoo.heavy_ball(), oo.zoo.gradient_flow()
    out = {}
    for dim in DIMS:
        x0 = {"theta": _starts(dim, 6, seed=1) / 3}
        fixed = oo.integrate(hb, _problem(dim), x0, steps=40, h=0.1)
        adaptive = oo.integrate(
            gf,
            _problem(dim),
            x0,
            t_span=(0, 30),
            h=0.1,
            scheme=oo.schemes.EnergyDecrease("euler"),
            gtol=1e-3,
        )
        out[dim] = (fixed, adaptive)
    return out


# ---------------------------------------------------------------- phase portraits
def test_phase_portrait_default_problem_has_labels_and_a_colour_bar() -> None:
    fig, ax = plt.subplots()
    assert plot.phase_portrait(oo.zoo.heavy_ball(), ax=ax, grid=15, density=0.4) is ax
    assert ax.get_title() == "heavy_ball: flow over level sets of H"
    assert ax.get_xlabel() == "theta (F = θ²/2 + 1/2)"
    assert ax.get_ylabel() == "p"
    (cbar_ax,) = [a for a in fig.axes if a is not ax]
    assert cbar_ax.get_ylabel() == "H"
    # filled level sets + streamlines (lines, arrows)
    assert len(ax.collections) >= 2
    assert ax.get_xlim() == (-2.5, 2.5)


def test_phase_portrait_of_a_time_dependent_system_says_when() -> None:
    """nesterov's friction r/(t + t₀) depends on t: the title gives t, and the field drawn
    is the one at t (streamlines differ between t = 0 and t = 50)."""
    segments = []
    for t in (0.0, 50.0):
        fig, ax = plt.subplots()
        plot.phase_portrait(oo.zoo.nesterov(), ax=ax, t=t, grid=15, density=0.4)
        assert ax.get_title() == f"nesterov: flow over level sets of H at t = {t:g}"
        lines = [c for c in ax.collections if type(c).__name__ == "LineCollection"]
        segments.append(np.concatenate([np.asarray(s) for s in lines[0].get_segments()]))
    assert segments[0].shape != segments[1].shape or not np.allclose(*segments)
    ax = plot.phase_portrait(oo.zoo.heavy_ball(), ax=plt.figure().gca(), grid=11, t=3.0)
    assert "at t" not in ax.get_title()


def test_phase_portrait_on_a_one_dimensional_problem() -> None:
    ax = plot.phase_portrait(
        oo.zoo.heavy_ball(), oo.problems.quadratic(1), ax=plt.figure().gca(), grid=15, lim=2.0
    )
    assert ax.get_xlabel() == "theta (F = x1**2/2)"
    # H = θ²/2 + p²/2 on [−2, 2]²: from 0 to 4, and the colour levels cover it
    cs = [c for c in ax.collections if hasattr(c, "levels")][0]
    assert cs.levels[0] <= 0.0 and cs.levels[-1] >= 4.0


@pytest.mark.parametrize(
    "system, problem, match",
    [
        ("gradient_flow", None, r"'gradient_flow' has blocks \['theta'\]; .*exactly two blocks"),
        ("adam", None, r"'adam' .*auxiliary blocks \['m', 's'\]"),
        ("heavy_ball", "poly_three", r"problem 'poly_three' has dim 2; .*dim 1"),
        ("heavy_ball", "quadratic3", r"problem 'quadratic' has dim 3"),
    ],
)
def test_phase_portrait_errors_name_the_system_and_reason(system, problem, match) -> None:
    pb = {None: None, "poly_three": oo.problems.poly_three(), "quadratic3": None}[problem]
    if problem == "quadratic3":
        pb = oo.problems.quadratic(3)
    with pytest.raises(ValueError, match=match):
        plot.phase_portrait(oo.zoo.get(system), pb, ax=plt.figure().gca())


def test_phase_portrait_needs_a_symbolic_problem() -> None:
    pb = oo.problems.from_functions(
        lambda th: (th**2).sum(1) / 2, lambda th: th, dim=1, name="callable"
    )
    with pytest.raises(ValueError, match="problem 'callable' has no sympy"):
        plot.phase_portrait(oo.zoo.heavy_ball(), pb, ax=plt.figure().gca())


def test_tour_portraits_are_a_grid_with_colour_bars(tmp_path, monkeypatch) -> None:
    from odeopt.tour_sections import QUICK, phase_portraits

    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig) or close(fig))
    systems = [oo.zoo.get(n) for n in ("heavy_ball", "nesterov", "bbi", "ecdsep", "braking")]
    path = tmp_path / "p.png"
    phase_portraits([oo.zoo.gradient_flow(), *systems], path, QUICK)
    (fig,) = figures
    shown = [a for a in fig.axes if a.get_visible()]
    portraits = [a for a in shown if "flow over level sets of H" in a.get_title()]
    assert [a.get_title().split(":")[0] for a in portraits] == [s.name for s in systems]
    assert sum(a.get_ylabel() == "H" for a in shown) == 5  # one colour bar each
    height, width = plt.imread(path).shape[:2]
    # five portraits four to a row: two rows (one row of five would be ≈ 6 : 1)
    assert 1.5 < width / height < 3.0


# ---------------------------------------------------------------- trajectories
@pytest.mark.parametrize("dim", DIMS)
def test_trajectory_plot_marks_starts_and_ends(trajectories, dim) -> None:
    tr, _ = trajectories[dim]
    ax = tr.plot(ax=plt.figure().gca())
    X = np.asarray(tr["theta"])
    assert len(ax.lines) == 6
    starts, ends = ax.collections
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["start", "end"]
    if dim == 1:  # θ against t
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("t", "theta[0]")
        np.testing.assert_allclose(starts.get_offsets(), np.c_[np.zeros(6), X[0, :, 0]])
        np.testing.assert_allclose(ends.get_offsets(), np.c_[np.full(6, tr.t[-1]), X[-1, :, 0]])
    else:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("theta[0]", "theta[1]")
        np.testing.assert_allclose(starts.get_offsets(), X[0, :, :2])
        np.testing.assert_allclose(ends.get_offsets(), X[-1, :, :2])
    assert ax.get_title() == "heavy_ball with symplectic_euler: " + (
        "theta[0](t)" if dim == 1 else "paths of theta"
    )


def test_trajectory_any_pair_of_coordinates_and_max_lines(trajectories) -> None:
    tr, _ = trajectories[10]
    ax = plot.trajectory(tr, coords=(3, 7), ax=plt.figure().gca(), max_lines=4)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("theta[3]", "theta[7]")
    assert len(ax.lines) == 4
    assert ax.get_title().endswith("(first 4 of 6)")
    np.testing.assert_allclose(ax.lines[2].get_xydata(), np.asarray(tr["theta"])[:, 2, [3, 7]])
    ax = tr.plot("p", coords=(5,), ax=plt.figure().gca())  # one coordinate against t
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("t", "p[5]")


@pytest.mark.parametrize(
    "dim, coords, match",
    [
        (1, (0, 1), r"coords=\(0, 1\) is out of range for block 'theta' with 1 coordinate"),
        (10, (0, 10), r"out of range .* give indices in 0 … 9"),
        (2, (2,), r"out of range for block 'theta' with 2 coordinate"),
    ],
)
def test_trajectory_coords_out_of_range(trajectories, dim, coords, match) -> None:
    with pytest.raises(IndexError, match=match):
        trajectories[dim][0].plot(coords=coords, ax=plt.figure().gca())


def test_trajectory_bad_arguments(trajectories) -> None:
    tr = trajectories[2][0]
    with pytest.raises(ValueError, match=r"coords must be \(i,\) .* or \(i, j\)"):
        tr.plot(coords=(0, 1, 1), ax=plt.figure().gca())
    with pytest.raises(KeyError, match="no block 'q'"):
        tr.plot("q", ax=plt.figure().gca())
    with pytest.raises(ValueError, match="max_lines must be ≥ 1; got 0"):
        tr.plot_loss(max_lines=0, ax=plt.figure().gca())


@pytest.mark.parametrize("dim", DIMS)
def test_loss_energy_and_step_size_curves(trajectories, dim) -> None:
    fixed, adaptive = trajectories[dim]
    # fixed-step heavy ball: F > 0 on the log axis, no trajectory stopped: no note
    ax = fixed.plot_loss(ax=plt.figure().gca())
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale()) == ("t", "F", "log")
    assert ax.get_title() == "heavy_ball with symplectic_euler: F(t)"
    assert len(ax.lines) == 6 and not ax.texts
    np.testing.assert_allclose(ax.lines[4].get_ydata(), np.asarray(fixed.loss)[:, 4])
    ax = fixed.plot_energy(ax=plt.figure().gca())
    assert (ax.get_ylabel(), ax.get_yscale()) == ("H", "linear")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.asarray(fixed.energy)[:, 0])
    # the adaptive run converges: the note says the stopped rows keep their last value
    assert (adaptive.status == "converged").all()
    ax = adaptive.plot_loss(ax=plt.figure().gca())
    assert [t.get_text() for t in ax.texts] == ["6 stopped early: they keep their last value"]
    ax = adaptive.plot_step_size(ax=plt.figure().gca(), max_lines=3)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale()) == (
        "t",
        "accepted step size h",
        "log",
    )
    assert len(ax.lines) == 3
    h = np.asarray(adaptive.step_size)[:, 1]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), np.where(h > 0, h, np.nan))
    assert np.nanmax(ax.lines[1].get_ydata()) > 0


def test_loss_is_linear_when_f_is_not_positive(trajectories) -> None:
    tr = trajectories[2][0]
    shifted = dataclasses.replace(tr, loss=np.asarray(tr.loss) - 100.0)
    assert plot.loss(shifted, ax=plt.figure().gca()).get_yscale() == "linear"
    assert plot.loss(tr, ax=plt.figure().gca(), log=False).get_yscale() == "linear"


def test_step_size_of_a_fixed_step_scheme_or_solver_is_an_error(trajectories) -> None:
    with pytest.raises(ValueError, match="only odeopt's adaptive schemes .* record"):
        trajectories[1][0].plot_step_size(ax=plt.figure().gca())
    tr = oo.integrate(
        oo.zoo.gradient_flow(),
        oo.problems.quadratic(2),
        {"theta": np.ones((2, 2))},
        t_span=(0, 1),
        scheme="rk45",
    )
    with pytest.raises(ValueError, match="fixed-step .* or an external solver"):
        plot.step_size(tr, ax=plt.figure().gca())


# ---------------------------------------------------------------- studies
def _legend(ax) -> dict[str, tuple]:
    key = ax.get_legend()
    return {
        t.get_text().split(":")[0]: h
        for t, h in zip(key.get_texts(), key.legend_handles, strict=True)
    }


@pytest.mark.parametrize("dim", DIMS)
def test_basins_colour_each_outcome_as_its_legend_says(results, dim) -> None:
    res = results[dim]
    colours = plot.outcome_colours(res)
    for run in res.runs:
        ax = res.plot_basins(run, ax=plt.figure().gca())
        labels = res.outcome.sel(run=run).values
        x0 = res.data["x0_theta"].values
        scatters = [c for c in ax.collections if not c.get_label().startswith("_")]
        legend = _legend(ax)
        drawn = 0
        for c in scatters:
            label, share = c.get_label().split(": ")
            hit = labels == label
            assert share == f"{hit.mean():.1%}"
            # the scatter's colour = the legend's = the label's fixed colour
            assert tuple(c.get_facecolor()[0]) == to_rgba(colours[label])
            assert tuple(legend[label].get_facecolor()[0]) == to_rgba(colours[label])
            xs = c.get_offsets()[:, 0]
            np.testing.assert_allclose(np.sort(xs), np.sort(x0[hit, 0]))
            drawn += len(xs)
        assert drawn == res.data.sizes["start"]
        assert set(legend) == {c.get_label().split(":")[0] for c in scatters} | {"minimum"}
        (stars,) = [c for c in ax.collections if c.get_label() == "_minima"]
        assert len(stars.get_offsets()) == len(res.minima())
        assert ax.get_title() == f"{run} on {res.data.attrs['problem']}: outcome of 120 starts"
        if dim == 1:
            assert ax.get_xlabel() == "theta[0] at the start"
            ticks = [t.get_text() for t in ax.get_yticklabels()]
            assert ticks == [c.get_label().split(":")[0] for c in scatters]
        else:
            assert (ax.get_xlabel(), ax.get_ylabel()) == (
                "theta[0] at the start",
                "theta[1] at the start",
            )


def test_basins_colours_are_fixed_per_label() -> None:
    colours = plot.outcome_colours(["(0, -1)", "(-2, 1)", "diverged"])
    assert colours["(0, -1)"] == plot.MINIMUM_COLOURS[0]
    assert colours["(-2, 1)"] == plot.MINIMUM_COLOURS[1]
    assert colours["diverged"] == plot.OUTCOME_COLOURS["diverged"]
    assert len(set(colours.values())) == len(colours)
    # poly_three: four minima, four distinct colours, none of them grey, black or red
    res_colours = plot.outcome_colours(["a", "b", "c", "d"])
    assert not set(res_colours[k] for k in "abcd") & set(plot.OUTCOME_COLOURS.values())


def test_basins_in_other_coordinates_and_errors(results) -> None:
    res = results[10]
    ax = plot.basins(res, "GD", ax=plt.figure().gca(), coords=(2, 5))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("theta[2] at the start", "theta[5] at the start")
    scatter = ax.collections[0]
    np.testing.assert_allclose(scatter.get_offsets(), res.data["x0_theta"].values[:, [2, 5]])
    with pytest.raises(
        IndexError, match=r"coords=\(0, 10\) must be two coordinate indices in 0 … 9"
    ):
        plot.basins(res, "GD", ax=plt.figure().gca(), coords=(0, 10))
    with pytest.raises(KeyError, match=r"no run 'nope'; the study's runs are \['GD', 'GD h=3'"):
        res.plot_basins("nope")


@pytest.mark.parametrize("dim", DIMS)
def test_table_stacks_each_runs_shares(results, dim) -> None:
    res = results[dim]
    table = res.table()
    ax = res.plot_table(ax=plt.figure().gca())
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("share of starts", "run")
    assert ax.get_title() == f"Outcomes of 120 starts on {res.data.attrs['problem']}"
    assert [t.get_text() for t in ax.get_yticklabels()] == list(table.index)
    legend = _legend(ax)
    assert list(legend) == list(table.columns)
    colours = plot.outcome_colours(res)
    bars = ax.patches
    assert len(bars) == table.size
    for k, label in enumerate(table.columns):
        for r, run in enumerate(table.index):
            bar = bars[k * len(table.index) + r]
            assert bar.get_width() == pytest.approx(table.loc[run, label])
            assert bar.get_facecolor() == to_rgba(colours[label])
        assert legend[label].get_facecolor() == to_rgba(colours[label])
    # the bars of each run end at 1
    ends = [
        max(b.get_x() + b.get_width() for b in bars[r :: len(table.index)])
        for r in range(len(table.index))
    ]
    np.testing.assert_allclose(ends, 1.0)


def test_long_exact_minimum_labels_show_as_numbers_in_legends() -> None:
    """Himmelblau's minima are roots of cubics (CRootOf …): legends show them to 3 digits."""
    x0 = {"theta": np.random.default_rng(0).uniform(-5, 5, (30, 2))}
    runs = {"GD": oo.Run(oo.zoo.gradient_flow(), "euler", h=0.01, steps=400, gtol=1e-4)}
    res = oo.Study(oo.problems.himmelblau(), x0, runs).run()
    long = [label for label, _ in res.minima() if len(label) > 24]
    assert long
    ax = res.plot_basins("GD")
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert not any("CRootOf" in t for t in texts)
    assert any(t.startswith("(-3.78, -3.28)") for t in texts)
    plt.close(ax.figure)
    ax = res.plot_table()
    assert not any("CRootOf" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close(ax.figure)
