"""Classic first- and second-order flows as port-Hamiltonian systems."""

from __future__ import annotations

from ..symbolic import PortHamiltonian, blocks, loss, parameters, sqnorm, t

__all__ = ["gradient_flow", "heavy_ball", "nesterov"]


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


def nesterov(damping: float = 3.0, t0: float = 1.0) -> PortHamiltonian:
    """Nesterov's ODE (Su, Boyd & Candès): θ'' + r/(t + t₀)·θ' + ∇F = 0.

    H = F(θ) + ½|p|²,  J = [[0, I], [−I, 0]],  R = diag(0, r/(t + t₀)), so
    θ' = p,  p' = −g − r/(t + t₀)·p  and  dH/dt = −r/(t + t₀)·|p|² ≤ 0.
    t₀ → 0 with r = 3 is the limit of Nesterov's accelerated gradient (Su–Boyd–Candès); t₀ > 0
    shifts the time origin so that a run (and an exported optimizer) can start at t = 0.
    With r = 3, convex F and a start at rest, s = t + t₀ makes
    ℰ = s²(F − F*) + 2|θ − θ* + s p/2|² non-increasing, so
    F(θ(t)) − F* ≤ (t₀²(F(θ₀) − F*) + 2|θ₀ − θ*|²)/(t + t₀)².
    Time is a global: the friction decays, so no fixed-momentum torch optimizer equals a
    discretization of it; ``symplectic_euler_nesterov`` gives NAG whose look-ahead momentum
    at step k is 1 − r h/((k + 1)h + t₀), Nesterov's (k − 1)/(k + 2) when t₀ = h.
    """
    theta, p = blocks("theta p")
    r = parameters("r", nonnegative=True)
    tau = parameters("t_0", positive=True)
    F = loss(theta)
    return PortHamiltonian(
        F + sqnorm(p) / 2,
        [theta, p],
        J=[[0, 1], [-1, 0]],
        R=[[0, 0], [0, r / (t + tau)]],
        parameters={r: damping, tau: t0},
        aliases={"damping": r, "t0": tau},
        name="nesterov",
        description="Nesterov's ODE θ'' + r/(t + t₀)θ' + ∇F = 0 (time-varying friction)",
    )
