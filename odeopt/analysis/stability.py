"""Stability on quadratics: where the spectral radius ρ(M) of an iteration matrix is < 1.

For a real 2×2 matrix M with characteristic polynomial det(zI − M) = z² + a₁z + a₀ both roots
lie in the open unit disc iff (the Schur–Cohn / Jury conditions)

    |a₀| < 1  and  |a₁| < 1 + a₀,   i.e.  a₀ < 1, a₀ > −1, 1 + a₁ + a₀ > 0, 1 − a₁ + a₀ > 0;

for 1×1, |M| < 1 (:func:`schur_cohn`). With one symbol left free the stable set is solved for
exactly by sympy (:func:`solve_conditions`) or, where sympy cannot, found numerically by a log
scan with bisection of each change (:func:`positive_set`). :class:`StabilityRegion` holds the
result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

__all__ = ["StabilityRegion", "positive_set", "schur_cohn", "solve_conditions"]


def schur_cohn(M: sp.Matrix) -> list[sp.Boolean] | None:
    """The conditions (unsimplified) for ρ(M) < 1 of a 1×1 or 2×2 matrix M (see the module);
    None for a larger M."""
    k = M.shape[0]
    z = sp.Symbol("z")
    if k == 1:
        return [M[0, 0] < 1, M[0, 0] > -1]
    if k == 2:
        cp = sp.Poly((z * sp.eye(2) - M).det(), z)
        a1, a0 = cp.coeff_monomial(z), cp.coeff_monomial(1)
        return [a0 < 1, a0 > -1, 1 + a1 + a0 > 0, 1 - a1 + a0 > 0]
    return None


def solve_conditions(conds: Sequence[sp.Boolean], var: sp.Symbol) -> sp.Set | None:
    """{var : every condition holds} solved exactly by sympy over var's domain (the positive
    reals for a positive symbol), or None where sympy cannot (an error or a ConditionSet)."""
    domain = sp.Interval.open(0, sp.oo) if var.is_positive else sp.S.Reals
    out: sp.Set = domain
    try:
        for c in conds:
            if c is sp.true:
                continue
            if c is sp.false:
                return sp.S.EmptySet
            out = out.intersect(sp.solveset(c, var, domain))
    except (NotImplementedError, ValueError, TypeError):
        return None
    return None if out.has(sp.ConditionSet) else out


def positive_set(
    pred: Any, closed: bool, lo: float = 1e-8, hi: float = 1e8, points: int = 3201
) -> sp.Set:
    """{x > 0 : pred(x)}, numerically: a log scan of ``pred`` (vectorised, bool) over
    [lo, hi] and bisection of each change, as a union of intervals (open, or closed at inner
    edges when ``closed``); an interval reaching ``lo`` starts at 0, one reaching ``hi`` is
    unbounded."""
    xs = np.geomspace(lo, hi, points)
    ok = np.asarray(pred(xs), dtype=bool)

    def one(x: float) -> bool:
        return bool(np.asarray(pred(np.array([x])))[0])

    def edge(a: float, b: float) -> float:
        sa = one(a)
        for _ in range(200):
            m = math.sqrt(a * b)
            if m in (a, b):
                break
            if one(m) == sa:
                a = m
            else:
                b = m
        return math.sqrt(a * b)

    out: sp.Set = sp.S.EmptySet
    i = 0
    while i < len(xs):
        if not ok[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(xs) and ok[j + 1]:
            j += 1
        left = 0.0 if i == 0 else edge(float(xs[i - 1]), float(xs[i]))
        right = sp.oo if j == len(xs) - 1 else edge(float(xs[j]), float(xs[j + 1]))
        out = out.union(
            sp.Interval(left, right, left_open=i == 0 or not closed, right_open=not closed)
        )
        i = j + 1
    return out


@dataclass
class StabilityRegion:
    """Where ρ(M) < 1.

    ``condition``: the Schur–Cohn (Jury) conditions on the characteristic polynomial, a sympy
    Boolean (None when M is larger than 2×2); ``variable``: the one symbol left free, if only
    one was; ``set``: the values of that symbol where the rule is stable (a sympy Set, exact
    when ``exact``, else found numerically by a scan with bisection); ``by_name``: the public
    name of ``variable``.
    """

    condition: sp.Boolean | None
    variable: sp.Symbol | None
    set: sp.Set | None
    exact: bool
    by_name: str | None = None

    @property
    def interval(self) -> tuple[float, float] | None:
        """(lo, hi) of the first stable interval of the variable (None when unknown/empty)."""
        if self.set is None or self.set is sp.S.EmptySet:
            return None
        parts = self.set.args if isinstance(self.set, sp.Union) else (self.set,)
        first = min(parts, key=lambda s: float(s.inf))
        return float(first.inf), float(first.sup)

    def __str__(self) -> str:
        if self.set is not None:
            how = "exact" if self.exact else "numeric"
            return f"stable for {self.by_name} in {self.set} ({how})"
        if self.condition is sp.false:
            return "never stable"
        if self.condition is not None:
            return f"stable iff {self.condition}"
        return "stability region unknown (give all values but one)"
