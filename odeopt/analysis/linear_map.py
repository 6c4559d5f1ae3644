"""An update rule on a quadratic as a linear map: reading M(λ) off the update program.

On F(θ) = ½θᵀAθ, in the eigenbasis of A the directions decouple: along an eigenvector with
eigenvalue λ (the :data:`curvature`), F = ½λθ² and g = λθ. Running the rule's update program
(:class:`~odeopt.schemes.program.Program`) once with every evaluation g_k := ∇F(θ_k) replaced
by λθ_k gives the new state as expressions of the old one; a rule whose step uses only
coordinate-wise linear operations is then x_{k+1} = M(λ; h, parameters) x_k, and M is read
off coefficient by coefficient (:func:`linear_map`). Anything else is refused with the reason
(:class:`NotLinearError`): the loss value F, a global sum such as |p|², the time t (unless
fixed), an adaptive step, an implicit solve, a nonlinear coordinate operation.

The same run on F = ½λ(θ − θ*)² from the minimiser at rest (θ = θ*, other blocks 0) tells
whether θ* is a fixed point of the rule (:func:`fixed_point_drift`): a term in θ outside the
gradient (weight decay, Massaroli's c|ω|²) moves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from ..schemes.program import Assignment, Evaluation
from ..symbolic.language import Block, Gradient, Loss, Reduction, Time
from ..symbolic.language import t as time

if TYPE_CHECKING:
    from ..export.rule import UpdateRule

__all__ = [
    "NotLinearError",
    "adaptive_controller",
    "check_real",
    "curvature",
    "fixed_point_bias",
    "fixed_point_drift",
    "linear_map",
]

#: λ, the curvature of the quadratic along one eigen-direction (F = ½λθ², g = λθ)
curvature = sp.Symbol("lambda", positive=True)


class NotLinearError(ValueError):
    """The rule is not a linear map on quadratics; the message says why."""


def check_real(name: str, value: Any) -> None:
    """``value`` (a number or array) real and finite, else a TypeError/ValueError naming it."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real number or array, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {name} = {value!r}")


def adaptive_controller(rule: UpdateRule) -> str | None:
    """What chooses the step size of ``rule`` per step (None for a fixed step h).

    An embedded error estimate alone (heun, euler_richardson) does not: the rule is then the
    propagated step at a fixed h; a controller attached to the scheme (``EnergyDecrease``,
    ``EulerRichardson(controller=...)``) does.
    """
    from ..schemes.adaptive import EnergyDecrease
    from ..schemes.base import Projected

    scheme = rule.scheme
    base = scheme.inner if isinstance(scheme, Projected) else scheme
    if isinstance(base, EnergyDecrease):
        return "the energy test (EnergyDecrease)"
    ctrl = getattr(base, "controller", None)
    if ctrl is not None:
        return f"its controller {type(ctrl).__name__}"
    return None


def _why_not(rule: UpdateRule) -> str | None:
    sys_ = rule.system
    scheme = rule.scheme.name
    controller = adaptive_controller(rule)
    if controller:
        return (
            f"{scheme} is adaptive: {controller} chooses each step size, so a step is not "
            "one fixed linear map; analyse the scheme without its controller (its step at a "
            "fixed h)"
        )
    if rule.program.unknowns:
        return f"{scheme} is implicit (a nonlinear solve per step); analyse an explicit scheme"
    if sys_.loss is None:
        return f"{sys_.name} has no loss"
    return None


_SHIFT = sp.Symbol("theta_star_", real=True)


def _run_on_quadratic(
    rule: UpdateRule, fixed: Mapping[sp.Symbol, sp.Expr], start: Mapping[sp.Symbol, sp.Expr]
) -> dict[Block, sp.Expr]:
    """The new state after one step on F = ½λ(θ − θ*)² (g_k = λ(θ_k − θ*)), from ``start``
    (block → value; the blocks themselves where not given; θ* = 0 unless ``start`` is the
    shifted rest state of :func:`_fixed_point_drift`)."""
    shift = _SHIFT if start else sp.Integer(0)
    sub: dict[sp.Symbol, sp.Expr] = dict(start)

    def apply(e: sp.Expr) -> sp.Expr:
        e = sp.sympify(e).xreplace(sub)
        return e.xreplace(dict(fixed)) if fixed else e

    for ins in rule.instructions:
        if isinstance(ins, Assignment):
            sub[ins.target] = apply(ins.expr)
        elif isinstance(ins, Evaluation):
            sub[ins.loss.grad] = curvature * (sub.get(ins.theta, ins.theta) - shift)
    return {b: sp.expand(apply(rule.outputs[b.name])) for b in rule.system.all_blocks}


