"""``odeopt tour``: the pipeline on built-in defaults, written as a report with figures.

For every zoo system: define it, print its ODE, prove its energy balance symbolically, and
check that balance numerically: along the compiled vector field, the central difference
[H(x + εẋ) − H(x − εẋ)]/(2ε) on the quadratic F(θ) = ½|θ|² + 1 must equal the symbolic dH/dt
evaluated at the same states. Then phase portraits of each two-block system in one
dimension, with the level sets of H drawn beneath the flow, measured orders of the schemes,
and the sections of :mod:`odeopt.tour_sections` (integration, export, research) and the
analysis of rules below.

``run_tour(out)`` is the whole tour; ``run_tour(out, quick=True)`` runs every section on tiny
inputs (``tour_sections.QUICK``), to check the wiring in seconds: its numbers are not the
tour's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import problems, zoo
from .integrate import integrate
from .symbolic import PortHamiltonian
from .symbolic.system import compiled_expression
from .tour_sections import (
    FULL,
    QUICK,
    TourSizes,
    basins,
    energy_section,
    export_section,
    phase_portraits,
    research_section,
)

__all__ = ["NumericCheck", "TourSizes", "analysis_section", "numeric_energy_check", "run_tour"]


@dataclass
class NumericCheck:
    """Numeric dH/dt (central difference along the field) against the symbolic balance."""

    max_abs_error: float
    max_rate: float
    states: int

    @property
    def relative_error(self) -> float:
        return self.max_abs_error / max(self.max_rate, 1e-300)


def numeric_energy_check(
    system: PortHamiltonian, batch: int = 256, n: int = 10, eps: float = 1e-6, seed: int = 0
) -> NumericCheck:
    """Compare the symbolic dH/dt with a central difference of H along the compiled field.

    Objective: F(θ) = ½|θ|² + 1, ∇F = θ (so V = F − ΔV > 0 for BBI at ΔV = 0).
    """
    rng = np.random.default_rng(seed)
    compiled = system.compile("numpy")
    balance = system.energy_balance()
    rate = compiled_expression(system, [], [balance.rate])
    state = {b.name: rng.standard_normal((batch, n)) for b in system.all_blocks}
    theta = system.loss.block.name if system.loss is not None else None

    def loss(s: dict[str, np.ndarray]) -> np.ndarray:
        return 0.5 * np.sum(s[theta] ** 2, axis=-1) + 1.0

    F = loss(state)
    g = state[theta]
    field = compiled.field(state, F, g)
    plus = {k: v + eps * field[k] for k, v in state.items()}
    minus = {k: v - eps * field[k] for k, v in state.items()}
    numeric = (compiled.energy(plus, loss(plus)) - compiled.energy(minus, loss(minus))) / (2 * eps)
    (symbolic,) = rate(state, F, g, 0.0, **{p.symbol.name: p.default for p in system.parameters})
    return NumericCheck(
        max_abs_error=float(np.max(np.abs(numeric - symbolic))),
        max_rate=float(np.max(np.abs(symbolic))),
        states=batch,
    )


def measured_orders(hs: tuple[float, ...] = (0.1, 0.05, 0.025, 0.0125)) -> dict[str, float]:
    """Slope of log error against log h at T = 1 for the frictionless oscillator
    (heavy ball, m = 1, γ = 0, F = ½θ²), whose solution is θ₀ cos t + p₀ sin t."""
    system = zoo.heavy_ball(mass=1.0, friction=0.0)
    th0, p0 = np.array([[1.0]]), np.array([[0.5]])
    exact = th0 * np.cos(1.0) + p0 * np.sin(1.0)
    out = {}
    for scheme in (
        "euler",
        "symplectic_euler",
        "symplectic_euler_q",
        "leapfrog",
        "rk4",
        "discrete_gradient",
    ):
        errors = []
        for h in hs:
            tr = integrate(
                system,
                problems.quadratic(1),
                {"theta": th0, "p": p0},
                t_span=(0.0, 1.0),
                steps=round(1 / h),
                scheme=scheme,
                save="final",
            )
            errors.append(float(np.abs(tr["theta"][-1] - exact).max()))
        out[scheme] = float(np.polyfit(np.log(hs), np.log(errors), 1)[0])
    return out


def analysis_section(path: Path) -> list[str]:
    """Analysing rules: the tuned rates of GD, heavy ball and the Nesterov drift on κ = 100
    against their closed forms, ρ maps of the two momentum rules, gradient descent's modified
    equation and its PEPit worst case against Drori–Teboulle's L/(4N + 2)."""
    import math
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .export import discretize

    kappa, mu, L = 100.0, 0.01, 1.0
    sk = math.sqrt(kappa)
    rules = {
        "gradient descent": (
            discretize(zoo.gradient_flow(), "euler"),
            ("h",),
            (kappa - 1) / (kappa + 1),
            "(κ−1)/(κ+1)",
        ),
        "heavy ball (Polyak)": (
            discretize(zoo.heavy_ball(), "symplectic_euler"),
            ("h", "friction"),
            (sk - 1) / (sk + 1),
            "(√κ−1)/(√κ+1)",
        ),
        "Nesterov": (
            discretize(zoo.heavy_ball(), "symplectic_euler_nesterov"),
            ("h", "friction"),
            1 - 2 / math.sqrt(3 * kappa + 1),
            "1 − 2/√(3κ+1)",
        ),
    }
    lines = [
        "## Analysing rules",
        "",
        "`rule.tune(mu, L, over=...)` minimises the worst spectral radius of the rule's "
        f"iteration matrix over λ ∈ [μ, L], here [{mu:g}, {L:g}] (κ = {kappa:g}); "
        "`odeopt analyze NAME --scheme S --kappa K` prints the whole analysis of a zoo rule.",
        "",
        "| rule | system, scheme | tuned values | torch.optim | rate | closed form | difference |",
        "|---|---|---|---|---|---|---|",
    ]
    tuned = {}
    for name, (rule, over, closed, formula) in rules.items():
        t = tuned[name] = rule.tune(mu=mu, L=L, over=over)
        vals = ", ".join(f"{k} = {v:.4g}" for k, v in t.values.items())
        torch_args = ", ".join(  # dampening = 0 and nesterov = False are torch's defaults
            f"{k}={v}" if isinstance(v, bool) else f"{k}={v:.4g}"
            for k, v in (t.torch or {}).items()
            if v is True or (isinstance(v, float) and v)
        )
        lines.append(
            f"| {name} | {rule.system.name}, {rule.scheme.name} | {vals} | "
            f"{t.optimizer or '–'}({torch_args}) | {t.rate:.6f} | {formula} = {closed:.6f} | "
            f"{abs(t.rate - closed):.1e} |"
        )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for ax, name in zip(axes, ("heavy ball (Polyak)", "Nesterov"), strict=True):
        rule = rules[name][0]
        t = tuned[name]
        rule.quadratic().plot(
            y="friction", hlam=(0, 4), y_range=(0, 2), curvature=L, resolution=120, ax=ax
        )
        ax.plot(t.values["h"] * L, t.values["friction"], "r*", ms=14, label="tuned for κ = 100")
        ax.set_ylabel("friction γ")
        ax.set_title(f"{name}: ρ at λ = L = 1 (white: ρ = 1)", fontsize=10)
        ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    lines += [
        "",
        f"![spectral radius maps]({path.name})",
        "",
        "ρ of the iteration matrix over the step hλ and the friction at λ = L (white line: "
        "ρ = 1, the edge of the stability region). At the star, the values tuned for "
        "κ = 100, ρ at λ = L equals the tuned rate: Polyak's heavy ball sits on the edge of "
        "the region that is stable for every λ ∈ [μ, L] at once.",
        "",
    ]
    gd = rules["gradient descent"][0]
    modified = gd.modified_equation(order=1)
    lines += [
        "Gradient descent's modified equation (the ODE its iterates follow to O(η²); "
        "Barrett & Dherin's implicit regulariser, θ' = −∇(F + (η/4)|∇F|²)):",
        "",
        "```",
        str(modified),
        "```",
        "",
    ]
    N = 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        worst = gd.worst_case(L=L, mu=0.0, steps=N, h=1 / L)
    lines += [
        f"PEPit: gradient descent with h = 1/L, N = {N}: worst F(x_N) − F* over L-smooth "
        f"convex F with |x₀ − x*|² ≤ 1 is {worst.value:.6f} ({worst.solver}); Drori & "
        f"Teboulle's L/(4N+2) = {L / (4 * N + 2):.6f}.",
        "",
    ]
    return lines


