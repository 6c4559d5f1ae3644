"""The sections of ``odeopt tour`` that integrate, train or plot, each sized by a TourSizes.

``FULL`` is the tour a user runs (``odeopt tour``); ``QUICK`` runs every section on tiny inputs
(a handful of starts, a few steps, a few meta-iterations) so that a test can check that each
section is wired and writes what it should in seconds. Only the amount of work changes: the
systems, schemes, step sizes and the comparisons made are the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import problems, zoo
from .integrate import integrate
from .symbolic import PortHamiltonian

__all__ = ["FULL", "QUICK", "TourSizes"]


@dataclass(frozen=True)
class TourSizes:
    """How much work each section of the tour does (grid sizes, starts, steps, iterations)."""

    portrait_grid: int = 41  # points per axis of the phase portraits' grid
    portrait_density: float = 1.1  # streamplot's density (streamlines ∝ density²)
    portrait_dpi: int = 110
    energy_starts: int = 64  # random starts of the discrete-energy table
    basin_grid: int = 20  # starts per axis on Himmelblau (grid² trajectories)
    basin_steps: tuple[int, int] = (2000, 5000)  # heavy ball (h = 0.01), BBI (h = 0.002)
    research_starts: int = 1000  # LC_EGD and Euler–Richardson starts on polyThree/polyTwo
    research_max_steps: int = 200_000  # step budget of the adaptive research runs
    massaroli_t: float = 60.0  # end of Massaroli's batch-mode run on the blobs
    learned_iterations: int = 40  # meta-iterations of the learned optimizer
    learned_problems: int = 8  # problems per meta-iteration
    learned_test: int = 100  # fresh test problems
    digits_samples: int = 1797  # images of scikit-learn's digits (1797: all of them)
    digits_steps: int = 200  # full-batch training steps of the exported heavy ball and SGD


FULL = TourSizes()
QUICK = TourSizes(
    portrait_grid=15,
    portrait_density=0.3,
    portrait_dpi=40,
    energy_starts=4,
    basin_grid=3,
    basin_steps=(20, 20),
    research_starts=8,
    research_max_steps=500,
    massaroli_t=1.0,
    learned_iterations=1,
    learned_problems=2,
    learned_test=4,
    digits_samples=100,
    digits_steps=3,
)


def phase_portraits(systems: list[PortHamiltonian], path: Path, sizes: TourSizes) -> None:
    """Phase portraits of each two-block system in one dimension on F = θ²/2 + 1/2 (drawn by
    :func:`odeopt.plot.phase_portrait`): the flow (streamlines) over the level sets of H with
    a colour bar, on a ``portrait_grid``² grid of [−2.5, 2.5]², four to a row; time-dependent
    systems (nesterov) at t = 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import phase_portrait

    two_block = [s for s in systems if len(s.blocks) == 2 and not s.aux_blocks]
    cols = min(4, max(len(two_block), 1))
    rows = max(math.ceil(len(two_block) / cols), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.9 * rows), squeeze=False)
    for ax, system in zip(axes.flat, two_block, strict=False):
        phase_portrait(
            system, ax=ax, grid=sizes.portrait_grid, density=sizes.portrait_density, lim=2.5
        )
        ax.title.set_fontsize("medium")
    for ax in list(axes.flat)[len(two_block) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=sizes.portrait_dpi)
    plt.close(fig)


def energy_section(sizes: TourSizes) -> list[str]:
    """Increases of the discrete energy H between steps (beyond 1e-10·max(1, |H|)) for heavy
    ball (γ = 0.3) on Himmelblau, t ∈ [0, 3], h = 0.01, under three schemes."""
    system = zoo.heavy_ball(mass=1.0, friction=0.3)
    th0 = np.random.default_rng(0).uniform(-4, 4, (sizes.energy_starts, 2))
    lines = [
        "",
        "## Discrete energy along trajectories",
        "",
        f"Heavy ball (γ = 0.3) on Himmelblau, {sizes.energy_starts} random starts, t ∈ [0, 3], "
        "h = 0.01: increases of H between steps beyond 1e-10·max(1, |H|).",
        "",
        "| scheme | steps with H increasing | largest increase |",
        "|---|---|---|",
    ]
    for scheme in ("euler", "symplectic_euler", "discrete_gradient"):
        tr = integrate(
            system, problems.himmelblau(), {"theta": th0}, t_span=(0, 3), h=0.01, scheme=scheme
        )
        rep = tr.energy_report(tol=1e-10)
        lines.append(f"| {scheme} | {len(rep.increases)} | {rep.max_increase:.2e} |")
    return lines


