"""Partitioned schemes: the position blocks Q (θ, on which the loss depends) and the momentum
blocks P (every other block) are stepped one after the other.

Written for ẋ = f(x): the updates stay explicit even when f_P depends on P (friction), which is
the "semi-implicit" Euler that momentum optimizers are made of.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from .base import Field, Scheme, State, Step

__all__ = ["Leapfrog", "NesterovEuler", "SymplecticEuler"]


class SymplecticEuler(Scheme):
    """Symplectic (semi-implicit) Euler. Order 1.

    ``momentum_first=True`` (``"symplectic_euler"``):
        P_{k+1} = P_k + h f_P(Q_k, P_k, t_k),   Q_{k+1} = Q_k + h f_Q(Q_k, P_{k+1}, t_k);
    ``momentum_first=False`` (``"symplectic_euler_q"``):
        Q_{k+1} = Q_k + h f_Q(Q_k, P_k, t_k),   P_{k+1} = P_k + h f_P(Q_{k+1}, P_k, t_k).

    Heavy ball with the first ordering is exactly torch's SGD with momentum
    (ALGORITHMS.md §1). With no momentum blocks both orderings are explicit Euler.
    """

    partitioned = True

    def __init__(self, momentum_first: bool = True) -> None:
        self.momentum_first = momentum_first
        self.name = "symplectic_euler" if momentum_first else "symplectic_euler_q"  # type: ignore[misc]

    def step(self, f: Field, x: State, t: Any, h: Any) -> Step:
        first, second = (
            (f.momentum, f.position)
            if self.momentum_first
            else (
                f.position,
                f.momentum,
            )
        )
        if first:
            x = f.advance(x, t, h, first)
        if second:
            x = f.advance(x, t, h, second)
        return Step(x)

    def __repr__(self) -> str:
        return f"SymplecticEuler(momentum_first={self.momentum_first})"


class Leapfrog(Scheme):
    """Störmer–Verlet in kick–drift–kick form:

        P_{k+½} = P_k + ½h f_P(Q_k, P_k, t_k),
        Q_{k+1} = Q_k + h f_Q(Q_k, P_{k+½}, t_k + ½h),
        P_{k+1} = P_{k+½} + ½h f_P(Q_{k+1}, P_{k+½}, t_k + h).

    Order 2, symmetric and symplectic when H is separable and conservative (f_Q independent
    of Q, f_P independent of P). The last half kick is evaluated at P_{k+½} so that the scheme
    stays explicit; with friction (f_P depending on P) this lowers the order to 1.
    The gradient at Q_{k+1} is reused by the next step's first kick.
    """

    name = "leapfrog"
    order = 2
    partitioned = True

    def step(self, f: Field, x: State, t: Any, h: Any) -> Step:
        half = f.constant(sp.Rational(1, 2))
        if not f.momentum:  # no momentum: the drift alone is explicit Euler
            return Step(f.advance(x, t, h, f.position))
        x = f.advance(x, t, half * h, f.momentum)
        x = f.advance(x, t + half * h, h, f.position)
        x = f.advance(x, t + h, half * h, f.momentum)
        return Step(x)


class NesterovEuler(Scheme):
    """Symplectic Euler (momentum first) whose drift looks one kick ahead:

        P_{k+1} = P_k + h f_P(Q_k, P_k, t_k),
        P̂      = P_{k+1} + h f_P(Q_k, P_{k+1}, t_k + h),
        Q_{k+1} = Q_k + h f_Q(Q_k, P̂, t_k).

    P̂ predicts the next momentum with the gradient already at hand (one evaluation per step,
    like symplectic Euler). Order 1. On heavy ball (θ' = p/m, p' = −g − (γ/m)p) this is
    exactly torch's ``SGD(lr=h²/m, momentum=1 − γh/m, nesterov=True)`` with buffer −p/h:
    θ_{k+1} = θ_k + (h/m)((1 − γh/m)p_{k+1} − h g_k) = θ_k − lr·(g_k + μ b_{k+1}).
    """

    name = "symplectic_euler_nesterov"
    partitioned = True

    def step(self, f: Field, x: State, t: Any, h: Any) -> Step:
        if not f.momentum:
            return Step(f.advance(x, t, h, f.position))
        x = f.advance(x, t, h, f.momentum)
        ahead = f.advance(x, t + h, h, f.momentum)
        drift = f.advance(ahead, t, h, f.position)
        return Step({**x, **{b: drift[b] for b in f.position}})
