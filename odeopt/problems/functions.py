"""Classic test functions with known minima: Rosenbrock, Himmelblau, Beale, Zakharov (polynomial,
critical points computed exactly), Ackley and Rastrigin (transcendental, minima only).

Each F and its gradient are written once, for numpy and torch alike (see
:mod:`odeopt.problems.backend`); ``sympy()`` gives the same F exactly in x₁, …, x_d.
"""

from __future__ import annotations

import math
from typing import Any

import sympy as sp

from .backend import Namespace
from .base import (
    CriticalPoint,
    CriticalPointsUnavailable,
    Minimum,
    Problem,
    lowest_critical_points,
)
from .exact import coordinates, exact_number, polynomial_critical_points

__all__ = [
    "Ackley",
    "Beale",
    "Himmelblau",
    "PolynomialProblem",
    "Rastrigin",
    "Rosenbrock",
    "Zakharov",
    "ackley",
    "beale",
    "himmelblau",
    "rastrigin",
    "rosenbrock",
    "zakharov",
]


class PolynomialProblem(Problem):
    """A problem whose F is a polynomial with rational coefficients; its critical points are
    computed exactly from ``sympy()`` by :func:`~odeopt.problems.exact.polynomial_critical_points`
    (up to ``max_exact_dim`` dimensions)."""

    max_exact_dim = 8

    def _critical_points(self) -> list[CriticalPoint]:
        if self.dim > self.max_exact_dim:
            raise CriticalPointsUnavailable(
                f"{self.name}: exact critical points are computed up to dim "
                f"{self.max_exact_dim} (the Gröbner basis grows quickly); got dim {self.dim}. "
                "See .minima for the known global minimum"
            )
        form = self.sympy()
        assert form is not None
        return polynomial_critical_points(form[0], form[1], self.name)


class Rosenbrock(PolynomialProblem):
    """F(x, y) = (a − x)² + b(y − x²)², b > 0; global minimum F = 0 at (a, a²).

    ∇F = (−2(a − x) − 4bx(y − x²), 2b(y − x²)).
    """

    def __init__(self, a: float = 1.0, b: float = 100.0) -> None:
        if not b > 0:
            raise ValueError(f"rosenbrock: b must be > 0; got {b!r}")
        self.a, self.b = float(a), float(b)
        self._exact = (exact_number(a), exact_number(b))
        super().__init__("rosenbrock", 2, (-2.0, 2.0), [Minimum((self.a, self.a**2), 0.0)])

    def _evaluate(self, xp: Namespace, theta: Any, need_grad: bool) -> tuple[Any, Any]:
        a, b = self.a, self.b
        x, y = theta[:, 0], theta[:, 1]
        dx = a - x
        r = y - x * x
        F = dx * dx + b * r * r
        if not need_grad:
            return F, None
        return F, xp.stack([-2.0 * dx - 4.0 * b * x * r, 2.0 * b * r])

    def sympy(self) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
        a, b = self._exact
        x, y = xs = coordinates(2)
        return (a - x) ** 2 + b * (y - x**2) ** 2, xs


class Himmelblau(PolynomialProblem):
    """F(x, y) = (x² + y − 11)² + (x + y² − 7)².

    With u = x² + y − 11, v = x + y² − 7: ∇F = (4xu + 2v, 2u + 4yv). Nine real critical points:
    four global minima F = 0 (one is (3, 2)), four saddles and one maximum. ``minima`` are the
    critical points of least value (F ≥ 0 and F(3, 2) = 0, so they are the global minima).
    """

    def __init__(self) -> None:
        super().__init__("himmelblau", 2, (-5.0, 5.0))

    def _evaluate(self, xp: Namespace, theta: Any, need_grad: bool) -> tuple[Any, Any]:
        x, y = theta[:, 0], theta[:, 1]
        u = x * x + y - 11.0
        v = x + y * y - 7.0
        F = u * u + v * v
        if not need_grad:
            return F, None
        return F, xp.stack([4.0 * x * u + 2.0 * v, 2.0 * u + 4.0 * y * v])

    def sympy(self) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
        x, y = xs = coordinates(2)
        return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2, xs

    def _find_minima(self) -> list[Minimum]:
        return lowest_critical_points(self)