def basins(path: Path, sizes: TourSizes) -> list[str]:
    """Heavy ball and BBI on Himmelblau from a ``basin_grid``² grid of starts in [−5, 5]²:
    which minimum each trajectory reaches (within 0.05), and the paths over the level sets
    of F."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problem = problems.himmelblau()
    minima = np.array([m.point for m in problem.minima], dtype=float)
    grid = np.linspace(-5, 5, sizes.basin_grid)
    X, Y = np.meshgrid(grid, grid)
    th0 = np.stack([X.ravel(), Y.ravel()], 1)
    hb_steps, bbi_steps = sizes.basin_steps
    runs = {
        "heavy_ball": (zoo.heavy_ball(mass=1.0, friction=1.0), "symplectic_euler", 0.01, hb_steps),
        "bbi": (zoo.bbi(delta_v=-1.0), "leapfrog", 0.002, bbi_steps),
    }
    lines = [
        "| system | scheme | "
        + " | ".join(f"({a:.2f}, {b:.2f})" for a, b in minima)
        + " | elsewhere | diverged |",
        "|---" * (len(minima) + 4) + "|",
    ]
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 5))
    gx = np.linspace(-6, 6, 200)
    GX, GY = np.meshgrid(gx, gx)
    Fgrid = problem.value(np.stack([GX.ravel(), GY.ravel()], 1)).reshape(GX.shape)
    for ax, (name, (system, scheme, h, steps)) in zip(axes, runs.items(), strict=True):
        tr = integrate(
            system,
            problem,
            {"theta": th0},
            steps=steps,
            h=h,
            scheme=scheme,
            save=max(1, steps // 200),
        )
        end = tr["theta"][-1]
        dist = np.linalg.norm(end[:, None, :] - minima[None], axis=2)
        near = dist.min(1) < 0.05
        which = np.where(near, dist.argmin(1), -1)
        ok = tr.status != "diverged"
        counts = [int(((which == k) & ok).sum()) for k in range(len(minima))]
        lines.append(
            f"| {name} | {scheme} | "
            + " | ".join(map(str, counts))
            + f" | {int(((which < 0) & ok).sum())} | {int((~ok).sum())} |"
        )
        ax.contour(GX, GY, np.log1p(Fgrid), levels=25, cmap="Greys", linewidths=0.6)
        tr.plot("theta", ax=ax, max_lines=60, alpha=0.7)
        ax.plot(minima[:, 0], minima[:, 1], "r*", ms=12)
        ax.set_title(f"{name} ({scheme}, h = {h}) on Himmelblau")
        ax.set_xlim(-6, 6)
        ax.set_ylim(-6, 6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return lines


def _markdown(table: Any, digits: int = 3) -> list[str]:
    """A pandas DataFrame of shares as markdown rows (index, then one column per column)."""
    head = f"| {table.index.name or ''} | " + " | ".join(str(c) for c in table.columns) + " |"
    rows = [head, "|---" * (len(table.columns) + 1) + "|"]
    for name, row in table.iterrows():
        rows.append(f"| {name} | " + " | ".join(f"{v:.{digits}f}" for v in row) + " |")
    return rows


def research_section(sizes: TourSizes) -> list[str]:
    """Bensaid's studies (GD, LC_EGD on polyThree; Euler–Richardson GD on polyTwo) through
    :class:`odeopt.Study`, braking's switch times, Massaroli on two blobs and a short
    meta-training of the learned optimizer."""
    from .schemes import EnergyDecrease, EulerRichardson, StepController
    from .study import Run, Study

    n = sizes.research_starts
    lines = ["## Research systems", ""]
    x0 = {"theta": np.random.default_rng(0).uniform(-3, 3, (n, 2))}
    gf = zoo.gradient_flow()
    # Bensaid's protocol: first step 0.1, |∇R| < 1e-4, run until converged (or the step cap)
    protocol = dict(t_span=(0, 1e8), h=0.1, gtol=1e-4, max_steps=sizes.research_max_steps)
    three = Study(
        problems.poly_three(),
        x0,
        {
            "GD, h = 0.1": Run(gf, "euler", h=0.1, steps=2000),
            "LC_EGD": Run(gf, EnergyDecrease("euler"), **protocol),
            "LC_EGD, h ≤ 0.2": Run(gf, EnergyDecrease("euler", h_max=0.2), **protocol),
        },
    ).run()
    lines += [
        "LC_EGD (gradient flow + Euler, a step accepted only if F drops by ½h|g|²; h halves "
        f"on rejection, ×10⁴ after acceptance) against GD on polyThree, {n} starts in "
        "[−3, 3]², |∇R| < 1e-4, first step 0.1: share of starts per outcome "
        "(oo.Study, Bensaid's protocol: within 0.05 of a minimum):",
        "",
        *_markdown(three.table()),
        "",
        "Reference (Bensaid, 10 000 draws): LC_EGD .216/.216/.283/.286 at (−2,1)/(2,−1)/"
        "(0,−1)/(0,1), no divergence; GD 100 % diverged. Bensaid's public code runs the "
        "uncapped rule above, whose ×10⁴ growth takes large steps; the reference's split is "
        "that of small steps (gradient flow), which the capped row reproduces.",
        "",
    ]
    ctrl = StepController(norm="l2", rtol=0, atol=0.01, grow=np.inf, shrink=0)
    two = Study(
        problems.poly_two(),
        x0,
        {"Euler–Richardson": Run(gf, EulerRichardson("reference", controller=ctrl), **protocol)},
    ).run()
    lines += [
        "Euler–Richardson GD (Bensaid's variant: η₀ = 0.1, tolerance 0.01, |∇R| < 1e-4 tested "
        f"at the Euler predictor as the reference code does) on polyTwo, the same {n} starts "
        "(reference .214/.209/.293/.285 at (−2,1)/(2,−1)/(0,−1)/(0,1)):",
        "",
        *_markdown(two.table()),
        "",
    ]
    tr = integrate(
        zoo.braking(k0=0.05, k1=3.0, goal=0.2),
        problems.quadratic(3),
        {"theta": np.random.default_rng(0).uniform(-2, 2, (4, 3))},
        steps=1500,
        h=0.01,
    )
    times = ", ".join(f"{e.time:.3f}" for e in sorted(tr.events, key=lambda e: e.trajectory))
    lines += [
        "Braking (k = 0.05 → 3 when F ≤ 0.2) on ½|θ|², 4 starts: the switch fired once per "
        f"trajectory, at t = {times}; final F ≤ {tr.loss[-1].max():.1e}.",
        "",
    ]
    blobs = problems.blobs(samples=200)
    th0 = np.asarray(blobs.initial(0), float).reshape(1, -1)
    ms = integrate(
        zoo.massaroli(beta=0.1),
        blobs,
        {"theta": th0},
        t_span=(0, sizes.massaroli_t),
        scheme="rk45",
        rtol=1e-6,
        atol=1e-8,
    )
    rises = int((np.diff(ms.energy[:, 0]) > 1e-9).sum())
    lines += [
        f"Massaroli's batch mode on two Gaussian blobs (scipy RK45, t ∈ [0, {sizes.massaroli_t:g}]"
        f"): accuracy {blobs.accuracy(th0)[0]:.3f} → {blobs.accuracy(ms.final['theta'])[0]:.3f}; "
        f"H rose between saved points {rises} times.",
        "",
    ]
    return lines + learned_lines(sizes)


def learned_lines(sizes: TourSizes) -> list[str]:
    """A short meta-training of the learned pH optimizer on the learning-to-learn quadratics,
    against torch's optimizers at the reference's learning rates."""
    import torch

    from . import learned

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    iterations, tests = sizes.learned_iterations, sizes.learned_test
    try:
        task = learned.QuadraticTask()
        result = learned.meta_train(
            task, iterations=iterations, problems=sizes.learned_problems, out_mul=1e-3
        )
        test = task.sample(tests, torch.Generator().manual_seed(123))
        rows = {
            f"HNN (odeopt, {iterations} meta-iterations)": learned.run_learned(
                result.net, test, out_mul=1e-3
            )
        }
        for name, make in (
            ("Adam (0.1)", lambda ps: torch.optim.Adam(ps, lr=0.1)),
            ("SGD (0.01, momentum 0.9)", lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9)),
        ):
            rows[name] = learned.run_torch(make, test)
        verdict = result.net.cell.double().to_system().energy_balance().verdict
    finally:
        torch.set_num_threads(threads)
    lines = [
        "Learned pH optimizer (odeopt.learned), meta-trained on |Wθ − y|² (10-D): F at step "
        f"100, mean over {tests} fresh problems (reference: HNN 0.23, Adam 0.41, SGD 0.33):",
        "",
        "| optimizer | F at step 100 |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v[-1].mean():.3f} |" for k, v in rows.items()]
    lines += [
        "",
        f"The trained cell's energy verdict: {verdict} (D = KKᵀ ⪰ 0, so dH/dt ≤ yᵀu; the "
        "input u = G(q) has no sign).",
        "",
    ]
    return lines


def export_section(sizes: TourSizes) -> list[str]:
    """Derive rules, recognise them, and train scikit-learn's digits with the exported heavy
    ball next to torch.optim.SGD (the rule says they are the same optimizer)."""
    import copy

    import torch
    from sklearn.datasets import load_digits

    from .export import discretize

    lines = [
        "## Update rules, recognised and exported",
        "",
        "| system | scheme | torch.optim equivalent |",
        "|---|---|---|",
    ]
    for name, scheme in (
        ("gradient_flow", "euler"),
        ("heavy_ball", "symplectic_euler"),
        ("heavy_ball", "euler"),
        ("heavy_ball", "rk4"),
        ("bbi", "symplectic_euler"),
    ):
        ident = discretize(zoo.get(name), scheme).identify()
        lines.append(f"| {name} | {scheme} | {str(ident).replace('|', '∣')} |")
    X, y = load_digits(return_X_y=True)
    n = sizes.digits_samples
    X, y = torch.tensor(X[:n] / 16.0), torch.tensor(y[:n])
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)
    ).double()
    Opt = discretize(zoo.heavy_ball(), "symplectic_euler").to_torch()
    h, mass, friction = 0.3, 1.0, 1.0
    runs = {
        "exported heavy ball (h = 0.3, γ = 1)": lambda ps: Opt(
            ps, lr=h, mass=mass, friction=friction
        ),
        "torch.optim.SGD(lr = h², momentum = 1 − γh)": lambda ps: torch.optim.SGD(
            ps, lr=h * h / mass, momentum=1 - friction * h / mass
        ),
    }
    final = {}
    for label, make in runs.items():
        m = copy.deepcopy(model)
        opt = make(m.parameters())
        for _ in range(sizes.digits_steps):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(X), y)
            loss.backward()
            opt.step()
        final[label] = (torch.cat([p.detach().flatten() for p in m.parameters()]), loss.item())
    (a, la), (b, lb) = final.values()
    lines += [
        "",
        f"Digits ({len(X)} images), MLP 64-32-10, float64, {sizes.digits_steps} full-batch steps:",
        "",
        "| optimizer | final loss |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v[1]:.6f} |" for k, v in final.items()]
    lines += ["", f"max |Δθ| between the two: {(a - b).abs().max().item():.1e}", ""]
    return lines
