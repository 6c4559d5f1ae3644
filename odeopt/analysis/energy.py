"""The discrete energy of a rule on quadratics: does one step decrease H, and for which h?

On F = ½λθ² (per eigen-direction) H is a quadratic form ½xᵀQx of the state when the system's
H is (heavy ball: Q = diag(λ, 1/m)), and the step x ↦ Mx of :func:`~odeopt.analysis.quadratic`
never increases it iff Q − MᵀQM ⪰ 0 — the discrete counterpart of the energy verdict.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from ..symbolic.language import Reduction, Time
from .linear_map import NotLinearError, curvature
from .quadratic import quadratic
from .stability import positive_set, solve_conditions

if TYPE_CHECKING:
    from ..export.rule import UpdateRule

__all__ = ["DiscreteEnergy", "discrete_energy"]


@dataclass
class DiscreteEnergy:
    """Whether one step decreases H on every quadratic direction: H(Mx) ≤ H(x) for all x.

    With H = ½xᵀQx on F = ½λθ² this is Q − MᵀQM ⪰ 0 (``difference``); ``condition`` is its
    principal-minor test (a sympy Boolean), ``set`` the values of the one free symbol where it
    holds (closed, exact when ``exact``).
    """

    quadratic_form: sp.Matrix
    difference: sp.Matrix
    condition: sp.Boolean
    variable: sp.Symbol | None
    set: sp.Set | None
    exact: bool
    by_name: str | None = None

    @property
    def always(self) -> bool:
        """True when H decreases for every value (the condition is identically true)."""
        return self.condition is sp.true

    def __str__(self) -> str:
        if self.always:
            return "one step never increases H on quadratics"
        if self.condition is sp.false:
            return "one step increases H for some state, whatever the values"
        if self.set is not None:
            if self.set is sp.S.EmptySet:
                return f"one step increases H for some state, for every {self.by_name} > 0"
            return f"one step decreases H on quadratics for {self.by_name} in {self.set}"
        return f"one step decreases H on quadratics iff {self.condition}"


def discrete_energy(
    rule: UpdateRule,
    t: Any = None,
    free: Sequence[str] | str | None = None,
    switched: bool = False,
    **values: Any,
) -> DiscreteEnergy:
    """Does the discrete step decrease H on quadratics, and for which h?

    On F = ½λθ² (per direction) H becomes a quadratic form ½xᵀQx of the state when it is one
    (heavy ball: Q = diag(λ, 1/m)); the step x ↦ Mx never increases it iff Q − MᵀQM ⪰ 0,
    decided by its principal minors (all ≥ 0). Values given by keyword (``h``,
    ``curvature``, the system's keywords) are substituted, the system's defaults for the
    parameters not given unless named in ``free`` (``"all"``: keep every symbol); with one
    symbol left free, its set is solved for with sympy (numerically where sympy cannot).
    The discrete counterpart of the continuous energy verdict.
    """
    q = quadratic(rule, t=t, switched=switched)
    sys_ = rule.system
    loss = sys_.loss
    assert loss is not None
    H = sp.sympify(sys_.hamiltonian)
    sub: dict[sp.Symbol, sp.Expr] = {loss: curvature * loss.block**2 / 2}
    for s in H.free_symbols:
        if isinstance(s, Reduction):
            sub[s] = s.summand
        elif isinstance(s, Time) and t is None:
            raise NotLinearError("H depends on the time t: give t=")
    Hq = sp.expand(H.xreplace(sub).xreplace(q.fixed))
    blocks = q.blocks
    try:
        poly = sp.Poly(Hq, *blocks)
    except sp.PolynomialError as exc:
        raise NotLinearError(f"H = {H} is not a quadratic form on quadratics") from exc
    if any(sum(m) != 2 for m in poly.monoms()):
        raise NotLinearError(
            f"H = {H} is not a quadratic form of the state on F = ½λθ² ({Hq}), so its "
            "decrease is not a matrix inequality"
        )
    Q = sp.hessian(Hq, blocks)
    M = q.matrix
    D = (Q - M.T * Q * M).applyfunc(lambda e: sp.factor(sp.simplify(e)))
    names = q.symbols
    vsub = q.substitution(values, free)
    Dv = D.xreplace(vsub).applyfunc(sp.simplify)
    n = Dv.shape[0]
    minors = []
    for r in range(1, n + 1):
        for idx in itertools.combinations(range(n), r):
            minors.append(sp.factor(sp.simplify(Dv.extract(list(idx), list(idx)).det())))
    conds = [sp.simplify(m >= 0) for m in minors]
    condition = sp.And(*conds)
    free = sorted(Dv.free_symbols, key=lambda s: s.name)
    var = sset = None
    exact = True
    if len(free) == 1:
        var = free[0]
        sset = solve_conditions(conds, var)
        if sset is None and (var.is_positive or var.is_nonnegative):
            fn = sp.lambdify(var, Dv, modules="numpy")
            qfn = sp.lambdify(var, Q.xreplace(vsub), modules="numpy")

            def decreases(x: np.ndarray) -> np.ndarray:
                mats = np.array([np.asarray(fn(float(v)), dtype=float) for v in x])
                scale = np.array([np.abs(np.asarray(qfn(float(v)), float)).max() for v in x])
                return np.linalg.eigvalsh(mats).min(-1) >= -1e-12 * np.maximum(scale, 1e-300)

            sset, exact = positive_set(decreases, closed=True, points=801), False
        elif sset is None:
            exact = False
    by = {s: k for k, s in names.items()}
    return DiscreteEnergy(Q, D, condition, var, sset, exact, by.get(var) if var else None)
