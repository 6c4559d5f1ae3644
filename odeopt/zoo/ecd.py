"""Energy Conserving Descent (seed 004): the Born–Infeld (BBI) Hamiltonian."""

from __future__ import annotations

import sympy as sp

from ..symbolic import PortHamiltonian, blocks, loss, parameters, sqnorm

__all__ = ["bbi"]


def bbi(delta_v: float = 0.0) -> PortHamiltonian:
    """BBI, the Born–Infeld part of ECD (ALGORITHMS.md §6).

    V = F − ΔV,  H = √(V(V + |π|²)),  J canonical,  R = 0 (no friction), so dH/dt ≡ 0:
    θ' = (V/E)π,  π' = −½(E/V + V/E)∇F  with E = H.  The momentum block is named ``p``.
    Defined where V > 0 (ΔV below the minimum of F).
    """
    theta, p = blocks("theta p")
    dV = parameters("Delta_V", real=True)
    F = loss(theta)
    V = F - dV
    return PortHamiltonian(
        sp.sqrt(V * (V + sqnorm(p))),
        [theta, p],
        J=[[0, 1], [-1, 0]],
        R=[[0, 0], [0, 0]],
        parameters={dV: delta_v},
        aliases={"delta_v": dV},
        name="bbi",
        description="Born–Infeld energy-conserving descent (BBI), no friction",
    )
