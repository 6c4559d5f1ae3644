"""Classic first- and second-order flows as port-Hamiltonian systems."""

from __future__ import annotations

from ..symbolic import PortHamiltonian, Switch, blocks, loss, parameters, sqnorm, t

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


def massaroli(
    a: float = 1.0, b: float = 0.5, c: float = 0.01, beta: float = 0.1
) -> PortHamiltonian:
    """Port-Hamiltonian training (Massaroli et al., seed 001; ALGORITHMS.md §3).

    The regularised loss is the Hamiltonian, H = a·F(ω) + b|ω̇|² + c|ω|², with J canonical and
    R = diag(0, β):  ω' = 2b·ω̇,  ω̇' = −a∇F − 2cω − 2bβ·ω̇,  dH/dt = −4b²β|ω̇|² ≤ 0.
    Blocks: ``theta`` (ω) and ``p`` (ω̇). The authors' full-batch mode uses β = 0.1, c = 0.01
    on t ∈ [0, 60]; streaming data makes F (so H) time-varying (a problem whose data change
    with time, see :func:`odeopt.problems.streamed`).
    """
    theta, p = blocks("theta p")
    A, B, C = parameters("a b c", positive=True)
    beta_ = parameters("beta", positive=True)
    F = loss(theta)
    return PortHamiltonian(
        A * F + B * sqnorm(p) + C * sqnorm(theta),
        [theta, p],
        J=[[0, 1], [-1, 0]],
        R=[[0, 0], [0, beta_]],
        parameters={A: a, B: b, C: c, beta_: beta},
        name="massaroli",
        description="port-Hamiltonian training: H = a·F + b|ω̇|² + c|ω|², R = diag(0, β)",
    )


def braking(
    mass: float = 1.0, k0: float = 0.1, k1: float = 2.0, goal: float = 0.0
) -> PortHamiltonian:
    """Goal-oriented braking (seed 000; ALGORITHMS.md §2): heavy ball whose friction is a port.

    H = F + |p|²/(2m), J canonical, R = 0, G = [0, 1]ᵀ, y = p/m (the velocity) and the
    feedback u = −k·y:  θ' = p/m,  p' = −g − (k/m)p,  dH/dt = yᵀu = −(k/m²)|p|² ≤ 0.
    The gain switches from k = k₀ (explore) to k₁ (brake) when F reaches ``goal``: the
    system's switch (``system.switches``), an event in :func:`odeopt.integrate` and a check
    of the closure's loss (optionally smoothed) in an exported optimizer. The balance holds
    on each side of the switch, with k = k₀ and with k = k₁.
    """
    theta, p = blocks("theta p")
    m = parameters("m", positive=True)
    k, k_1 = parameters("k k_1", nonnegative=True)
    F_goal = parameters("F_goal", real=True)
    F = loss(theta)
    return PortHamiltonian(
        F + sqnorm(p) / (2 * m),
        [theta, p],
        J=[[0, 1], [-1, 0]],
        G=[[0], [1]],
        u=lambda y: [-k * y[0]],
        parameters={m: mass, k: k0, k_1: k1, F_goal: goal},
        aliases={"mass": m, "gain": k, "gain_after": k_1, "goal": F_goal},
        switches=[Switch(F_goal, {k: k_1})],
        name="braking",
        description="heavy ball braking at a goal: friction gain k₀ → k₁ when F ≤ goal",
    )