class Beale(PolynomialProblem):
    """F(x, y) = Σᵢ₌₁³ uᵢ², uᵢ = cᵢ − x + xyⁱ, (c₁, c₂, c₃) = (1.5, 2.25, 2.625).

    ∇F = (2 Σ uᵢ(yⁱ − 1), 2x Σ i·uᵢ·yⁱ⁻¹). Global minimum F = 0 at (3, ½); ``minima`` are the
    critical points of least value (F ≥ 0 and it vanishes there).
    """

    def __init__(self) -> None:
        super().__init__("beale", 2, (-4.5, 4.5))

    def _evaluate(self, xp: Namespace, theta: Any, need_grad: bool) -> tuple[Any, Any]:
        x, y = theta[:, 0], theta[:, 1]
        y2 = y * y
        y3 = y2 * y
        u1 = 1.5 - x + x * y
        u2 = 2.25 - x + x * y2
        u3 = 2.625 - x + x * y3
        F = u1 * u1 + u2 * u2 + u3 * u3
        if not need_grad:
            return F, None
        gx = 2.0 * (u1 * (y - 1.0) + u2 * (y2 - 1.0) + u3 * (y3 - 1.0))
        gy = 2.0 * x * (u1 + 2.0 * u2 * y + 3.0 * u3 * y2)
        return F, xp.stack([gx, gy])

    def sympy(self) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
        x, y = xs = coordinates(2)
        c = (sp.Rational(3, 2), sp.Rational(9, 4), sp.Rational(21, 8))
        return sp.Add(*((c[i - 1] - x + x * y**i) ** 2 for i in (1, 2, 3))), xs

    def _find_minima(self) -> list[Minimum]:
        return lowest_critical_points(self)


class Zakharov(PolynomialProblem):
    """F(θ) = Σθᵢ² + S² + S⁴ with S = Σᵢ wᵢθᵢ, wᵢ = i/2 (i = 1, …, d).

    ∇F = 2θ + (2S + 4S³) w. F is strictly convex: the global minimum is F = 0 at θ = 0.
    """

    def __init__(self, dim: int) -> None:
        super().__init__("zakharov", dim, (-5.0, 10.0), [Minimum((0.0,) * int(dim), 0.0)])
        self.weights = [0.5 * i for i in range(1, self.dim + 1)]

    def _evaluate(self, xp: Namespace, theta: Any, need_grad: bool) -> tuple[Any, Any]:
        w = xp.constant(self.weights, theta)
        S = xp.sum(theta * w)
        S2 = S * S
        F = xp.sum(theta * theta) + S2 + S2 * S2
        if not need_grad:
            return F, None
        return F, 2.0 * theta + ((2.0 + 4.0 * S2) * S)[:, None] * w

    def sympy(self) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
        xs = coordinates(self.dim)
        S = sp.Add(*(sp.Rational(i, 2) * x for i, x in enumerate(xs, start=1)))
        return sp.Add(*(x**2 for x in xs)) + S**2 + S**4, xs


class Ackley(Problem):
    """F(θ) = −a·exp(−b·r) − exp(mean cos(cθ)) + a + e, r = sqrt(mean θ²) = |θ|/√d.

    Global minimum F = 0 at θ = 0. The usual parameters are a = 20, b = 0.2, c = 2π; the Energy
    Conserving Descent papers use b = 0.02 (a shallower funnel), set through ``b``.

    ∇F = a·b·exp(−b·r)·θ/(d·r) + (c/d)·exp(mean cos(cθ))·sin(cθ). The first term is bounded
    (|θ|/r = √d) but has a kink at θ = 0 where r is not differentiable; it is defined as 0 there,
    so ∇F(0) = 0 and no NaN appears. Critical points are infinitely many (the cosine ripples
    repeat forever while the funnel flattens), so ``critical_points()`` raises.
    """

    def __init__(self, dim: int = 2, a: float = 20.0, b: float = 0.2, c: float = 2 * math.pi):
        self.a, self.b, self.c = float(a), float(b), float(c)
        self._exact = tuple(exact_number(v) for v in (a, b, c))
        super().__init__("ackley", dim, (-32.768, 32.768), [Minimum((0.0,) * int(dim), 0.0)])

    def _evaluate(self, xp: Namespace, theta: Any, need_grad: bool) -> tuple[Any, Any]:
        a, b, c, d = self.a, self.b, self.c, self.dim
        r = xp.sqrt(xp.mean(theta * theta))
        funnel = xp.exp(-b * r)
        ripple = xp.exp(xp.mean(xp.cos(c * theta)))
        F = -a * funnel - ripple + (a + math.e)
        if not need_grad:
            return F, None
        positive = r > 0
        # the kink at θ = 0: divide by r only where r > 0 and put 0 where r = 0
        radial = xp.where(positive, (a * b / d) * funnel / xp.where(positive, r, 1.0), 0.0)
        g = radial[:, None] * theta + ((c / d) * ripple)[:, None] * xp.sin(c * theta)
        return F, g

    def sympy(self) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
        a, b, c = self._exact
        xs = coordinates(self.dim)
        d = len(xs)
        r = sp.sqrt(sp.Add(*(x**2 for x in xs)) / d)
        ripple = sp.exp(sp.Add(*(sp.cos(c * x) for x in xs)) / d)
        return -a * sp.exp(-b * r) - ripple + a + sp.E, xs

    def _critical_points(self) -> list[CriticalPoint]:
        raise CriticalPointsUnavailable(
            "ackley has infinitely many critical points (near every point of the cosine "
            "lattice the ripple term creates a minimum or saddle, and the funnel term cannot "
            "remove them far out); the global minimum F = 0 at θ = 0 is in .minima"
        )


