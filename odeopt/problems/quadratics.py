"""Quadratic objectives, whose single critical point solves a linear system.

* :func:`quadratic`: F(θ) = ½θᵀAθ − bᵀθ, ∇F = Aθ − b, ∇²F = A (``hvp`` is Av, exactly).
* :func:`least_squares`: F(θ) = |Wθ − y|², ∇F = 2Wᵀ(Wθ − y), ∇²F = 2WᵀW (no ½: the
  10-dimensional task of "Learning to learn by gradient descent by gradient descent").

Both are ½θᵀAθ − bᵀθ + c; the critical point is θ* = A⁻¹b with F(θ*) = c − ½bᵀθ*, exact when
every entry is a short decimal (see :func:`~odeopt.problems.exact.exact_number`) and d ≤ 30,
otherwise in floating point. A singular A has no critical point or a whole affine subspace of
them, and ``critical_points()`` raises.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from .backend import Namespace
from .base import CriticalPoint, CriticalPointsUnavailable, Minimum, Problem
from .exact import ZERO_EIGENVALUE, classify, coordinates, exact_number

__all__ = [
    "LeastSquares",
    "Quadratic",
    "least_squares",
    "quadratic",
    "random_least_squares",
]

#: Largest dimension solved in exact rational arithmetic.
MAX_EXACT_DIM = 30


def _finite_matrix(name: str, label: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    array = np.array(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name}: {label} must have shape {shape}; got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: {label} has non-finite entries")
    return array


class _AffineCritical(Problem):
    """Shared exact facts of F = ½θᵀAθ − bᵀθ + c (subclasses give A, b, c)."""

    def _quadratic_form(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(A, b, c) in float64."""
        raise NotImplementedError

    def derivative(self, theta: Any, *vectors: Any) -> Any:
        """∇²F·v = Av exactly (A from :meth:`_quadratic_form`); higher derivatives vanish."""
        xp, theta = self._prepare(theta)
        if not vectors:
            raise TypeError(f"{self.name}: derivative(theta, v, ...) needs at least one vector")
        from .base import _like

        vs = [_like(v, theta) for v in vectors]
        for j, v in enumerate(vs):
            if tuple(v.shape) != tuple(theta.shape):
                raise ValueError(
                    f"{self.name}: vector {j + 1} must have theta's shape {tuple(theta.shape)}; "
                    f"got shape {tuple(v.shape)}"
                )
        if len(vs) > 1:
            return vs[0] * 0.0
        return self._hessian_times(xp, vs[0])

    def _hessian_times(self, xp: Namespace, v: Any) -> Any:
        """A·v per row (A symmetric: the rows of v A)."""
        A = self._quadratic_form()[0]
        return v @ xp.constant(A, v)

    def _critical_points(self) -> list[CriticalPoint]:
        A, b, c = self._quadratic_form()
        eig = tuple(float(v) for v in np.linalg.eigvalsh(A))
        exact = [exact_number(v) for v in (*A.ravel(), *b, c)]
        singular_message = (
            f"{self.name}: the Hessian is singular, so ∇F = 0 has no solution or a whole "
            "affine subspace of solutions; there are no isolated critical points to list"
        )
        if self.dim <= MAX_EXACT_DIM and all(v.is_Rational for v in exact):
            n = self.dim
            A_exact = sp.Matrix(n, n, exact[: n * n])
            b_exact = sp.Matrix(exact[n * n : n * n + n])
            if A_exact.rank() < n:
                raise CriticalPointsUnavailable(singular_message)
            point = A_exact.LUsolve(b_exact)
            value = exact[-1] - (b_exact.T * point)[0, 0] / 2
            kind, degenerate = classify(eig)
            return [CriticalPoint(tuple(point), value, kind, eig, degenerate)]
        if min(abs(v) for v in eig) <= ZERO_EIGENVALUE * max(1.0, max(abs(v) for v in eig)):
            raise CriticalPointsUnavailable(singular_message)
        point_np = np.linalg.solve(A, b)
        value_np = float(self.value(point_np[None, :])[0])  # F itself: no cancellation in c − ½bᵀθ*
        kind, degenerate = classify(eig)
        point = tuple(sp.Float(float(v), 17) for v in point_np)
        return [CriticalPoint(point, sp.Float(value_np, 17), kind, eig, degenerate)]

    def _find_minima(self) -> list[Minimum]:
        """The critical point when A is positive definite; otherwise F is unbounded below or
        its minima form a subspace, and the list is empty."""
        try:
            points = self.critical_points()
        except CriticalPointsUnavailable:
            return []
        return [
            Minimum(tuple(float(v) for v in p.numeric), p.numeric_value)
            for p in points
            if p.kind == "minimum"
        ]


