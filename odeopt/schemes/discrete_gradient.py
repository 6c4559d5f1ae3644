"""An energy-consistent scheme: Gonzalez's midpoint discrete gradient for pH systems.

On numbers the implicit equation is solved per trajectory by a damped Newton iteration (the
Jacobian by torch autograd or by finite differences), with step halving for the trajectories
whose solve fails; each trajectory's residual is reported so that the integrator can flag the
ones whose guarantee does not hold. This module holds the scheme and its map Φ; the solve is
in :mod:`.newton`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from .base import Field, Scheme, State, Step
from .newton import NewtonSolver

__all__ = ["DiscreteGradient"]

_JACOBIANS = ("auto", "autograd", "finite_differences")


class DiscreteGradient(Scheme):
    """The discrete-gradient scheme with Gonzalez's midpoint discrete gradient.

    For ẋ = (J − R)∇H + G u, with x̄ = ½(x_k + x_{k+1}), Δ = x_{k+1} − x_k, t̄ = t_k + ½h:

        ∇̄H = ∇H(x̄) + [H(x_{k+1}) − H(x_k) − ⟨∇H(x̄), Δ⟩] / |Δ|² · Δ,
        x_{k+1} = x_k + h [(J − R)(x̄) ∇̄H + G u](x̄)
                = x_k + h [f(x̄) + c·(J − R)(x̄) Δ],   c the bracket above / |Δ|²,

    with H evaluated at t̄. Since ⟨∇̄H, Δ⟩ = H(x_{k+1}) − H(x_k) exactly and J is skew,

        H(x_{k+1}) − H(x_k) = −h ∇̄Hᵀ R ∇̄H + h ∇̄Hᵀ G u  (≤ 0 without ports),

    up to the solve's residual ρ = x_{k+1} − Φ(x_{k+1}) (Φ the right-hand side above), which
    adds ⟨∇̄H, ρ⟩. Auxiliary blocks take the implicit midpoint step s_{k+1} = s_k + h f_s(x̄).
    Order 2. The guarantee needs f = (J − R)∇H + Gu everywhere: a level-set system (BBI)
    writes |p|² through its stored energy, so its field has that form only on H = E, and
    there H may drift at the level of the step's local error (measured: up to ~1e-5
    relative in 50 steps on Ackley).

    **The solve** (numbers; on symbols the step is the fixed-point map, :meth:`update_map`).
    Per trajectory, from the Euler predictor x_k + h f(x_k): Newton's method on
    R(y) = y − Φ(y) with the Jacobian I − DΦ(y), n × n per trajectory for the n coordinates
    of all blocks together (trajectories are independent, so each has its own). DΦ comes from
    the rows repeated n times, in one evaluation of Φ: with one backward pass of torch
    autograd on tensors (``jacobian="auto"`` or ``"autograd"``; "auto" first checks once per
    objective and system that autograd sees all of the field), by forward differences
    (step √eps·(1 + |y|)) on numpy arrays, when autograd is unavailable or with
    ``jacobian="finite_differences"``. A trajectory's Jacobian is reused while its residual
    falls tenfold per iteration. Each Newton step is damped by backtracking on ½|R|² (R
    scaled by 1 + |Φ|; lengths 1, ½, ¼, then a plain fixed-point step y ← Φ(y)); a trajectory
    with no decrease even with a fresh Jacobian has failed. The field must offer
    ``subset(index)`` (as :class:`~odeopt.integrate.NumericField` does). A trajectory
    has converged when

        ρ = maxᵢ |yᵢ − Φᵢ(y)| / (1 + |Φᵢ(y)|) ≤ tol + ε_Φ,

    ε_Φ the rounding level of Φ itself: 32·eps·(1 + h|ẋ|/(1 + |Φ|)) plus the cancellation in
    the bracket, h·δN·|(J − R)Δ| / (|Δ|²(1 + |Φ|)) with δN = 32·eps·(|H(x_{k+1})| + |H(x_k)| +
    Σ|∇H(x̄)·Δ|). The latter grows like 1/|Δ| as a trajectory settles at a minimum where
    H ≠ 0, but changes H by only ≈ δN (rounding), so the energy guarantee holds there too.
    Trajectories whose solve fails (``max_iter`` Newton iterations, or no decrease) are
    re-stepped in two half steps, recursively, up to ``max_halvings`` times (at most
    2^max_halvings sub-steps of h/2^max_halvings): the step still advances by h, and each
    sub-step is a discrete-gradient step, so H still does not rise.

    ``Step.info`` on numbers: ``"residual"`` (one value per trajectory, the state's backend
    and dtype) is ρ − ε_Φ, clipped at 0 — at most ``tol`` where the solve converged, above
    ``tol`` (+inf, or NaN with a non-finite state) where it did not even after halving;
    ``"failed"`` the numpy mask of the latter; ``"iterations"`` the most Newton iterations
    any trajectory took in one solve; ``"halvings"`` the numpy count of halvings per
    trajectory.
    """

    name = "discrete_gradient"
    order = 2
    implicit = True

    def __init__(
        self,
        tol: float = 1e-13,
        max_iter: int = 30,
        max_halvings: int = 6,
        jacobian: str = "auto",
    ) -> None:
        if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)):
            raise TypeError(f"tol must be a real number, got tol={tol!r}")
        if not np.isfinite(tol) or tol <= 0:
            raise ValueError(f"tol must be finite and > 0, got tol={tol}")
        for name, value, least in (("max_iter", max_iter, 1), ("max_halvings", max_halvings, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise ValueError(f"{name} must be an integer ≥ {least}, got {name}={value!r}")
        if jacobian not in _JACOBIANS:
            raise ValueError(f"jacobian must be one of {list(_JACOBIANS)}, got {jacobian!r}")
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self.max_halvings = int(max_halvings)
        self.jacobian = jacobian
        # per (objective, system), by id, the pair kept to rule out a reused id: does autograd
        # see all of the field? (see NewtonSolver.method)
        self._autograd_ok: dict[tuple[int, int], tuple[tuple[Any, Any], bool]] = {}

    def update_map(self, f: Field, x: State, x_next: State, t: Any, h: Any) -> State:
        """Φ(x_{k+1}): the right-hand side of the implicit equation x_{k+1} = Φ(x_{k+1})."""
        return _parts(f, x, None, x_next, t, h).out

    def step(self, f: Field, x: State, t: Any, h: Any) -> Step:
        if f.symbolic:
            unknown = f.unknowns(x)
            return Step(self.update_map(f, x, unknown, t, h), info={"unknowns": unknown})
        return NewtonSolver(self, x, _parts).step(f, x, t, h)

    def __repr__(self) -> str:
        return (
            f"DiscreteGradient(tol={self.tol}, max_iter={self.max_iter}, "
            f"max_halvings={self.max_halvings}, jacobian={self.jacobian!r})"
        )


@dataclass
class _Parts:
    """Φ(y) and the intermediate values its rounding level is estimated from."""

    out: State
    fbar: State
    corr: State
    c: Any
    H_next: Any
    H_old: Any
    work: Any  # Σ|∇H(x̄)·Δ| (numbers only)
    den: Any  # |Δ|²


def _parts(f: Field, x: State, H_old: Any, x_next: State, t: Any, h: Any) -> _Parts:
    """The discrete-gradient map (see :class:`DiscreteGradient`); H(x_k) at t̄ is computed
    when ``H_old`` is None (it does not depend on the unknown, so the solve passes it)."""
    half = f.constant(sp.Rational(1, 2))
    tm = t + half * h
    xbar = {b: half * (x[b] + x_next[b]) for b in x}
    energy = f.energy_blocks
    delta = {b: x_next[b] - x[b] for b in energy}
    fbar = f(xbar, tm)
    grad = f.grad_energy(xbar, tm)
    H_next = f.energy(x_next, tm)
    if H_old is None:
        H_old = f.energy(x, tm)
    rise = H_next - H_old
    den = f.total({b: delta[b] * delta[b] for b in energy})
    c = f.safe_divide(rise - f.total({b: grad[b] * delta[b] for b in energy}), den)
    corr = f.structure(xbar, tm, delta)
    out = dict(x)
    for b in fbar:
        out[b] = x[b] + h * (fbar[b] + c * corr[b]) if b in energy else x[b] + h * fbar[b]
    work = None if f.symbolic else f.total({b: abs(grad[b] * delta[b]) for b in energy})
    return _Parts(out, fbar, corr, c, H_next, H_old, work, den)
