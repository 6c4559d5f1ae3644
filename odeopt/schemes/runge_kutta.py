"""Explicit Runge–Kutta schemes as data: a Butcher tableau run by one stepper.

    kᵢ = f(x + h Σⱼ aᵢⱼ kⱼ, t + cᵢ h),   x_{k+1} = x + h Σᵢ bᵢ kᵢ,

and, for an embedded pair, the error estimate h Σᵢ (bᵢ − b̂ᵢ) kᵢ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp

from .base import Field, Scheme, State, Step, combine

__all__ = ["ButcherTableau", "RungeKutta", "euler", "heun", "midpoint", "rk4"]


def _rationals(values: Sequence[Any]) -> tuple[sp.Rational, ...]:
    return tuple(sp.Rational(v) for v in values)


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit RK method (a strictly lower triangular)."""

    a: tuple[tuple[sp.Rational, ...], ...]
    b: tuple[sp.Rational, ...]
    c: tuple[sp.Rational, ...]
    b_error: tuple[sp.Rational, ...] | None = None

    def __post_init__(self) -> None:
        s = len(self.b)
        if len(self.c) != s or len(self.a) != s:
            raise ValueError(f"a tableau of {s} stages needs {s} rows of a and {s} values of c")
        for i, row in enumerate(self.a):
            if len(row) != s or any(v != 0 for v in row[i:]):
                raise ValueError(f"row {i} of a must have {s} entries, zero from column {i} on")
            if sp.nsimplify(sum(row)) != self.c[i]:
                raise ValueError(f"row {i} of a must sum to c[{i}] = {self.c[i]}")
        if sum(self.b) != 1:
            raise ValueError(f"the weights b must sum to 1, got {sum(self.b)}")

    @classmethod
    def from_lists(
        cls,
        a: Sequence[Sequence[Any]],
        b: Sequence[Any],
        c: Sequence[Any],
        b_error: Sequence[Any] | None = None,
    ) -> ButcherTableau:
        return cls(
            tuple(_rationals(row) for row in a),
            _rationals(b),
            _rationals(c),
            None if b_error is None else _rationals(b_error),
        )


class RungeKutta(Scheme):
    """An explicit Runge–Kutta scheme given by its tableau; all blocks are stepped together."""

    def __init__(self, name: str, tableau: ButcherTableau, order: int) -> None:
        self.name = name  # type: ignore[misc]
        self.tableau = tableau
        self.order = order
        self.adaptive = tableau.b_error is not None

    def step(self, f: Field, x: State, t: Any, h: Any) -> Step:
        tab = self.tableau
        C = f.constant
        ks: list[State] = []
        for i in range(len(tab.b)):
            xi = combine(x, h, [(C(tab.a[i][j]), ks[j]) for j in range(i)])
            ks.append(f(xi, t + C(tab.c[i]) * h if tab.c[i] != 0 else t))
        x1 = combine(x, h, [(C(bi), k) for bi, k in zip(tab.b, ks, strict=True)])
        error = None
        if tab.b_error is not None:
            diff = [(C(bi - be), k) for bi, be, k in zip(tab.b, tab.b_error, ks, strict=True)]
            zero = {b: 0 * v for b, v in ks[0].items()}
            error = combine(zero, h, diff)
        return Step(x1, error)

    def __repr__(self) -> str:
        return f"RungeKutta({self.name!r}, stages={len(self.tableau.b)}, order={self.order})"


def euler() -> RungeKutta:
    """Explicit Euler: x_{k+1} = x_k + h f(x_k, t_k). Order 1."""
    return RungeKutta("euler", ButcherTableau.from_lists([[0]], [1], [0]), order=1)


def midpoint() -> RungeKutta:
    """Explicit midpoint: x_{k+1} = x_k + h f(x_k + ½h f(x_k, t_k), t_k + ½h). Order 2."""
    half = sp.Rational(1, 2)
    return RungeKutta(
        "midpoint", ButcherTableau.from_lists([[0, 0], [half, 0]], [0, 1], [0, half]), 2
    )


def heun() -> RungeKutta:
    """Heun's method (explicit trapezoid) with Euler embedded: order 2, error estimate of
    order 1: x_{k+1} = x_k + ½h(k₁ + k₂), k₂ = f(x_k + h k₁, t_k + h)."""
    half = sp.Rational(1, 2)
    tab = ButcherTableau.from_lists([[0, 0], [1, 0]], [half, half], [0, 1], b_error=[1, 0])
    scheme = RungeKutta("heun", tab, order=2)
    scheme.error_order = 1
    return scheme


def rk4() -> RungeKutta:
    """The classical fourth-order Runge–Kutta scheme:
    x_{k+1} = x_k + h(k₁ + 2k₂ + 2k₃ + k₄)/6. Order 4."""
    half, sixth, third = sp.Rational(1, 2), sp.Rational(1, 6), sp.Rational(1, 3)
    tab = ButcherTableau.from_lists(
        [[0, 0, 0, 0], [half, 0, 0, 0], [0, half, 0, 0], [0, 0, 1, 0]],
        [sixth, third, third, sixth],
        [0, half, half, 1],
    )
    return RungeKutta("rk4", tab, order=4)
