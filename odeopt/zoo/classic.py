"""Classic first- and second-order flows as port-Hamiltonian systems."""

from __future__ import annotations

from ..symbolic import PortHamiltonian, blocks, loss, parameters, sqnorm

__all__ = ["gradient_flow", "heavy_ball"]


def gradient_flow() -> PortHamiltonian:
    """θ' = −∇F(θ):  H = F, J = 0, R = I, so dH/dt = −|g|²."""
    theta = blocks("theta")
    F = loss(theta)
    return PortHamiltonian(
        F,
        [theta],
        J=[[0]],
        R=[[1]],
        name="gradient_flow",
        description="gradient flow θ' = −∇F",
    )


def heavy_ball(mass: float = 1.0, friction: float = 0.5) -> PortHamiltonian:
    """Heavy ball with friction (ALGORITHMS.md §1).

    H = F(θ) + |p|²/(2m),  J = [[0, I], [−I, 0]],  R = diag(0, γI):
    θ' = p/m,  p' = −g − (γ/m)p,  dH/dt = −(γ/m²)|p|².
    """
    theta, p = blocks("theta p")
    m = parameters("m", positive=True)
    gamma = parameters("gamma", nonnegative=True)
    F = loss(theta)
    return PortHamiltonian(
        F + sqnorm(p) / (2 * m),
        [theta, p],
        J=[[0, 1], [-1, 0]],
        R=[[0, 0], [0, gamma]],
        parameters={m: mass, gamma: friction},
        aliases={"mass": m, "friction": gamma},
        name="heavy_ball",
        description="heavy ball with friction (momentum)",
    )
