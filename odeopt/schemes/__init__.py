"""Integration schemes, each written once for sympy, numpy and torch values.

``get(name)`` returns a scheme by its registry name:

=========================  =====  ===============================================
name                       order  what
=========================  =====  ===============================================
euler                      1      explicit Euler
midpoint                   2      explicit midpoint (RK2)
heun                       2      Heun with embedded Euler (adaptive)
rk4                        4      classical Runge–Kutta
symplectic_euler           1      symplectic Euler, momentum first
symplectic_euler_q         1      symplectic Euler, position first
symplectic_euler_nesterov  1      symplectic Euler, look-ahead drift (NAG)
leapfrog                   2      Störmer–Verlet, kick–drift–kick (1 with friction)
euler_richardson           2      Euler–Richardson, adaptive (midpoint variant)
discrete_gradient          2      Gonzalez discrete gradient (energy-consistent)
=========================  =====  ===============================================
"""

from __future__ import annotations

from collections.abc import Callable

from .adaptive import EnergyController, EnergyDecrease, EulerRichardson, StepController
from .base import Field, Projected, Scheme, Step, axpy, combine, for_system
from .discrete_gradient import DiscreteGradient
from .partitioned import Leapfrog, NesterovEuler, SymplecticEuler
from .program import Evaluation, Program, SymbolicField, run_symbolic
from .runge_kutta import ButcherTableau, RungeKutta, euler, heun, midpoint, rk4

__all__ = [
    "REGISTRY",
    "ButcherTableau",
    "DiscreteGradient",
    "EnergyController",
    "EnergyDecrease",
    "EulerRichardson",
    "Evaluation",
    "Field",
    "Leapfrog",
    "NesterovEuler",
    "Program",
    "Projected",
    "RungeKutta",
    "Scheme",
    "Step",
    "StepController",
    "SymbolicField",
    "SymplecticEuler",
    "axpy",
    "combine",
    "for_system",
    "get",
    "names",
    "run_symbolic",
]

REGISTRY: dict[str, Callable[[], Scheme]] = {
    "euler": euler,
    "midpoint": midpoint,
    "heun": heun,
    "rk4": rk4,
    "symplectic_euler": lambda: SymplecticEuler(momentum_first=True),
    "symplectic_euler_q": lambda: SymplecticEuler(momentum_first=False),
    "leapfrog": Leapfrog,
    "symplectic_euler_nesterov": NesterovEuler,
    "euler_richardson": EulerRichardson,
    "discrete_gradient": DiscreteGradient,
}


def names() -> list[str]:
    return list(REGISTRY)


def get(scheme: str | Scheme) -> Scheme:
    """A scheme from its name (see the table above), or the scheme itself."""
    if isinstance(scheme, Scheme):
        return scheme
    if not isinstance(scheme, str) or scheme not in REGISTRY:
        raise ValueError(
            f"unknown scheme {scheme!r}; odeopt's schemes are {names()} (scipy's 'rk45' and "
            "the other solve_ivp methods need backend='scipy', torchdiffeq's methods "
            "backend='torchdiffeq')"
        )
    return REGISTRY[scheme]()