def _zoo_section(lines: list[str]) -> list[PortHamiltonian]:
    """Each zoo system, its energy balance and (coordinate-wise systems) the numeric check;
    appends to ``lines`` and returns the systems checked numerically."""
    systems = []
    print(f"odeopt tour: {len(zoo.names())} zoo systems")
    for name in zoo.names():
        system = zoo.get(name)
        balance = system.energy_balance()
        if system.metric is not None:  # P(θ) is not in the coordinate-wise compiled field
            print(f"  {name:14s} dH/dt = {balance.rate}   [{balance.verdict}]   (full metric)")
            lines += [f"## {name}", "", "```", str(system), "```", "", "Energy balance:", ""]
            lines += ["```", str(balance), "```", ""]
            continue
        systems.append(system)
        check = numeric_energy_check(system)
        print(
            f"  {name:14s} dH/dt = {balance.rate}   [{balance.verdict}]   "
            f"numeric check: max |error| {check.max_abs_error:.2e} "
            f"(max |dH/dt| {check.max_rate:.2e})"
        )
        lines += [f"## {name}", "", "```", str(system), "```", "", "Energy balance:", "", "```"]
        lines += [str(balance), "```", ""]
        lines.append(
            f"Numeric check on F = ½|θ|² + 1 ({check.states} random states, n = 10): "
            f"max |central difference − symbolic dH/dt| = {check.max_abs_error:.2e}, "
            f"max |dH/dt| = {check.max_rate:.2e}."
        )
        lines.append("")
    return systems


