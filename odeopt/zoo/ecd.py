"""Energy Conserving Descent (seed 004): the Born–Infeld (BBI) Hamiltonian."""

from __future__ import annotations

import sympy as sp

from ..symbolic import EnergyLevel, PortHamiltonian, blocks, loss, parameters, sqnorm

__all__ = ["bbi"]


def bbi(delta_v: float = 0.0, delta_e: float = 0.0, rescale: bool = True) -> PortHamiltonian:
    """BBI, the Born–Infeld part of ECD (ALGORITHMS.md §6).

    V = F − ΔV,  H = √(V(V + |π|²)),  J canonical,  R = 0 (no friction), so dH/dt ≡ 0.
    The energy E is stored (a level set, :class:`~odeopt.symbolic.EnergyLevel`) and the field
    is written on H = E, where |π|² = E²/V − V:

        θ' = (V/E)π,   π' = −½(E/V + V/E)∇F.

    An exported optimizer starts with E = V(θ₀) + δE and π₀ along −∇F with |π₀|² = E²/V − V;
    with ``rescale`` (the authors' consEn) π is rescaled onto H = E before each step.
    Symplectic Euler (π first) then makes the discrete BBI of §6 exactly:
    π ← rπ − ½h(V/E + E/V)g,  θ ← θ + h(V/E)π.  The momentum block is named ``p``.
    Defined where V > 0 (ΔV below the minimum of F).
    """
    theta, p = blocks("theta p")
    dV = parameters("Delta_V", real=True)
    dE = parameters("delta_E", nonnegative=True)
    F = loss(theta)
    V = F - dV
    return PortHamiltonian(
        sp.sqrt(V * (V + sqnorm(p))),
        [theta, p],
        J=[[0, 1], [-1, 0]],
        R=[[0, 0], [0, 0]],
        parameters={dV: delta_v, dE: delta_e},
        aliases={"delta_v": dV, "delta_e": dE},
        name="bbi",
        description="Born–Infeld energy-conserving descent (BBI), no friction",
        energy_level=EnergyLevel(p, initial=V + dE, project=rescale),
    )
