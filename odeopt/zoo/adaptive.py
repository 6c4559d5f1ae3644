"""Adaptive-gradient flows of Bensaid's energy view (seed 003, ALGORITHMS.md §5)."""

from __future__ import annotations

import sympy as sp

from ..symbolic import PortHamiltonian, blocks, loss, parameters

__all__ = ["adam", "levenberg_marquardt", "rmsprop"]


def rmsprop(decay: float = 0.1, eps: float = 1e-8) -> PortHamiltonian:
    """RMSProp flow: θ' = −g/(√s + ε),  s' = β̄(g² − s)  (s an auxiliary block, s ≥ 0).

    As a pH system: H = F, J = 0, R = [1/(√s + ε)] per coordinate, so
    dH/dt = −Σ g²/(√s + ε) ≤ 0 wherever s ≥ 0 (which s' keeps from s₀ ≥ 0).
    An exported optimizer starts with s = 0: use a scheme that updates s before θ
    (``symplectic_euler``, as torch's RMSprop does); a stage that moves θ with s = 0 divides
    by ε (multi-stage schemes: the first stage's loss is then non-finite and the step raises).
    """
    theta, s = blocks("theta s")
    b = parameters("beta_bar", positive=True)
    e = parameters("epsilon", positive=True)
    F = loss(theta)
    g = F.grad
    return PortHamiltonian(
        F,
        [theta],
        J=[[0]],
        R=[[1 / (sp.sqrt(sp.Abs(s)) + e)]],
        aux={s: b * (g**2 - s)},
        parameters={b: decay, e: eps},
        aliases={"decay": b, "eps": e},
        name="rmsprop",
        description="RMSProp flow θ' = −g/(√s + ε), s' = β̄(g² − s)",
    )


def adam(beta1_bar: float = 0.1, beta2_bar: float = 0.001, eps: float = 1e-8) -> PortHamiltonian:
    """Adam flow without bias correction (Barakat–Bianchi's form, constant rates):

        θ' = −m/(√s + ε),   m' = β̄₁(g − m),   s' = β̄₂(g² − s).

    Written with H = F and the drive −m/(√s + ε) entering through a port (G = 1, y = g):
    dH/dt = yᵀu = −Σ g·m/(√s + ε) exactly, lossless with respect to the port, but that supply
    has no sign in general (m lags g), so F itself need not decrease: the verdict is
    "passive", not "dissipative" (``nonincreasing`` is False: the numeric search finds m
    against g).
    Barakat–Bianchi's Lyapunov function β̄₁F + ½Σ m²/√(s + ε) decreases only under
    conditions on the rates (ALGORITHMS.md §5), which odeopt does not prove.
    """
    theta, m, s = blocks("theta m s")
    b1 = parameters("beta1_bar", positive=True)
    b2 = parameters("beta2_bar", positive=True)
    e = parameters("epsilon", positive=True)
    F = loss(theta)
    g = F.grad
    return PortHamiltonian(
        F,
        [theta],
        J=[[0]],
        G=[[1]],
        u=[-m / (sp.sqrt(sp.Abs(s)) + e)],
        aux={m: b1 * (g - m), s: b2 * (g**2 - s)},
        parameters={b1: beta1_bar, b2: beta2_bar, e: eps},
        aliases={"beta1_bar": b1, "beta2_bar": b2, "eps": e},
        name="adam",
        description="Adam flow θ' = −m/(√s + ε), m' = β̄₁(g − m), s' = β̄₂(g² − s)",
    )


def levenberg_marquardt(mu: float = 1e-3) -> PortHamiltonian:
    """Levenberg–Marquardt flow θ' = −(JᵣᵀJᵣ + μI)⁻¹∇F (ALGORITHMS.md §5), Jᵣ the residuals'
    Jacobian computed numerically: H = F, J = 0, R = I with the metric
    :class:`~odeopt.symbolic.LevenbergMarquardt` (the extension point for metrics that are
    not coordinate-wise). dH/dt = −∇FᵀP∇F ≤ 0: "dissipative", because P ⪰ 0 holds by
    construction (μ > 0; see ``LevenbergMarquardt.psd_proof``). Integration only."""
    from ..symbolic import LevenbergMarquardt

    theta = blocks("theta")
    F = loss(theta)
    return PortHamiltonian(
        F,
        [theta],
        J=[[0]],
        R=[[1]],
        metric=LevenbergMarquardt(mu),
        name="levenberg_marquardt",
        description="Levenberg–Marquardt flow θ' = −(JᵀJ + μI)⁻¹∇F (numerical Jacobian)",
    )