def fixed_point_drift(rule: UpdateRule, fixed: Mapping[sp.Symbol, sp.Expr]) -> str | None:
    """None when the minimiser at rest (θ = θ*, every other block 0) is a fixed point of the
    rule on F = ½λ(θ − θ*)²; else what the step makes of it (a term in θ outside the
    gradient, such as weight decay c|θ|², pulls the iterates to another point)."""
    theta = rule.system.loss.block
    start = {b: (_SHIFT if b == theta else sp.Integer(0)) for b in rule.system.all_blocks}
    out = _run_on_quadratic(rule, fixed, start)
    moved = []
    for b, e in out.items():
        d = sp.simplify(e - start[b])
        if d != 0:
            moved.append(f"{b.name}' − {start[b]} = {d}".replace(str(_SHIFT), "θ*"))
    return "; ".join(moved) or None


def linear_map(
    rule: UpdateRule, t: Any, switched: bool
) -> tuple[sp.Matrix, tuple[Block, ...], dict[sp.Symbol, sp.Expr]]:
    """M(λ) with x_{k+1} = M x_k, the state's blocks, and the substitution used (t, switch)."""
    why = _why_not(rule)
    if why:
        raise NotLinearError(f"{rule.system.name} with {rule.scheme.name}: {why}")
    sys_ = rule.system
    fixed: dict[sp.Symbol, sp.Expr] = {}
    if switched:
        if not sys_.switches:
            raise ValueError(f"switched=True, but {sys_.name} has no switch")
        for sw in sys_.switches:
            fixed.update(sw.set)
    if t is not None:
        check_real("t", t)
        fixed[time] = sp.nsimplify(t, rational=True)
    blocks = sys_.all_blocks
    outputs = _run_on_quadratic(rule, fixed, {})
    name = f"{sys_.name} with {rule.scheme.name}"
    for b, e in outputs.items():
        # the loss first, then reductions, then the time: the same reason on every run
        rank = {Loss: 0, Reduction: 1, Time: 2}
        found = sorted(e.free_symbols, key=lambda s: (rank.get(type(s), 3), s.name))
        for s in found:
            if isinstance(s, Loss):
                raise NotLinearError(
                    f"{name}: the step depends on the loss value {s} (on a quadratic "
                    f"F = ½λ|θ|², a global of the whole state), so it is not linear per "
                    "direction; its step size changes with F"
                )
            if isinstance(s, Reduction):
                raise NotLinearError(
                    f"{name}: the step depends on the global {s}, a sum over all coordinates, "
                    "so the directions of a quadratic do not decouple and the step is not "
                    "linear"
                )
            if isinstance(s, Time):
                raise NotLinearError(
                    f"{name}: the coefficients change with the time t ({b.name}' = {e}); fix "
                    "the time with quadratic(t=...) to analyse the step at that time"
                )
            if isinstance(s, Gradient):  # pragma: no cover - every evaluation was substituted
                raise NotLinearError(f"{name}: the gradient {s} was not evaluated")
    try:
        polys = {b: sp.Poly(e, *blocks) for b, e in outputs.items()}
    except sp.PolynomialError as exc:
        raise NotLinearError(f"{name}: the update is not polynomial in the state: {exc}") from exc
    for b, p in polys.items():
        if p.total_degree() > 1 or p.coeff_monomial(1) != 0:
            raise NotLinearError(
                f"{name}: the update is not linear in the state ({b.name}' = {outputs[b]}); "
                "on quadratics the rule must be x_{k+1} = M(λ)x_k"
            )
    M = sp.Matrix(
        [[sp.factor_terms(polys[bi].coeff_monomial(bj)) for bj in blocks] for bi in blocks]
    )
    return M, blocks, fixed


def fixed_point_bias(rule: UpdateRule) -> str | None:
    """Why the rule does not converge to the minimiser of a quadratic, or None.

    On F = ½λ(θ − θ*)² the minimiser at rest must be a fixed point for ρ(M) to be the rate of
    convergence *to θ**; a term in θ outside the gradient (Massaroli's c|ω|², weight decay)
    moves it, and the iterates converge (at rate ρ) to another point. None also when the rule
    is not linear on quadratics (that has its own reason).
    """
    if _why_not(rule) is not None:
        return None
    try:
        return fixed_point_drift(rule, {})
    except (TypeError, ValueError):  # pragma: no cover - a rule sympy cannot run
        return None
