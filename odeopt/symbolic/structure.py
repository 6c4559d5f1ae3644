"""The structure checks of a port-Hamiltonian system: J skew, R symmetric PSD, H bounded below.

For ẋ = (J − R)∇H + Gu the energy balance dH/dt = −∇HᵀR∇H + yᵀu (+ ∂H/∂t) holds only when

* J is skew-symmetric, Jᵢⱼ = −Jⱼᵢ (so ∇HᵀJ∇H = 0),
* R is symmetric positive semidefinite (so −∇HᵀR∇H ≤ 0), and
* H is bounded below (else a decreasing H proves nothing).

Exact entries are decided exactly: symmetry by simplification, R ⪰ 0 by all its principal
minors being ≥ 0 (from the symbols' assumptions; a sign they leave open is "undecided").
Entries that are all numbers with a float among them are decided numerically, to the relative
tolerance :data:`FLOAT_RTOL`: |Jᵢⱼ + Jⱼᵢ| ≤ tol·k·max|J|, and the eigenvalues of (R + Rᵀ)/2
count as ≥ 0 down to −tol·k·max|λ|. Floats among symbols are read as the shortest decimal that
prints them (0.1 → 1/10) and decided exactly.

Bounded below: H = … + c·Σφ with φ ⊇ a·x² for a block x that occurs nowhere else in H has the
*kinetic coefficient* κ = c·a, and H → −∞ along |x| → ∞ when κ < 0 (a negative mass).
:func:`kinetic_terms` finds those κ; a κ < 0 by the assumptions is refused at once, the others
are checked against parameter values (:func:`check_kinetic_values`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sympy as sp

from ..arrays import arrays_of
from ..errors import StructureError
from .language import Block, Gradient, Loss, Reduction, Time
from .validation import Parameter

__all__ = [
    "FLOAT_RTOL",
    "check_kinetic_values",
    "check_structure",
    "kinetic_terms",
    "nonzero",
    "nonzero_matrix",
    "psd_status",
]

#: relative tolerance of the skew/symmetry/PSD checks on float entries (per matrix size k):
#: |Jᵢⱼ + Jⱼᵢ| ≤ tol·k·max|J|, and eigenvalues λ ≥ −tol·k·max|λ| count as ≥ 0 (round-off of
#: decimals such as R = [[.01, .05], [.05, .25]] = vvᵀ). Exact entries are decided exactly.
FLOAT_RTOL = 1e-12

_NON_FINITE = (sp.nan, sp.zoo, sp.oo, -sp.oo)


def nonzero_matrix(m: sp.Matrix) -> bool:
    """True unless every entry of m simplifies to 0."""
    return any(nonzero(e) for e in m)


def nonzero(expr: sp.Expr) -> bool:
    """True unless expr simplifies to 0."""
    expr = sp.sympify(expr)
    if expr == 0:
        return False
    return sp.simplify(expr) != 0


def _prepare(M: sp.Matrix) -> tuple[sp.Matrix, float | None, bool]:
    """(matrix, tolerance or None, rationalized) for the structure checks.

    Exact entries: (M, None, False), decided exactly. All entries numbers with a float among
    them: (M, FLOAT_RTOL·k·max|Mᵢⱼ|, False), decided numerically with that tolerance.
    Floats mixed with symbols: each float is read as the shortest decimal that prints it
    (0.1 → 1/10, sympy's nsimplify(rational=True)) and the result is decided exactly.
    """
    if not any(sp.sympify(e).has(sp.Float) for e in M):
        return M, None, False
    if all(sp.sympify(e).is_Number for e in M):
        size = max((abs(float(e)) for e in M), default=0.0)
        return M, FLOAT_RTOL * max(M.shape[0], 1) * size, False
    return M.applyfunc(lambda e: sp.nsimplify(e, rational=True)), None, True


def _show(e: Any) -> str:
    """An entry for a message: floats as Python prints them (0.3, not 0.300000000000000)."""
    e = sp.sympify(e)
    return f"{float(e):g}" if isinstance(e, sp.Float) else str(e)


def _is_zero(expr: sp.Expr, tol: float | None) -> bool:
    if tol is None:
        return not nonzero(expr)
    return abs(float(expr)) <= tol


def check_structure(J: sp.Matrix, R: sp.Matrix, context: str) -> None:
    """J skew and R symmetric: exactly on exact entries, to FLOAT_RTOL on float ones; then
    R PSD (:func:`psd_status`). A StructureError names the entry; ``context`` (e.g.
    " with m = 1.0") is appended to the message."""
    for label, M in (("J", J), ("R", R)):
        for i, j in itertools.product(range(M.shape[0]), range(M.shape[1])):
            if sp.sympify(M[i, j]).has(*_NON_FINITE):
                raise StructureError(f"{label}[{i},{j}] = {M[i, j]} is not finite{context}")
    k = J.shape[0]
    Jc, jtol, _ = _prepare(J)
    Rc, rtol, _ = _prepare(R)
    for i in range(k):
        for j in range(i, k):
            if not _is_zero(Jc[i, j] + Jc[j, i], jtol):
                what = (
                    f"J[{i},{i}] = {_show(J[i, i])} (the diagonal must be 0)"
                    if i == j
                    else f"J[{i},{j}] = {_show(J[i, j])} but J[{j},{i}] = {_show(J[j, i])}"
                )
                raise StructureError(f"J is not skew-symmetric{context}: {what}")
            if j > i and not _is_zero(Rc[i, j] - Rc[j, i], rtol):
                raise StructureError(
                    f"R is not symmetric{context}: R[{i},{j}] = {_show(R[i, j])} but "
                    f"R[{j},{i}] = {_show(R[j, i])}"
                )
    psd, reason = psd_status(R, context)
    if psd is False:
        raise StructureError(f"R is not positive semidefinite{context}: {reason}")


def psd_status(R: sp.Matrix, context: str) -> tuple[bool | None, str]:
    """Whether R (symmetric) is PSD: (True/False/None, reason).

    Exact entries: all principal minors ≥ 0, decided from the symbols' assumptions.
    Float entries only: the eigenvalues of (R + Rᵀ)/2, each λ ≥ −FLOAT_RTOL·k·max|λ|
    counting as ≥ 0 (round-off). Floats among symbols: read as decimals, then exact.
    Non-finite entries: False, "R[i,j] = inf is not finite".
    """
    k = R.shape[0]
    for i, j in itertools.product(range(k), range(k)):
        if sp.sympify(R[i, j]).has(*_NON_FINITE):
            return False, f"R[{i},{j}] = {R[i, j]} is not finite"
    R, tol, decimal = _prepare(R)
    if tol is not None:
        A = np.array(R.tolist(), dtype=float)
        lam = np.linalg.eigvalsh((A + A.T) / 2)
        bound = FLOAT_RTOL * k * float(np.abs(lam).max(initial=0.0))
        for i in range(k):
            if A[i, i] < -bound:
                return False, f"R[{i},{i}] = {A[i, i]:g} < 0"
        if lam.min(initial=0.0) < -bound:
            return False, (
                f"R has the eigenvalue {lam.min():.6g} < 0 (float entries: eigenvalues "
                f"λ ≥ −{FLOAT_RTOL:g}·k·max|λ| = {-bound:.3g} count as ≥ 0)"
            )
        return True, (
            f"the eigenvalues of R are ≥ −{FLOAT_RTOL:g}·k·max|λ| (float entries, a "
            f"tolerance for round-off; the smallest is {lam.min(initial=0.0):.3g})"
        )
    undecided = []
    for size in range(1, k + 1):
        for rows in itertools.combinations(range(k), size):
            sub = R.extract(list(rows), list(rows))
            minor = sp.simplify(sub[0, 0] if size == 1 else sub.det())
            label = f"R[{rows[0]},{rows[0]}]" if size == 1 else f"det R[{list(rows)}, {list(rows)}]"
            shown = f"{float(minor):g}" if minor.is_Number else str(minor)
            if minor.is_negative or minor.is_nonnegative is False:
                return False, f"{label} = {shown} < 0"
            if minor.is_nonnegative is None:
                undecided.append(f"{label} = {shown}")
    note = " (float entries read as decimals)" if decimal else ""
    if undecided:
        return None, (
            "the sign of " + "; ".join(undecided) + " could not be decided from the "
            "symbols' assumptions" + note
        )
    return True, "all principal minors of R are nonnegative" + note


def kinetic_terms(H: sp.Expr, loss: Loss | None) -> list[tuple[str, sp.Expr]]:
    """Terms κ·|x|² through which H is unbounded below when κ < 0: [(label, κ)].

    A block x (not the loss's) qualifies when H is linear in one reduction whose summand
    has the part a·x² (a of parameters only), with a coefficient c of parameters only,
    and x occurs nowhere else in H; then H → −∞ along x → ∞ if κ = c·a < 0.
    A κ < 0 from the symbols' assumptions is refused here; the others are returned.
    """
    reds = [s for s in H.free_symbols if isinstance(s, Reduction)]
    theta = loss.block if loss is not None else None
    plain = (Block, Gradient, Loss, Reduction, Time)
    out: list[tuple[str, sp.Expr]] = []
    for S in reds:
        if sp.diff(H, S, 2) != 0:
            continue
        c = sp.diff(H, S)
        if any(isinstance(s, plain) for s in c.free_symbols):
            continue
        terms = sp.Add.make_args(sp.expand(S.summand))
        for x in {a for a in S.summand.free_symbols if isinstance(a, Block)} - {theta}:
            part = [tm for tm in terms if tm.has(x)]
            if any(
                any(isinstance(a, (Block, Gradient)) and a != x for a in tm.free_symbols)
                for tm in part
            ) or any(o != S and o.summand.has(x) for o in reds):
                continue
            a = sp.simplify(sp.Add(*part) / x**2)
            if any(isinstance(s, plain) for s in a.free_symbols):
                continue
            kappa = sp.simplify(c * a)
            label = f"|{x.name}|^2"
            if kappa.is_negative:
                raise StructureError(
                    f"H = {H} is unbounded below: the coefficient of {label} is {kappa} "
                    "< 0 for every value its symbols' assumptions allow (H → −∞ as "
                    f"|{x.name}| → ∞, so a decreasing H would prove nothing)"
                )
            if not kappa.is_nonnegative:
                out.append((label, kappa))
    return out


def check_kinetic_values(
    kinetic: Sequence[tuple[str, sp.Expr]],
    parameters: Sequence[Parameter],
    values: Mapping[str, Any],
    error: type[Exception],
) -> None:
    """Refuse parameter values (scalars or per-row arrays, by keyword) that make a
    kinetic coefficient κ of ``kinetic`` (see :func:`kinetic_terms`) negative or not finite
    (H unbounded below); raises ``error`` naming the values."""
    by_symbol = {p.symbol: p for p in parameters}
    for label, kappa in kinetic:
        syms = sorted(kappa.free_symbols, key=lambda s: s.name)
        if any(s not in by_symbol or values.get(by_symbol[s].name) is None for s in syms):
            continue
        vals = []
        for s in syms:
            v = values[by_symbol[s].name]
            vals.append(np.asarray(arrays_of(v).to_numpy(v), dtype=float))
        with np.errstate(all="ignore"):
            got = np.asarray(sp.lambdify(syms, kappa, "numpy")(*vals), dtype=float)
        bad = ~np.isfinite(got) | (got < 0)
        if bad.any():
            shown = ", ".join(f"{by_symbol[s].name} = {values[by_symbol[s].name]}" for s in syms)
            worst = float(got[bad].flat[0]) if got.ndim else float(got)
            why = "is not finite" if not np.isfinite(worst) else "< 0"
            raise error(
                f"H is unbounded below with {shown}: the coefficient of {label} in H is "
                f"{kappa} = {worst:g} {why} (a kinetic term needs a coefficient ≥ 0; H → −∞ "
                f"as |{label[1:-3]}| → ∞, so a decreasing H would prove nothing)"
            )