class Rastrigin(Problem):
    """F(θ) = A·d + Σᵢ (θᵢ² − A·cos(2πθᵢ)), ∇F = 2θ + 2πA·sin(2πθ).

    Global minimum F = 0 at θ = 0. The critical points form a product set: each coordinate
    solves θ = −πA·sin(2πθ) on its own (|θ| ≤ πA, about 4πA solutions), so there are roughly
    (4πA)^d of them and ``critical_points()`` raises.
    """

    def __init__(self, dim: int, A: float = 10.0) -> None:
        self.A = float(A)
        self._exact_A = exact_number(A)
        super().__init__("rastrigin", dim, (-5.12, 5.12), [Minimum((0.0,) * int(dim), 0.0)])

    def _evaluate(self, xp: Namespace, theta: Any, need_grad: bool) -> tuple[Any, Any]:
        A = self.A
        angle = (2.0 * math.pi) * theta
        F = A * self.dim + xp.sum(theta * theta - A * xp.cos(angle))
        if not need_grad:
            return F, None
        return F, 2.0 * theta + (2.0 * math.pi * A) * xp.sin(angle)

    def sympy(self) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
        A = self._exact_A
        xs = coordinates(self.dim)
        return A * len(xs) + sp.Add(*(x**2 - A * sp.cos(2 * sp.pi * x) for x in xs)), xs

    def _critical_points(self) -> list[CriticalPoint]:
        raise CriticalPointsUnavailable(
            f"rastrigin has exponentially many critical points (each coordinate solves "
            f"θ = −πA·sin(2πθ) independently, about 4πA ≈ {4 * math.pi * self.A:.0f} "
            f"solutions, so roughly that to the power {self.dim}); the global minimum "
            "F = 0 at θ = 0 is in .minima"
        )


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Rosenbrock:
    """Rosenbrock's valley F(x, y) = (a − x)² + b(y − x²)²; minimum 0 at (a, a²)."""
    return Rosenbrock(a, b)


def himmelblau() -> Himmelblau:
    """Himmelblau's F(x, y) = (x² + y − 11)² + (x + y² − 7)²; four minima F = 0."""
    return Himmelblau()


def beale() -> Beale:
    """Beale's F(x, y) = (1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²; min (3, ½)."""
    return Beale()


def zakharov(dim: int) -> Zakharov:
    """Zakharov's F = Σθᵢ² + (Σ ½iθᵢ)² + (Σ ½iθᵢ)⁴; minimum 0 at 0."""
    return Zakharov(dim)


def ackley(dim: int = 2, a: float = 20.0, b: float = 0.2, c: float = 2 * math.pi) -> Ackley:
    """Ackley's F = −a·exp(−b·sqrt(mean θ²)) − exp(mean cos(cθ)) + a + e; minimum 0 at 0.

    Energy Conserving Descent uses b = 0.02: ``ackley(dim, b=0.02)``.
    """
    return Ackley(dim, a, b, c)


def rastrigin(dim: int, A: float = 10.0) -> Rastrigin:
    """Rastrigin's F = A·d + Σ(θᵢ² − A·cos 2πθᵢ); minimum 0 at 0."""
    return Rastrigin(dim, A)
