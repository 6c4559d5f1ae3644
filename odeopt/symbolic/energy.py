"""The symbolic energy balance of a port-Hamiltonian system, with a verdict.

For ẋ = (J − R)∇H + Gu, y = Gᵀ∇H and auxiliary blocks ṡ = f(…):

    dH/dt = Σᵢ [∇Hᵢᵀ ẋᵢ + ∂H/∂sᵢ ṡᵢ] + ∂H/∂t
          = −Σᵢ ∇HᵢᵀR∇Hᵢ + Σᵢ yᵢᵀuᵢ + Σᵢ ∂H/∂sᵢ ṡᵢ + ∂H/∂t     (∇HᵀJ∇H = 0, J skew).

Per-coordinate sums are rewritten as globals: Σᵢ c·φ(xᵢ) = c·Σᵢ φ(xᵢ) for coordinate-free c,
so heavy ball's balance reads −(γ/m²)|p|².

The verdict answers one question: does H decrease along the system *as defined*, closed
loop included? A port input u is always substituted (feedback u = κ(y) is the expression
κ(Gᵀ∇H); an input such as Adam's −m/(√s + ε) is an expression of the state), so ``rate`` is
the closed-loop dH/dt. Verdicts:

* ``"conservative"``: dH/dt ≡ 0.
* ``"dissipative"``: dH/dt ≤ 0 is *proved* (``nonincreasing`` is True): from the sign of the
  simplified closed-loop rate under the symbols' assumptions, or from the structure —
  −∇HᵀR∇H ≤ 0 because R ⪰ 0 is proved, no ∂H/∂t or auxiliary term, and a supply yᵀu that is
  0 or proved ≤ 0 (e.g. u = −k·y with k ≥ 0).
* ``"passive"``: dH/dt ≤ yᵀu is proved (lossless, dH/dt = yᵀu, or R ⪰ 0), i.e. the system is
  passive with respect to its port (u, y) — but the supply yᵀu is not proved ≤ 0, so H itself
  is not proved to decrease. This is a fact about the port, not an answer "H decreases":
  Adam (H = F, supply −Σ g·m/(√s + ε) with no sign) is passive, and so is feedback
  u = +k·y (k > 0, supply k|y|² ≥ 0: energy injection). ``nonincreasing`` is False when the
  numeric search finds a state with dH/dt > 0, else None.
* ``"not proved"``: neither; ``reason`` says why and a numeric search for a state with
  dH/dt > 0 (random states, gradients, losses, times and parameters consistent with their
  assumptions) fills ``counterexample`` (then ``nonincreasing`` is False).

A system with a metric that is not coordinate-wise (θ' = −P(θ)∇F, see
:mod:`odeopt.symbolic.metric`) has dH/dt = −∇FᵀP∇F: "dissipative" needs P ⪰ 0 proved by the
metric's construction (``psd = "proved"``, e.g. Levenberg–Marquardt) or declared by its author
(``psd = "declared"``) and not refuted by the metric's numeric check; otherwise "not proved".

Where H is bounded below only for some parameter values (a kinetic term c·|p|² whose
coefficient's sign is undecided), ``reason`` says so: a decreasing H that is unbounded below
proves nothing. A coefficient known to be negative is refused when the system is defined.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from ..errors import StructureError
from .codegen import compile_expressions
from .language import (
    Block,
    Gradient,
    Reduction,
    Time,
    coordinate_derivative,
    coordinate_symbols,
    inner,
    sqnorm,
    total,
)

if TYPE_CHECKING:
    from .system import PortHamiltonian

__all__ = ["EnergyBalance", "energy_balance", "to_globals"]

VERDICTS = ("conservative", "dissipative", "passive", "not proved")


@dataclass
class EnergyBalance:
    """dH/dt of a system, split into its port-Hamiltonian parts, and the verdict.

    ``rate`` = dH/dt; ``dissipation`` = −Σ∇HᵀR∇H; ``supply`` = Σyᵀu;
    ``auxiliary`` = Σ ∂H/∂s·ṡ over auxiliary blocks; ``time_derivative`` = ∂H/∂t.
    ``verdict`` is one of :data:`VERDICTS` (see the module). ``nonincreasing`` says whether
    the closed-loop dH/dt ≤ 0 was proved (True), refuted numerically (False) or neither (None).
    ``extra["bounded_below"]`` holds the conditions (c ≥ 0) under which H is bounded below
    where they could not be decided.
    """

    system: str
    hamiltonian: sp.Expr
    rate: sp.Expr
    dissipation: sp.Expr
    supply: sp.Expr
    auxiliary: sp.Expr
    time_derivative: sp.Expr
    verdict: str
    reason: str
    nonincreasing: bool | None = None
    counterexample: dict[str, Any] | None = None
    samples_checked: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"dH/dt = {self.rate}"]
        parts = [f"-∇HᵀR∇H = {self.dissipation}", f"yᵀu = {self.supply}"]
        if self.auxiliary != 0:
            parts.append(f"auxiliary = {self.auxiliary}")
        if self.time_derivative != 0:
            parts.append(f"∂H/∂t = {self.time_derivative}")
        lines.append("  " + ";  ".join(parts))
        lines.append(f"verdict: {self.verdict} ({self.reason})")
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        rows = [
            rf"\frac{{dH}}{{dt}} &= {sp.latex(self.rate)}",
            rf"-\nabla H^\top R \nabla H &= {sp.latex(self.dissipation)}",
            rf"y^\top u &= {sp.latex(self.supply)}",
        ]
        if self.time_derivative != 0:
            rows.append(rf"\partial H/\partial t &= {sp.latex(self.time_derivative)}")
        if self.auxiliary != 0:
            rows.append(rf"\text{{auxiliary}} &= {sp.latex(self.auxiliary)}")
        rows.append(rf"&\text{{{self.verdict}}}")
        return r"$\begin{aligned}" + r"\\".join(rows) + r"\end{aligned}$"


def canonical_reduction(phi: sp.Expr) -> Reduction:
    if phi.is_Pow and phi.exp == 2 and isinstance(phi.base, (Block, Gradient)):
        return sqnorm(phi.base)
    if (
        phi.is_Mul
        and len(phi.args) == 2
        and all(isinstance(a, (Block, Gradient)) for a in phi.args)
    ):
        return inner(*phi.args)
    return total(phi)


def to_globals(summand: sp.Expr) -> sp.Expr:
    """Σᵢ summand as an expression of globals: Σᵢ Σₖ cₖ·φₖ(xᵢ) = Σₖ cₖ·Σᵢ φₖ(xᵢ).

    Each cₖ is coordinate-free (parameters, loss, reductions, time) and is simplified.
    A coordinate-free term c contributes n·c, with n the dimension (symbol ``n``).
    """
    summand = sp.expand(sp.sympify(summand))
    if summand == 0:
        return sp.Integer(0)
    coords = sorted(coordinate_symbols(summand), key=lambda s: s.name)
    groups: dict[sp.Expr, sp.Expr] = {}
    for term in sp.Add.make_args(summand):
        c, phi = term.as_independent(*coords, as_Add=False) if coords else (term, sp.Integer(1))
        groups[phi] = groups.get(phi, sp.Integer(0)) + c
    n = sp.Symbol("n", positive=True, integer=True)
    out = sp.Integer(0)
    for phi, c in groups.items():
        c = sp.simplify(c)
        if c == 0:
            continue
        out += c * (n if phi == 1 else canonical_reduction(phi))
    return out


def _sample_symbol(sym: sp.Symbol, rng: np.random.Generator, size: int) -> np.ndarray:
    a = sym.assumptions0
    scale = np.exp(rng.uniform(-3, 3, size))
    if a.get("positive"):
        return scale
    if a.get("nonnegative"):
        return scale * (rng.random(size) > 0.1)
    if a.get("negative"):
        return -scale
    if a.get("nonpositive"):
        return -scale * (rng.random(size) > 0.1)
    return scale * rng.standard_normal(size)


def numeric_search(
    system: PortHamiltonian,
    per_coordinate: sp.Expr,
    scalar: sp.Expr,
    samples: int,
    seed: int,
    n: int = 5,
) -> tuple[int, dict[str, Any] | None]:
    """Search for a state where Σᵢ per_coordinate + scalar > 0 (beyond round-off).

    Blocks and the gradient are drawn coordinate-wise at random scales, the loss and time at
    random, parameters from their assumptions (half of the samples at the defaults).
    Returns (number of valid samples, the worst counter-example or None).
    """
    rng = np.random.default_rng(seed)
    params = [p.symbol for p in system.parameters]
    per_coordinate = sp.expand(per_coordinate)
    magnitude_c = sp.Add(*[sp.Abs(a) for a in sp.Add.make_args(per_coordinate)])
    magnitude_s = sp.Add(*[sp.Abs(a) for a in sp.Add.make_args(sp.expand(scalar))])
    f = compile_expressions(
        [per_coordinate, magnitude_c],
        [scalar, magnitude_s],
        system.all_blocks,
        params,
        backend="numpy",
    )
    state = {
        b.name: rng.standard_normal((samples, n)) * np.exp(rng.uniform(-3, 3, (samples, 1)))
        for b in system.all_blocks
    }
    g = rng.standard_normal((samples, n)) * np.exp(rng.uniform(-3, 3, (samples, 1)))
    F = rng.standard_normal(samples) * np.exp(rng.uniform(-3, 3, samples))
    tt = rng.uniform(0, 10, samples)
    values: dict[str, np.ndarray] = {}
    for p in system.parameters:
        v = _sample_symbol(p.symbol, rng, samples)
        if p.default is not None:
            v[: samples // 2] = float(p.default)
        values[p.symbol.name] = v
    with np.errstate(all="ignore"):
        coord, coord_mag, glob, glob_mag = f(state, F, g, tt, **values)
        val = coord.sum(axis=-1) + glob
        mag = coord_mag.sum(axis=-1) + glob_mag  # size of the terms, for round-off
    valid = np.isfinite(val) & np.isfinite(mag)
    bad = valid & (val > 1e-9 * (1.0 + mag))
    if not bad.any():
        return int(valid.sum()), None
    i = int(np.argmax(np.where(bad, val, -np.inf)))
    example: dict[str, Any] = {"value": float(val[i])}
    example.update({name: arr[i].tolist() for name, arr in state.items()})
    example["g"] = g[i].tolist()
    example["F"] = float(F[i])
    example["t"] = float(tt[i])
    example.update({k: float(v[i]) for k, v in values.items()})
    return int(valid.sum()), example


def _search_reason(checked: int, example: dict[str, Any] | None) -> str:
    if example is None:
        return f"a numeric search found no state with dH/dt > 0 in {checked} samples"
    return (
        f"a numeric search found dH/dt = {example['value']:.3g} > 0 "
        "(counter-example in .counterexample)"
    )


def decide(
    rate: sp.Expr,
    supply: sp.Expr,
    structural: tuple[bool, str],
    search: Callable[[], tuple[int, dict[str, Any] | None]],
    hamiltonian: sp.Expr | None = None,
) -> tuple[str, str, bool | None, dict[str, Any] | None, int]:
    """The verdict (see the module) from the closed-loop dH/dt (``rate``), the supply yᵀu,
    a structural argument for dH/dt − yᵀu ≤ 0 and a numeric search for a state with
    dH/dt > 0. Returns (verdict, reason, nonincreasing, counter-example, samples checked)."""
    if rate == 0:
        return "conservative", "dH/dt simplifies to 0", True, None, 0
    loop = " (the closed loop: u substituted)" if supply != 0 else ""
    if rate.is_nonpositive:
        return (
            "dissipative",
            f"dH/dt ≤ 0 follows from the symbols' assumptions{loop}",
            True,
            None,
            0,
        )
    excess = sp.simplify(rate - supply)
    if excess == 0:
        passive, why = True, "dH/dt = yᵀu exactly (lossless with respect to the port)"
    elif excess.is_nonpositive:
        passive, why = True, "dH/dt − yᵀu ≤ 0 follows from the symbols' assumptions"
    else:
        passive, why = structural
    if passive and supply == 0:
        return "dissipative", why, True, None, 0
    if passive and supply.is_nonpositive:
        return (
            "dissipative",
            f"{why}, and the supply yᵀu = {supply} ≤ 0 follows from the symbols' assumptions, "
            "so dH/dt ≤ 0 (the closed loop dissipates)",
            True,
            None,
            0,
        )
    checked, example = search()
    nonincreasing = False if example is not None else None
    if passive:
        short = hamiltonian is not None and isinstance(hamiltonian, sp.Symbol)
        what = f"H = {hamiltonian}" if short else "H"  # Adam: "H = F itself …"
        sign = (
            "is ≥ 0: the input injects energy"
            if supply.is_nonnegative
            else "has no proved sign (≤ 0 is not proved)"
        )
        reason = (
            f"{why}: passive with respect to the port (dH/dt ≤ yᵀu), but the supply "
            f"yᵀu = {supply} {sign}, so {what} itself is not proved to decrease; "
            + _search_reason(checked, example)
        )
        return "passive", reason, nonincreasing, example, checked
    reason = (
        f"{why}; the sign of dH/dt = {rate} could not be decided symbolically; "
        + _search_reason(checked, example)
    )
    return "not proved", reason, nonincreasing, example, checked


def _metric_balance(system: PortHamiltonian) -> EnergyBalance:
    """A gradient system with a full metric P: dH/dt = −∇FᵀP∇F, ≤ 0 when P ⪰ 0.

    "dissipative" needs P ⪰ 0 proved by the metric's construction (``psd = "proved"``) or
    declared (``psd = "declared"``), and not refuted by :meth:`Metric.check_psd`; else
    "not proved" (with the check's counter-example, if any: then ``nonincreasing`` is False).
    """
    gPg = sp.Symbol("<g,P*g>", real=True)
    if (
        system.blocks != (system.loss.block,)
        or sp.simplify(  # type: ignore[union-attr]
            system.hamiltonian - system.loss
        )
        != 0
        or system.aux_blocks
        or system.G.shape[1]
    ):
        raise StructureError("a metric is supported for gradient systems H = F, θ' = −P∇F")
    metric = system.metric
    claim = getattr(metric, "psd", None)
    description = getattr(metric, "description", type(metric).__name__)
    check = metric.check_psd() if hasattr(metric, "check_psd") else None
    ok, how, example, checked = check if check is not None else (None, "no check", None, 0)
    r = sp.simplify(system.R[0, 0])  # θ' = −r·P∇F (one block: J = 0, R = [[r]])
    if example is None and system.r_psd is not True:
        verdict, nonincreasing = "not proved", None
        reason = (
            f"{description}: θ' = −r·P∇F with R = [[{r}]], which is not proved ≥ 0 "
            f"({system.r_psd_reason}), so the sign of dH/dt = −r·∇FᵀP∇F is not proved"
        )
    elif example is not None:
        verdict, nonincreasing = "not proved", False
        reason = f"{description}: {how}, so dH/dt = −∇FᵀP∇F > 0 there"
        if claim:
            reason += f" although the metric states P ⪰ 0 ({claim})"
    elif claim == "proved":
        verdict, nonincreasing = "dissipative", True
        proof = getattr(metric, "psd_proof", "") or "by its construction"
        reason = (
            f"{description}: P ⪰ 0 {proof}, so dH/dt = −∇FᵀP∇F ≤ 0 (not coordinate-wise: "
            f"P by construction, not by sympy; {how})"
        )
    elif claim == "declared" and ok and checked > 0:
        verdict, nonincreasing = "dissipative", True
        reason = (
            f"{description}: P ⪰ 0 is declared by the metric and {how}, so "
            "dH/dt = −∇FᵀP∇F ≤ 0 (a declaration checked numerically, not a symbolic proof)"
        )
    else:
        verdict, nonincreasing = "not proved", None
        if claim == "declared":
            reason = f"{description}: P ⪰ 0 is declared but could not be checked: {how}"
        else:
            reason = (
                f"{description}: the metric does not state that P ⪰ 0 (set psd = 'proved' "
                "with psd_proof, or psd = 'declared' to have it checked), so the sign of "
                f"dH/dt = −∇FᵀP∇F is not proved ({how})"
            )
    return EnergyBalance(
        system=system.name,
        hamiltonian=system.hamiltonian,
        rate=-r * gPg,
        dissipation=-r * gPg,
        supply=sp.Integer(0),
        auxiliary=sp.Integer(0),
        time_derivative=sp.Integer(0),
        verdict=verdict,
        reason=reason,
        nonincreasing=nonincreasing,
        counterexample=example,
        samples_checked=checked,
    )


def _check_samples(samples: Any, seed: Any) -> None:
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 0:
        raise ValueError(f"samples must be an integer ≥ 0, got samples={samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got seed={seed!r}")


def _with_bounds(system: PortHamiltonian, balance: EnergyBalance) -> EnergyBalance:
    """Append the undecided conditions for H to be bounded below (see the module)."""
    conditions = getattr(system, "bounded_below_conditions", ())
    if conditions:
        shown = "; ".join(f"{c} ≥ 0 (the coefficient of {term})" for term, c in conditions)
        balance.extra["bounded_below"] = [c for _, c in conditions]
        balance.reason += (
            f"; note: H is bounded below only if {shown} — not decided for these parameters "
            "(a value that makes it negative is refused when given)"
        )
    return balance


def energy_balance(system: PortHamiltonian, samples: int = 2000, seed: int = 0) -> EnergyBalance:
    """dH/dt = −∇HᵀR∇H + yᵀu + Σ∂H/∂s·ṡ + ∂H/∂t for a :class:`PortHamiltonian`, with the
    closed-loop verdict (see the module). ``samples`` (≥ 0) states of the numeric search for
    dH/dt > 0, drawn with ``seed``."""
    _check_samples(samples, seed)
    if system.metric is not None:
        return _with_bounds(system, _metric_balance(system))
    H = system.hamiltonian
    grad = system.grad_hamiltonian
    # the pH form: a level-set system's field equals it on H = E (see EnergyLevel)
    rhs = sp.Matrix([system.structural_field[b] for b in system.blocks])
    diss_c = -(grad.T * system.R * grad)[0, 0]
    supply_c = (system.y.T * system.u)[0, 0] if system.u.shape[0] else sp.Integer(0)
    aux_c = sp.Integer(0)
    for s, rate_s in system.aux.items():
        aux_c += coordinate_derivative(H, s) * rate_s
    total_c = (grad.T * rhs)[0, 0] + aux_c
    times = [s for s in H.free_symbols if isinstance(s, Time)]
    dHdt_explicit = sp.simplify(sum((sp.diff(H, s) for s in times), sp.Integer(0)))

    rate = sp.simplify(to_globals(total_c) + dHdt_explicit)
    dissipation = to_globals(diss_c)
    supply = to_globals(supply_c)
    auxiliary = to_globals(aux_c)

    J = system.J
    skew = all(
        sp.simplify(J[i, j] + J[j, i]) == 0 for i in range(J.shape[0]) for j in range(i, J.shape[0])
    )
    if not skew:  # accepted within the float tolerance: ∇HᵀJ∇H need not vanish exactly
        structural = (
            False,
            "J is skew-symmetric only within the float tolerance, so ∇HᵀJ∇H is not exactly 0",
        )
    elif system.r_psd and aux_c == 0 and dHdt_explicit == 0:
        structural = (
            True,
            "−∇HᵀR∇H ≤ 0 because R is positive semidefinite (" + system.r_psd_reason + ")",
        )
    elif system.r_psd is None:
        structural = (False, f"R could not be shown positive semidefinite: {system.r_psd_reason}")
    elif aux_c != 0 or dHdt_explicit != 0:
        structural = (False, "H changes through auxiliary blocks or explicitly with time")
    else:
        structural = (False, "R is not positive semidefinite")

    def search() -> tuple[int, dict[str, Any] | None]:
        # the closed-loop rate (u substituted): the user's question is whether H rises
        return numeric_search(system, sp.expand(total_c), dHdt_explicit, samples, seed)

    verdict, reason, nonincreasing, example, checked = decide(
        rate, supply, structural, search, hamiltonian=H
    )
    balance = EnergyBalance(
        system=system.name,
        hamiltonian=H,
        rate=rate,
        dissipation=dissipation,
        supply=supply,
        auxiliary=auxiliary,
        time_derivative=dHdt_explicit,
        verdict=verdict,
        reason=reason,
        nonincreasing=nonincreasing,
        counterexample=example,
        samples_checked=checked,
    )
    return _with_bounds(system, balance)
