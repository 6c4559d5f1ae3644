"""The series of backward error analysis: a rule and an exact flow, expanded in the step η.

For the modified equation ẋ = f₀ + η f₁ + … (see :mod:`.modified`) two series are matched.

**The rule** x' = Φ_η(x) = x + η d₁(x) + η² d₂(x) + … (:class:`Expansion`). The d_k come from
the rule's update program (:class:`~odeopt.schemes.program.Program`), Taylor-expanded in η
symbolically: every intermediate is a series in η, and an evaluation g_k, F_k := ∇F(θ_k),
F(θ_k) at θ_k = θ + δ, δ = η a₁ + η² a₂ + …, becomes

    g_k = g + Σ_{m≥1} (1/m!) ∇^{m+1}F[δ, …, δ],   F_k = F + ⟨g, δ⟩ + Σ_{m≥2} (1/m!) ∇^mF[δ, …, δ],

with the contractions ∇^{m+1}F[v, …] the :class:`~odeopt.symbolic.language.LossDerivative`
symbols of the language (m = 1: the Hessian–vector product ∇²F·v, ``F.hvp(v)``). Reductions
Σφ of intermediates expand by their summands.

**The exact flow** of f̃ = Σ_a η^a f_a over a time η, exp(η D_f̃)x, by degree in η
(:func:`flow_coefficient`). The derivative along a field u (:class:`Along`) of a
per-coordinate expression e of blocks b, the gradient g, the loss F, the time t, reductions
R = Σφ and the contractions S = ∇^{k+1}F[v₁, …, v_k] is

    D_u e = Σ_b ∂e/∂b·u_b + ∂e/∂t·u_t + ∂e/∂g·(∇²F·u_θ) + ∂e/∂F·⟨g, u_θ⟩ + Σ_R ∂e/∂R·Σ D_uφ
            + Σ_S ∂e/∂S·(∇^{k+2}F[v₁, …, v_k, u_θ] + Σ_j ∇^{k+1}F[v₁, …, D_u v_j, …, v_k]),

with u_t = 1 for f₀ (the rule advances t by exactly η) and 0 for the corrections. Order 1
needs Hessian–vector products; order 2 needs third derivatives ∇³F[v, w] as well, which
come from the same symbols (``Problem.derivative``), so any order r ≥ 1 is derived while the
update is smooth.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import sympy as sp

from ..schemes.program import Assignment, Evaluation
from ..symbolic.energy import to_globals
from ..symbolic.language import (
    Block,
    Gradient,
    Loss,
    LossDerivative,
    Reduction,
    Time,
    coordinate_symbols,
)

if TYPE_CHECKING:
    from ..export.rule import UpdateRule

__all__ = [
    "Along",
    "Expansion",
    "NoModifiedEquation",
    "Series",
    "deep_symbols",
    "eta",
    "flow_coefficient",
    "tidy",
]

#: η, the step of the discrete rule (the integrator's own step stays h)
eta = sp.Symbol("eta", positive=True)

Series = list[sp.Expr]  # coefficients of η⁰, η¹, …, η^N


class NoModifiedEquation(NotImplementedError, ValueError):
    """The rule has no modified equation here (adaptive or implicit scheme, a metric or a
    stored energy, an inconsistent rule); the message says why. Catch it as
    ``NotImplementedError`` or ``ValueError``."""


# ------------------------------------------------------------------ the derivative along u
def deep_symbols(expr: sp.Expr) -> set[sp.Symbol]:
    """Free symbols of expr, including those inside reductions' summands and inside the
    vectors of loss derivatives."""
    out: set[sp.Symbol] = set()
    todo = list(sp.sympify(expr).free_symbols)
    while todo:
        s = todo.pop()
        if s in out:
            continue
        out.add(s)
        if isinstance(s, Reduction):
            todo.extend(s.summand.free_symbols)
        elif isinstance(s, LossDerivative):
            for v in s.vectors:
                todo.extend(v.free_symbols)
    return out


def tidy(expr: sp.Expr) -> sp.Expr:
    """expr expanded and collected by its coordinate symbols, each coefficient simplified."""
    expr = sp.expand(sp.sympify(expr))
    if expr == 0:
        return sp.Integer(0)
    coords = sorted(coordinate_symbols(expr), key=sp.default_sort_key)
    if not coords:
        return sp.simplify(expr)
    groups: dict[sp.Expr, sp.Expr] = {}
    for term in sp.Add.make_args(expr):
        c, phi = term.as_independent(*coords, as_Add=False)
        groups[phi] = groups.get(phi, sp.Integer(0)) + c
    return sp.Add(*(sp.simplify(c) * phi for phi, c in groups.items()))


class Along:
    """D_u: the derivative of per-coordinate expressions along a vector field u (see the
    module), for one loss F with block θ and gradient g."""

    def __init__(self, loss: Loss, u: Mapping[Block, sp.Expr], time: int) -> None:
        self.loss = loss
        self.u = dict(u)
        self.u_theta = sp.sympify(self.u.get(loss.block, 0))
        self.time = time
        self._memo: dict[sp.Expr, sp.Expr] = {}

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        expr = sp.sympify(expr)
        if expr in self._memo:
            return self._memo[expr]
        F = self.loss
        out = sp.Integer(0)
        for s in expr.free_symbols:
            d = sp.diff(expr, s)
            if d == 0:
                continue
            if isinstance(s, Block):
                if s not in self.u:
                    raise NoModifiedEquation(f"the block {s} is not a block of the system")
                out += d * self.u[s]
            elif isinstance(s, Time):
                out += d * self.time
            elif s == F.grad:
                out += d * F.hvp(self.u_theta)
            elif s == F:
                out += d * to_globals(F.grad * self.u_theta)
            elif isinstance(s, Reduction):
                out += d * to_globals(self(s.summand))
            elif isinstance(s, LossDerivative):
                vs = s.vectors
                term = F.derivative(*vs, self.u_theta) if self.u_theta != 0 else sp.Integer(0)
                for j, v in enumerate(vs):
                    dv = self(v)
                    if dv != 0:
                        term += F.derivative(*vs[:j], dv, *vs[j + 1 :])
                out += d * term
            elif isinstance(s, (Gradient, Loss)):
                raise NoModifiedEquation(f"{s} is not the system's loss or gradient")
            # parameters and η are constant along the flow
        self._memo[expr] = out
        return out


# ------------------------------------------------------------------ the rule as a series in η
class Expansion:
    """The update program with h → η, every quantity a series in η to degree N."""

    def __init__(self, rule: UpdateRule, N: int) -> None:
        self.rule = rule
        self.N = N
        system = rule.system
        assert system.loss is not None
        self.loss: Loss = system.loss
        self.series: dict[sp.Symbol, Series] = {}
        self.sub_h = {rule.h: eta}

    def _poly(self, s: Series) -> sp.Expr:
        return sp.Add(*(c * eta**a for a, c in enumerate(s)))

    def series_of(self, expr: sp.Expr) -> Series:
        """The Taylor coefficients of expr (an expression of the program's symbols) in η."""
        expr = sp.sympify(expr).xreplace(self.sub_h)
        sub: dict[sp.Symbol, sp.Expr] = {}
        for s in expr.free_symbols:
            if s in self.series:
                sub[s] = self._poly(self.series[s])
            elif isinstance(s, Reduction) and s.summand.free_symbols & set(self.series):
                coeffs = self.series_of(s.summand)
                sub[s] = self._poly([to_globals(c) for c in coeffs])
        e = expr.xreplace(sub)
        out: Series = []
        for a in range(self.N + 1):
            c = e.subs(eta, 0) if e.has(eta) else e
            out.append(sp.expand(c / math.factorial(a)))
            if a < self.N:
                e = sp.diff(e, eta) if e.has(eta) else sp.Integer(0)
        return out

    def _compositions(self, n: int, m: int) -> list[tuple[int, ...]]:
        """Ordered m-tuples of positive integers summing to n."""
        return [c for c in itertools.product(range(1, n + 1), repeat=m) if sum(c) == n]

    def evaluation(self, ins: Evaluation) -> None:
        """g_k, F_k at θ_k = θ + δ as series (see the module)."""
        F = self.loss
        theta = F.block
        at = self.series.get(ins.theta, [ins.theta, *([sp.Integer(0)] * self.N)])
        if sp.simplify(at[0] - theta) != 0:
            raise NoModifiedEquation(
                f"the rule evaluates the gradient at {ins.theta} → {at[0]} as η → 0, not at θ: "
                "it is not consistent (θ_k = θ + O(η) is needed)"
            )
        delta = [sp.Integer(0), *at[1:]]
        g_s: Series = [F.grad]
        F_s: Series = [F]
        for n in range(1, self.N + 1):
            gn, Fn = sp.Integer(0), sp.Integer(0)
            for m in range(1, n + 1):
                for comp in self._compositions(n, m):
                    vs = [delta[j] for j in comp]
                    if any(v == 0 for v in vs):
                        continue
                    w = sp.Rational(1, math.factorial(m))
                    gn += w * F.derivative(*vs)
                    if m == 1:
                        Fn += w * to_globals(F.grad * vs[0])
                    else:
                        Fn += w * to_globals(vs[0] * F.derivative(*vs[1:]))
            g_s.append(sp.expand(gn))
            F_s.append(sp.expand(Fn))
        self.series[ins.loss.grad] = g_s
        self.series[ins.loss] = F_s

    def run(self) -> dict[str, Series]:
        for ins in self.rule.instructions:
            if isinstance(ins, Evaluation):
                if ins.loss != self.loss:
                    self.evaluation(ins)
            elif isinstance(ins, Assignment):
                self.series[ins.target] = self.series_of(ins.expr)
        return {b: self.series_of(e) for b, e in self.rule.outputs.items()}


def flow_coefficient(
    fs: Sequence[Mapping[Block, sp.Expr]], blocks: Sequence[Block], loss: Loss, degree: int
) -> dict[Block, sp.Expr]:
    """[η^degree] exp(η D_f̃) x for f̃ = Σ_a η^a fs[a] (the exact flow of f̃ over time η)."""
    zero = {b: sp.Integer(0) for b in blocks}
    if not fs:
        return zero
    along = [Along(loss, f, 1 if a == 0 else 0) for a, f in enumerate(fs)]
    T: list[dict[Block, sp.Expr]] = [{b: b for b in blocks}]  # T_0 = x, by degree in η
    out = dict(zero)
    for k in range(1, degree + 1):
        new: list[dict[Block, sp.Expr]] = []
        for m in range(degree - k + 1):
            acc = dict(zero)
            for a in range(min(m, len(T) - 1) + 1):
                j = m - a
                if j >= len(fs):
                    continue
                for b in blocks:
                    if T[a][b] != 0:
                        acc[b] += along[j](T[a][b])
            new.append({b: sp.expand(e) for b, e in acc.items()})
        T = new
        if degree - k < len(T):
            for b in blocks:
                out[b] += T[degree - k][b] / math.factorial(k)
    return out