def run_tour(out: Path, quick: bool = False) -> Path:
    """Run the tour and write ``out/report.md`` (and figures); returns the report's path.

    ``quick=True`` runs every section on the tiny inputs of ``tour_sections.QUICK`` (a few
    starts, steps and meta-iterations: seconds instead of a minute); the report says so, and
    its numbers are not the tour's."""
    sizes: TourSizes = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lines = ["# odeopt tour", ""]
    if quick:
        lines += ["_Quick run: every section on tiny inputs; the numbers are not the tour's._", ""]
    systems = _zoo_section(lines)
    figure = out / "phase_portraits.png"
    phase_portraits(systems, figure, sizes)
    lines += ["## Phase portraits", "", f"![phase portraits]({figure.name})", ""]

    print("  integrating: orders of convergence, energy, basins on Himmelblau")
    orders = measured_orders()
    lines += [
        "## Schemes: measured orders of convergence",
        "",
        "Slope of log |error| against log h on the frictionless oscillator (T = 1, "
        "h = 0.1 … 0.0125).",
        "",
        "| scheme | measured order |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.2f} |" for k, v in orders.items()]
    lines += energy_section(sizes)
    basin_fig = out / "himmelblau_paths.png"
    g = sizes.basin_grid
    lines += ["", f"## Which minimum? Himmelblau from a {g} × {g} grid of starts in [−5, 5]²", ""]
    lines += basins(basin_fig, sizes)
    lines += ["", f"![paths on Himmelblau]({basin_fig.name})", ""]
    print("  deriving and exporting update rules; training digits")
    lines += export_section(sizes)
    print("  analysing rules: tuned rates, ρ maps, a modified equation, a PEP certificate")
    lines += analysis_section(out / "rho_maps.png")
    lines += [
        "## Critical points, computed: polyThree (Bensaid's one-neuron network)",
        "",
        "| (w, b) | R | kind |",
        "|---|---|---|",
    ]
    for cp in problems.poly_three().critical_points():
        pt = ", ".join(str(c) for c in cp.point)
        lines.append(f"| ({pt}) | {cp.value} | {cp.kind} |")
    lines.append("")
    print("  research systems: LC_EGD on polyThree, braking, Massaroli on blobs")
    lines += research_section(sizes)
    lines.append(f"_Generated in {time.perf_counter() - started:.1f} s._")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"report written to {report} (figure: {figure})")
    return report
