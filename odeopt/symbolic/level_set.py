"""A conserved energy stored as state: the level set H = E of a conservative system.

Energy Conserving Descent (ALGORITHMS.md §6) does not integrate the flow of H as such: it
stores the energy E reached at the start and moves on the level set H = E. Three things follow
from that, each derived here from H by sympy, for any conservative system whose H depends on
its momentum block p through S = |p|² only:

* the **surface**: the solution S*(E, θ) of H(θ, S) = E for S (BBI: S* = E²/V − V);
* the **field on the level set** (``eliminate=True``): (J − R)∇H with S replaced by S*, so
  the field depends on E instead of |p|² (BBI: θ' = (V/E)p, p' = −½(E/V + V/E)∇F);
* the **projection** (``project=True``): before every step, p ← r·p with r = √(S*/S), which
  puts the state back on H = E; r = 1 when |S* − S| < ``tol``, when S* < 0 (no momentum can
  reach E there) or when S = 0 (no direction to rescale).

E is a *stored* parameter of the system (:attr:`Parameter.stored`): not a hyper-parameter but
state. Integration takes E = H(x₀) per trajectory unless it is given; an exported optimizer
sets E = ``initial`` (an expression of F and the parameters at the first step) and starts the
momentum along −∇F on the level set: p₀ = −√(S*(E)/|∇F|²)·∇F (zero when ∇F = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy as sp

from ..errors import StructureError
from .language import Block, Loss, Reduction, sqnorm

__all__ = ["EnergyLevel", "LevelSet"]


def _tidy(expr: sp.Expr, E: sp.Symbol) -> sp.Expr:
    """Simplified, and split into partial fractions in E where it is rational in E."""
    expr = sp.simplify(expr)
    try:
        return sp.apart(expr, E)
    except (sp.PolynomialError, NotImplementedError):
        return expr


@dataclass(frozen=True)
class EnergyLevel:
    """How a conservative system uses its stored energy E (see the module docstring).

    ``momentum`` is the block rescaled by the projection (H must depend on it through |p|²
    only); ``initial`` is E at the first step of an exported optimizer, an expression of the
    loss F and the parameters (BBI: V + δE); ``symbol`` names E.

    ``domain`` is an expression of F and the parameters that must stay positive (BBI:
    V = F − ΔV): an exported optimizer makes no step where it is ≤ 1e-40 (no division by
    zero, no NaN) and counts the skip; with ``adaptive_shift=True`` it also lowers the
    parameter ``shift`` (BBI: ΔV) by 5|V| there (the authors' ΔV-tuning variant).

    ``bounce`` adds ECD's random bounces to an exported optimizer, drawn from a seeded
    generator whose state is kept in ``state_dict``: ``"uniform"`` (BBI) replaces p by
    uniform noise in [−½, ½] per element rescaled to the same global |p|, in a step that
    makes no update, after every ``bounce_every`` updates (``bounces`` of them in all) and
    whenever ``bounce_patience`` steps pass without a new minimum of the domain value V;
    ``"gaussian"`` (ECDSep) jitters the direction after every update,
    p ← |p|·normalize(p/|p| + ν z), z ~ N(0, I), ν = ``noise``.
    """

    momentum: Block
    initial: Any
    eliminate: bool = True
    project: bool = True
    tol: float = 1e-10
    symbol: str = "E"
    domain: Any = None
    shift: Any = None
    bounce: str | None = None
    positive: bool = True


class LevelSet:
    """The expressions an :class:`EnergyLevel` makes of a system's H (built by the system)."""

    def __init__(self, spec: EnergyLevel, hamiltonian: sp.Expr, blocks: tuple[Block, ...]) -> None:
        if spec.momentum not in blocks:
            raise StructureError(
                f"energy_level: the momentum {spec.momentum} is not an energy block"
            )
        if not spec.tol >= 0:
            raise StructureError(f"energy_level: tol must be ≥ 0, got {spec.tol}")
        self.spec = spec
        # E > 0 (BBI, Ruthless) lets sympy take √(E²) = E; a log-energy (ECDSep) is real
        self.E = (
            sp.Symbol(spec.symbol, positive=True)
            if spec.positive
            else sp.Symbol(spec.symbol, real=True)
        )
        p = spec.momentum
        self.S: Reduction = sqnorm(p)
        if self.S not in hamiltonian.free_symbols:
            raise StructureError(
                f"energy_level: H = {hamiltonian} does not contain |{p}|²; the level set is "
                "solved for the momentum's squared norm"
            )
        if hamiltonian.xreplace({self.S: sp.Integer(0)}).has(p):
            raise StructureError(
                f"energy_level: H depends on {p} other than through |{p}|²; the projection "
                "p ← r·p needs H(θ, |p|²)"
            )
        self.domain = None if spec.domain is None else sp.sympify(spec.domain)
        s = sp.Symbol("S_", nonnegative=True)
        sols = sp.solve(sp.Eq(hamiltonian.xreplace({self.S: s}), self.E), s)
        if len(sols) != 1:
            raise StructureError(
                f"energy_level: H = E has {len(sols)} solutions for |{p}|² ({sols}); one is needed"
            )
        # partial fractions in E keep V = F − ΔV unexpanded (E²/V − V, not (E² − V²)/V)
        self.surface: sp.Expr = self._tidy(sols[0])
        target = self.surface
        S = self.S
        tol = sp.Float(spec.tol)
        keep = sp.Or(target < 0, S <= 0, sp.Abs(target - S) < tol)
        # max(·, 0): rounding cannot take the root of a negative where the target is ≈ 0
        self.factor: sp.Expr = sp.Piecewise(
            (sp.Integer(1), keep), (sp.sqrt(sp.Max(target, 0) / S), True)
        )
        if spec.bounce not in (None, "uniform", "gaussian"):
            raise StructureError(
                f"energy_level: bounce is None, 'uniform' or 'gaussian'; got {spec.bounce!r}"
            )
        self.shift = spec.shift
        if self.shift is not None and (
            self.domain is None or self.shift not in self.domain.free_symbols
        ):
            raise StructureError("energy_level: shift must be a parameter of the domain")
        self.initial = sp.sympify(spec.initial)
        if self.initial.has(p):
            raise StructureError(
                "energy_level: initial (E at the first step) cannot use the momentum"
            )

    def on_surface(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` with |p|² replaced by S*(E), simplified (E > 0) and split into partial
        fractions in E (BBI: −½(E/V + V/E)g, the form of §6)."""
        return self._tidy(sp.sympify(expr).xreplace({self.S: self.surface}))

    def _tidy(self, expr: sp.Expr) -> sp.Expr:
        """:func:`_tidy`, simplifying where the domain value is positive (V > 0: √(V²) = V,
        no Abs or Piecewise), then written back in F."""
        expr = sp.sympify(expr)
        if self.domain is not None:
            losses = [s for s in self.domain.free_symbols if isinstance(s, Loss)]
            v = sp.Symbol("V_", positive=True)
            sol = sp.solve(sp.Eq(self.domain, v), losses[0]) if len(losses) == 1 else []
            if len(sol) == 1:
                inner = _tidy(expr.xreplace({losses[0]: sol[0]}), self.E)
                return _tidy(inner.xreplace({v: self.domain}), self.E)
        return _tidy(expr, self.E)

    def start_coefficient(self, grad_sqnorm: sp.Expr, energy: sp.Expr) -> sp.Expr:
        """c in p₀ = −c·∇F: c = √(S*(E₀)/|∇F|²), and 0 when ∇F = 0 or S*(E₀) ≤ 0."""
        target = self.surface.xreplace({self.E: energy})
        return sp.Piecewise(
            (sp.Integer(0), sp.Or(grad_sqnorm <= 0, target <= 0)),
            (sp.sqrt(sp.Max(target, 0) / grad_sqnorm), True),
        )
