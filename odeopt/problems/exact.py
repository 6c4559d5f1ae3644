"""The exact side: numbers as sympy numbers, real roots, and the critical points of polynomial
objectives.

Polynomial critical points (:func:`polynomial_critical_points`) solve ∇F = 0 through a
lexicographic Gröbner basis in *shape position*,

    x₁ − p₁(u), …, x_{d} − p_d(u), f(u)       (u = x_d, or a separating form Σ cₖxₖ),

so every real critical point is θ = (p₁(r), …, p_d(r)) for a real root r of f. Real roots are
exact: rationals, quadratic radicals, or ``CRootOf`` (isolated real algebraic numbers). Any
polynomial q evaluated at such a root is reduced modulo the root's minimal polynomial m, so
q(r) = (q mod m)(r) is canonical and q(r) = 0 is decided exactly (m is irreducible).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import sympy as sp

from .base import CriticalPoint, CriticalPointsUnavailable

__all__ = [
    "at_root",
    "classify",
    "coordinates",
    "exact_number",
    "polynomial_critical_points",
    "real_roots",
]

#: Relative size under which a numerically computed Hessian eigenvalue counts as zero.
ZERO_EIGENVALUE = 1e-10


def coordinates(dim: int) -> tuple[sp.Symbol, ...]:
    """The real symbols x1, …, x_dim of the exact forms."""
    return tuple(sp.symbols(f"x1:{dim + 1}", real=True))


def exact_number(value: Any) -> sp.Expr:
    """A Python/numpy number as a sympy number, exact where the float is a short decimal.

    Integers → ``Integer``; floats whose shortest repr has at most 12 significant digits →
    that decimal as a ``Rational`` (0.2 → 1/5); a float that is such a decimal times π → that
    multiple of π (2π → 2·pi); other floats → ``Float`` with 17 digits. sympy input is kept.
    """
    if isinstance(value, sp.Basic):
        return value
    if isinstance(value, Integral | np.integer | bool):
        return sp.Integer(int(value))
    if not isinstance(value, Real | np.floating):
        raise TypeError(f"expected a real number; got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"expected a finite number; got {value!r}")
    short = _short_decimal(value)
    if short is not None:
        return short
    over_pi = _short_decimal(value / np.pi)
    if over_pi is not None:
        return over_pi * sp.pi
    return sp.Float(value, 17)


def _short_decimal(value: float) -> sp.Rational | None:
    text = repr(value)
    digits = text.split("e")[0].lstrip("-").replace(".", "").strip("0")
    return sp.Rational(text) if len(digits) <= 12 else None


def real_roots(poly: sp.Expr, u: sp.Symbol) -> list[sp.Expr]:
    """The distinct real roots of a nonzero polynomial in ``u`` with rational coefficients,
    exact: rationals, radicals for irreducible quadratic factors, ``CRootOf`` otherwise."""
    roots: list[sp.Expr] = []
    for factor, _ in sp.factor_list(sp.Poly(poly, u))[1]:
        if factor.degree() <= 2:
            roots.extend(r for r in sp.roots(factor, multiple=True) if r.is_real)
        else:
            roots.extend(factor.real_roots(radicals=False))
    return sorted(set(roots), key=lambda r: float(sp.N(r, 30)))


def minimal_polynomial(root: sp.Expr, u: sp.Symbol) -> sp.Poly:
    """The minimal polynomial over ℚ of an exact real root, as a polynomial in ``u``."""
    if isinstance(root, sp.CRootOf):
        poly = root.poly
        return sp.Poly(poly.as_expr().subs(poly.gen, u), u)
    return sp.Poly(sp.minimal_polynomial(root, u), u)


def at_root(expr: sp.Expr, u: sp.Symbol, root: sp.Expr) -> sp.Expr:
    """q(r) for a polynomial q in ``u`` with rational coefficients, in canonical form:
    (q mod m)(r) with m the minimal polynomial of r. It is zero exactly when q(r) = 0."""
    q = sp.Poly(sp.expand(expr), u)
    if root.is_Rational:
        return q.eval(root)
    reduced = q.rem(minimal_polynomial(root, u))
    return sp.expand(reduced.as_expr().subs(u, root))


def classify(eigenvalues: Sequence[float], singular: bool = False) -> tuple[str, bool]:
    """Second-order test: (kind, degenerate) from the Hessian's eigenvalues.

    Degenerate when ``singular`` (det ∇²F = 0 decided exactly) or when some |λ| is at most
    ``ZERO_EIGENVALUE`` · max(1, max |λ|); else all λ > 0 → minimum, all λ < 0 → maximum,
    mixed signs → saddle.
    """
    eig = np.asarray(eigenvalues, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(eig)))) if eig.size else 1.0
    if singular or np.any(np.abs(eig) <= ZERO_EIGENVALUE * scale):
        return "degenerate", True
    if np.all(eig > 0):
        return "minimum", False
    if np.all(eig < 0):
        return "maximum", False
    return "saddle", False


def eigenvalues(hessian: sp.Matrix) -> tuple[float, ...]:
    """Eigenvalues of a symmetric matrix of exact numbers, as sorted floats."""
    numeric = np.array(
        [[float(sp.N(hessian[i, j], 30)) for j in range(hessian.cols)] for i in range(hessian.rows)]
    )
    return tuple(float(v) for v in np.linalg.eigvalsh(numeric))


def polynomial_critical_points(
    F: sp.Expr, symbols: Sequence[sp.Symbol], name: str = "F"
) -> list[CriticalPoint]:
    """All real critical points of a polynomial F with rational coefficients, exact.

    Solves ∇F = 0 via a lex Gröbner basis in shape position (see the module docstring);
    classifies each point by the eigenvalues of ∇²F, with det ∇²F = 0 decided exactly.
    Raises :class:`CriticalPointsUnavailable` when the critical set is not finite.
    """
    xs = tuple(symbols)
    gradient = [sp.expand(sp.diff(F, x)) for x in xs]
    u, f, coordinates = _shape_representation(gradient, xs, name)
    if f is None:
        return []
    substitution = dict(zip(xs, coordinates, strict=True))
    value_u = sp.expand(F.subs(substitution))
    hessian_u = sp.hessian(F, xs).subs(substitution).applyfunc(sp.expand)
    det_u: sp.Expr | None = None
    points = []
    for r in real_roots(f, u):
        point = tuple(at_root(p, u, r) for p in coordinates)
        hessian = hessian_u.applyfunc(lambda e, r=r: at_root(e, u, r))
        if r.is_Rational:
            det = hessian.det()
        else:
            if det_u is None:
                det_u = sp.expand(hessian_u.det())
            det = at_root(det_u, u, r)
        eig = eigenvalues(hessian)
        kind, degenerate = classify(eig, singular=(det == 0))
        points.append(CriticalPoint(point, at_root(value_u, u, r), kind, eig, degenerate))
    return points


def _shape_representation(
    polys: list[sp.Expr], xs: tuple[sp.Symbol, ...], name: str
) -> tuple[sp.Symbol, sp.Expr | None, list[sp.Expr]]:
    """(u, f(u), [p₁(u), …, p_d(u)]) with {polys = 0} = {xₖ = pₖ(u), f(u) = 0}.

    f is None when the system has no complex solution at all.
    """
    basis = sp.groebner(polys, *xs, order="lex")
    if list(basis.exprs) == [1]:
        return xs[-1], None, []
    if not basis.is_zero_dimensional:
        raise CriticalPointsUnavailable(
            f"{name}: the critical set ∇F = 0 is not a finite set of points (a curve or "
            "surface of critical points), so it cannot be listed"
        )
    shape = _in_shape_position(list(basis.exprs), xs)
    if shape is not None:
        return xs[-1], shape[0], shape[1]
    # Not in shape position: make the ideal radical (Seidenberg: add the square-free part of
    # each variable's eliminant), then bring it into shape position with a separating linear
    # form u = Σ cₖ xₖ (generic integer weights).
    radical = list(basis.exprs)
    for k, x in enumerate(xs):
        order = xs[:k] + xs[k + 1 :] + (x,)
        eliminant = sp.groebner(basis.exprs, *order, order="lex").exprs[-1]
        radical.append(sp.sqf_part(eliminant))
    radical_basis = list(sp.groebner(radical, *xs, order="lex").exprs)
    shape = _in_shape_position(radical_basis, xs)
    if shape is not None:
        return xs[-1], shape[0], shape[1]
    u = sp.Dummy("u")
    rng = np.random.default_rng(0)
    weights = [tuple(range(1, len(xs) + 1))]
    weights += [tuple(int(v) for v in rng.integers(-9, 10, len(xs))) for _ in range(8)]
    for c in weights:
        form = u - sum(ck * x for ck, x in zip(c, xs, strict=True))
        extended = list(sp.groebner([*radical_basis, form], *xs, u, order="lex").exprs)
        shape = _in_shape_position(extended, (*xs, u))
        if shape is not None:
            return u, shape[0], shape[1][: len(xs)]
    raise CriticalPointsUnavailable(f"{name}: no shape-position basis found for ∇F = 0")


def _in_shape_position(
    basis: list[sp.Expr], xs: tuple[sp.Symbol, ...]
) -> tuple[sp.Expr, list[sp.Expr]] | None:
    """If ``basis`` is [x₁ − p₁(u), …, x_{d−1} − p_{d−1}(u), f(u)] with u = xs[-1] (up to
    constant factors), return (f, [p₁, …, p_{d−1}, u]); otherwise None."""
    u = xs[-1]
    if len(basis) != len(xs) or not basis[-1].free_symbols <= {u}:
        return None
    coordinates = []
    for x, g in zip(xs[:-1], basis[:-1], strict=True):
        poly = sp.Poly(g, x)
        lead = poly.coeff_monomial(x)
        rest = sp.expand(g - lead * x)
        if poly.degree() != 1 or lead.free_symbols or not rest.free_symbols <= {u}:
            return None
        coordinates.append(sp.expand(-rest / lead))
    return basis[-1], [*coordinates, u]