class Quadratic(_AffineCritical):
    """F(θ) = ½θᵀAθ − bᵀθ (A symmetric), ∇F = Aθ − b; A = I and b = 0 when not given."""

    def __init__(self, dim: int, A: Any = None, b: Any = None) -> None:
        super().__init__("quadratic", dim, (-5.0, 5.0))
        n = self.dim
        self.A = None if A is None else _finite_matrix(self.name, "A", A, (n, n))
        self.b = None if b is None else _finite_matrix(self.name, "b", b, (n,))
        if self.A is not None:
            asym = float(np.max(np.abs(self.A - self.A.T)))
            if asym > 1e-12 * max(1.0, float(np.max(np.abs(self.A)))):
                raise ValueError(f"quadratic: A must be symmetric; max |A − Aᵀ| = {asym:.3g}")
            self.A = 0.5 * (self.A + self.A.T)  # exactly symmetric

    def _evaluate(self, xp: Namespace, theta: Any, need_grad: bool) -> tuple[Any, Any]:
        # A is symmetric, so the rows of θ Aᵀ = θ A are the Aθ of each batch row.
        A_theta = theta if self.A is None else theta @ xp.constant(self.A, theta)
        if self.b is None:
            return 0.5 * xp.sum(theta * A_theta), (A_theta if need_grad else None)
        b = xp.constant(self.b, theta)
        F = xp.sum(theta * (0.5 * A_theta - b))
        return F, (A_theta - b if need_grad else None)

    def _hessian_times(self, xp: Namespace, v: Any) -> Any:
        return v if self.A is None else v @ xp.constant(self.A, v)

    def _quadratic_form(self) -> tuple[np.ndarray, np.ndarray, float]:
        n = self.dim
        A = np.eye(n) if self.A is None else self.A
        b = np.zeros(n) if self.b is None else self.b
        return A, b, 0.0

    def sympy(self) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
        xs = coordinates(self.dim)
        x = sp.Matrix(xs)
        if self.A is None:
            F = sp.Add(*(v**2 for v in xs)) / 2
        else:
            A = sp.Matrix(self.dim, self.dim, [exact_number(v) for v in self.A.ravel()])
            F = (x.T * A * x)[0, 0] / 2
        if self.b is not None:
            F -= sp.Add(*(exact_number(bi) * v for bi, v in zip(self.b, xs, strict=True)))
        return sp.expand(F), xs


class LeastSquares(_AffineCritical):
    """F(θ) = |Wθ − y|² = Σₖ ((Wθ)ₖ − yₖ)², ∇F = 2Wᵀ(Wθ − y); W is (m, d), y is (m,)."""

    def __init__(self, W: Any, y: Any) -> None:
        W = np.array(W, dtype=np.float64)
        if W.ndim != 2:
            raise ValueError(f"least_squares: W must have shape (m, d); got shape {W.shape}")
        super().__init__("least_squares", W.shape[1], (-5.0, 5.0))
        self.W = _finite_matrix(self.name, "W", W, W.shape)
        self.y = _finite_matrix(self.name, "y", y, (W.shape[0],))

    def _evaluate(self, xp: Namespace, theta: Any, need_grad: bool) -> tuple[Any, Any]:
        W = xp.constant(self.W, theta)
        residual = theta @ W.T - xp.constant(self.y, theta)
        F = xp.sum(residual * residual)
        return F, (2.0 * (residual @ W) if need_grad else None)

    def _hessian_times(self, xp: Namespace, v: Any) -> Any:
        W = xp.constant(self.W, v)
        return 2.0 * ((v @ W.T) @ W)

    def residuals(self, theta: Any) -> Any:
        """r(θ) = Wθ − y per row, shape (batch, m); F = |r|²."""
        return np.asarray(theta) @ self.W.T - self.y

    def _quadratic_form(self) -> tuple[np.ndarray, np.ndarray, float]:
        W, y = self.W, self.y
        return 2.0 * (W.T @ W), 2.0 * (W.T @ y), float(y @ y)

    def sympy(self) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
        xs = coordinates(self.dim)
        terms = []
        for row, yk in zip(self.W, self.y, strict=True):
            linear = sp.Add(*(exact_number(w) * v for w, v in zip(row, xs, strict=True)))
            terms.append((linear - exact_number(yk)) ** 2)
        return sp.Add(*terms), xs


def quadratic(dim: int, A: Any = None, b: Any = None) -> Quadratic:
    """F(θ) = ½θᵀAθ − bᵀθ with A symmetric (default ½|θ|²); critical point Aθ = b."""
    return Quadratic(dim, A, b)


def least_squares(W: Any, y: Any) -> LeastSquares:
    """F(θ) = |Wθ − y|²; ``least_squares.random(dim, seed)`` draws W, y i.i.d. N(0, 1)."""
    return LeastSquares(W, y)


def random_least_squares(dim: int = 10, seed: int = 0) -> LeastSquares:
    """F(θ) = |Wθ − y|² with W (dim × dim) and y (dim) i.i.d. standard normal, from numpy's
    default generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((dim, dim))
    y = rng.standard_normal(dim)
    return LeastSquares(W, y)


least_squares.random = random_least_squares  # type: ignore[attr-defined]
