"""One-neuron networks with polynomial activations (Bensaid's polyTwo … polyFive).

The network has parameters θ = (w, b), sees the data x ∈ {0, 1} with targets y = 0 and
predicts σ(w·x + b); its squared loss averaged over the two data points (with a ½) is

    R(w, b) = ¼[σ(b)² + σ(w + b)²].

Write h = ¼σ² and s = w + b, so R = h(b) + h(s) with h' = ½σσ' and h'' = ½(σ'² + σσ''):

    ∂R/∂w = ½σ(s)σ'(s),   ∂R/∂b = ½[σ(b)σ'(b) + σ(s)σ'(s)],
    ∇²R = [[h''(s), h''(s)], [h''(s), h''(b) + h''(s)]].

Hence (w, b) is critical exactly when σσ' vanishes at both b and s: with z₁, z₂ real roots of
the polynomial σσ', the critical points are b = z₁, w = z₂ − z₁, and det ∇²R = h''(z₁)h''(z₂)
is zero exactly when z₁ or z₂ is a multiple root of σσ' (there (σσ')' = 2h'' vanishes too).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import sympy as sp

from .backend import Namespace
from .base import CriticalPoint, Minimum, Problem, lowest_critical_points
from .exact import at_root, classify, eigenvalues, exact_number, real_roots

__all__ = [
    "OneNeuron",
    "one_neuron",
    "poly_five",
    "poly_four",
    "poly_three",
    "poly_two",
]


class OneNeuron(Problem):
    """R(w, b) = ¼[σ(b)² + σ(w + b)²] for a polynomial activation σ(z); θ = (w, b).

    ``minima`` are the critical points of least value: R = h(b) + h(w + b) with b and w + b
    free, and h = ¼σ² ≥ 0 attains its minimum at a root of σσ', so the least critical value
    is the global minimum of R.
    """

    def __init__(
        self,
        sigma: sp.Expr,
        z: sp.Symbol,
        name: str = "one_neuron",
        domain: tuple[float, float] = (-3.0, 3.0),
    ) -> None:
        sigma = sp.sympify(sigma)
        if not isinstance(z, sp.Symbol):
            raise TypeError(f"{name}: z must be a sympy Symbol; got {z!r}")
        if not sigma.is_polynomial(z) or sigma.free_symbols - {z}:
            raise ValueError(
                f"{name}: σ must be a polynomial in {z} with numeric coefficients; got {sigma}"
            )
        coefficients = [
            exact_number(float(c)) if c.is_Float else c for c in sp.Poly(sigma, z).all_coeffs()
        ]
        if len(coefficients) < 2 or not all(c.is_real for c in coefficients):
            raise ValueError(f"{name}: σ must be a real polynomial of degree ≥ 1; got {sigma}")
        super().__init__(name, 2, domain)
        self.z = z
        self.sigma = sp.Poly(coefficients, z).as_expr()
        self.coefficients = [float(c) for c in coefficients]  # highest degree first

    def _activation(self, z: Any) -> tuple[Any, Any]:
        """(σ(z), σ'(z)) by Horner's rule: p ← p·z + cₖ, p' ← p'·z + p."""
        p: Any = self.coefficients[0]
        dp: Any = 0.0
        for c in self.coefficients[1:]:
            dp = dp * z + p
            p = p * z + c
        return p, dp

    def residuals(self, theta: Any) -> Any:
        """r(θ) = ½(σ(b), σ(w + b)) per row, shape (batch, 2); R = |r|²."""
        theta = np.asarray(theta, dtype=float)
        w, b = theta[:, 0], theta[:, 1]
        return 0.5 * np.stack([self._activation(b)[0], self._activation(w + b)[0]], -1)

    def _evaluate(self, xp: Namespace, theta: Any, need_grad: bool) -> tuple[Any, Any]:
        w, b = theta[:, 0], theta[:, 1]
        sigma_b, dsigma_b = self._activation(b)
        sigma_s, dsigma_s = self._activation(w + b)
        R = 0.25 * (sigma_b * sigma_b + sigma_s * sigma_s)
        if not need_grad:
            return R, None
        g_w = 0.5 * sigma_s * dsigma_s
        return R, xp.stack([g_w, 0.5 * sigma_b * dsigma_b + g_w])

    def sympy(self) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
        """R(w, b) exactly, in the real symbols (w, b)."""
        w, b = sp.symbols("w b", real=True)
        z = self.z
        return (self.sigma.subs(z, b) ** 2 + self.sigma.subs(z, w + b) ** 2) / 4, (w, b)

    def _critical_points(self) -> list[CriticalPoint]:
        z, sigma = self.z, self.sigma
        dsigma = sp.diff(sigma, z)
        h2 = (dsigma**2 + sigma * sp.diff(dsigma, z)) / 2  # h''
        roots = real_roots(sigma * dsigma, z)
        squares = {r: at_root(sigma**2, z, r) for r in roots}  # σ(r)², exact
        curvature = {r: at_root(h2, z, r) for r in roots}  # h''(r), exactly 0 or not
        points = []
        for z_b, z_s in itertools.product(roots, repeat=2):
            k_b, k_s = curvature[z_b], curvature[z_s]
            hessian = sp.Matrix([[k_s, k_s], [k_s, k_b + k_s]])
            eig = eigenvalues(hessian)
            kind, degenerate = classify(eig, singular=(k_b == 0 or k_s == 0))
            value = sp.expand((squares[z_b] + squares[z_s]) / 4)
            point = (sp.expand(z_s - z_b), z_b)
            points.append(CriticalPoint(point, value, kind, eig, degenerate))
        return points

    def _find_minima(self) -> list[Minimum]:
        return lowest_critical_points(self)


_Z = sp.Symbol("z", real=True)


def one_neuron(
    sigma_expr: sp.Expr,
    z: sp.Symbol,
    name: str = "one_neuron",
    domain: tuple[float, float] = (-3.0, 3.0),
) -> OneNeuron:
    """The one-neuron network loss R(w, b) = ¼[σ(b)² + σ(w + b)²] for the activation
    σ = ``sigma_expr``, a polynomial in the symbol ``z``."""
    return OneNeuron(sigma_expr, z, name, domain)


def poly_two() -> OneNeuron:
    """polyTwo: σ(z) = z² − 1."""
    return OneNeuron(_Z**2 - 1, _Z, "poly_two")


def poly_three() -> OneNeuron:
    """polyThree: σ(z) = 2z³ − 3z² + 5."""
    return OneNeuron(2 * _Z**3 - 3 * _Z**2 + 5, _Z, "poly_three")


def poly_four() -> OneNeuron:
    """polyFour: σ(z) = z⁴ − 2z² + 3."""
    return OneNeuron(_Z**4 - 2 * _Z**2 + 3, _Z, "poly_four")


def poly_five() -> OneNeuron:
    """polyFive: σ(z) = z⁵ − 4z⁴ + 2z³ + 8z² − 11z − 12 = (z + 1)²(z − 3)(z² − 3z + 4)."""
    return OneNeuron(_Z**5 - 4 * _Z**4 + 2 * _Z**3 + 8 * _Z**2 - 11 * _Z - 12, _Z, "poly_five")
