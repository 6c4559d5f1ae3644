"""Energy Conserving Descent (seed 004): BBI, Ruthless and ECDSep, each with a stored energy."""

from __future__ import annotations

import numpy as np
import sympy as sp

from ..symbolic import EnergyLevel, PortHamiltonian, blocks, loss, parameters, sqnorm

__all__ = ["bbi", "ecdsep", "ruthless"]


def _check_option(name: str, value: object, kind: str) -> None:
    """A zoo option that is not a system parameter: ``kind`` "positive" (a finite real > 0)
    or "bool"; the error names the argument and its value."""
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {name}={value!r}")
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {name}={value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {name}={value}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {name}={value}")


def _g(V: sp.Expr, eta: float) -> sp.Expr:
    """g(V) = V^η (η a finite positive real, made exact: 0.5 → 1/2)."""
    _check_option("eta", eta, "positive")
    e = sp.nsimplify(eta)
    return V if e == 1 else V**e


def bbi(
    delta_v: float = 0.0, delta_e: float = 0.0, rescale: bool = True, eta: float = 1.0
) -> PortHamiltonian:
    """BBI, the Born–Infeld part of ECD (ALGORITHMS.md §6).

    V = F − ΔV,  g(V) = V^η (η = 1: the paper's BBI),  H = √(g(V)(g(V) + |π|²)),
    J canonical, R = 0 (no friction), so dH/dt ≡ 0.
    The energy E is stored (a level set, :class:`~odeopt.symbolic.EnergyLevel`) and the field
    is written on H = E, where |π|² = E²/g − g (η = 1):

        θ' = (V/E)π,   π' = −½(E/V + V/E)∇F.

    An exported optimizer starts with E = g(V(θ₀)) + δE and π₀ along −∇F with
    |π₀|² = E²/g − g; with ``rescale`` (the authors' consEn) π is rescaled onto H = E before
    each step. Symplectic Euler (π first) then makes the discrete BBI of §6 exactly:
    π ← rπ − ½h(V/E + E/V)g,  θ ← θ + h(V/E)π.  The momentum block is named ``p``.
    Defined where V > 0 (ΔV below the minimum of F).
    """
    _check_option("rescale", rescale, "bool")
    theta, p = blocks("theta p")
    dV = parameters("Delta_V", real=True)
    dE = parameters("delta_E", nonnegative=True)
    F = loss(theta)
    g = _g(F - dV, eta)
    return PortHamiltonian(
        sp.sqrt(g * (g + sqnorm(p))),
        [theta, p],
        J=[[0, 1], [-1, 0]],
        R=[[0, 0], [0, 0]],
        parameters={dV: delta_v, dE: delta_e},
        aliases={"delta_v": dV, "delta_e": dE},
        name="bbi",
        description="Born–Infeld energy-conserving descent (BBI), no friction",
        energy_level=EnergyLevel(
            p, initial=g + dE, project=rescale, domain=F - dV, shift=dV, bounce="uniform"
        ),
    )


def ruthless(
    delta_v: float = 0.0, p0_sq: float = 1.0, rescale: bool = True, eta: float = 1.0
) -> PortHamiltonian:
    """Ruthless ECD (seed 004): non-relativistic, mass m(V) = 1/(2g(V)), g(V) = V^η.

    H = g(V)|π|² (V = F − ΔV), J canonical, R = 0, so dH/dt ≡ 0. On the level set H = E,
    |π|² = E/g(V) and the field is θ' = 2g(V)π,  π' = −(E/g)·g'(V)∇F: the particle gets
    heavy (slow) as V → 0. E is stored; an exported optimizer starts with |π₀|² = ``p0_sq``
    along −∇F (E = g(V₀)·p0_sq). Integration takes E = H(x₀): start with p₀ ≠ 0 (at rest
    E = 0 and nothing moves).
    """
    _check_option("rescale", rescale, "bool")
    theta, p = blocks("theta p")
    dV = parameters("Delta_V", real=True)
    q = parameters("p0_sq", positive=True)
    F = loss(theta)
    g = _g(F - dV, eta)
    return PortHamiltonian(
        g * sqnorm(p),
        [theta, p],
        J=[[0, 1], [-1, 0]],
        parameters={dV: delta_v, q: p0_sq},
        aliases={"delta_v": dV},
        name="ruthless",
        description="Ruthless energy-conserving descent: H = g(V)|π|², mass 1/(2g(V))",
        energy_level=EnergyLevel(p, initial=g * q, project=rescale, domain=F - dV, shift=dV),
    )


def ecdsep(
    eta: float = 1.0, s: float = 1.0, f0: float = 0.0, delta_e: float = 1.0, rescale: bool = True
) -> PortHamiltonian:
    """ECDSep as the authors' code runs it (ALGORITHMS.md §6).

    H = η·log(F − F₀) + log(s + |p|²), J canonical, R = 0:
    θ' = 2p/(s + |p|²),  p' = −η∇F/(F − F₀),  dH/dt ≡ 0.
    E is stored (E = η log(F(θ₀) − F₀) + log(s + δE) at the start, |p₀|² = δE along −∇F); with
    ``rescale`` p is rescaled so that |p|² = e^E/(F − F₀)^η − s before each step. The drift
    uses the actual |p|² (the field is not eliminated), as the authors' update does:
    symplectic Euler gives p ← p − hη g/(F − F₀), θ ← θ + h·2p/(s + |p|²).
    """
    _check_option("rescale", rescale, "bool")
    theta, p = blocks("theta p")
    et = parameters("eta", positive=True)
    S = parameters("s", positive=True)
    F0 = parameters("F_0", real=True)
    dE = parameters("delta_E", positive=True)
    F = loss(theta)
    V = F - F0
    return PortHamiltonian(
        et * sp.log(V) + sp.log(S + sqnorm(p)),
        [theta, p],
        J=[[0, 1], [-1, 0]],
        parameters={et: eta, S: s, F0: f0, dE: delta_e},
        aliases={"f0": F0, "delta_e": dE},
        name="ecdsep",
        description="ECDSep: H = η log(F − F₀) + log(s + |p|²)",
        energy_level=EnergyLevel(
            p,
            initial=et * sp.log(V) + sp.log(S + dE),
            eliminate=False,
            project=rescale,
            domain=V,
            shift=F0,
            bounce="gaussian",
            positive=False,
        ),
    )
