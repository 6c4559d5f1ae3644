"""Metrics that are not coordinate-wise: the extension point for θ' = −P(θ)∇F.

odeopt's language is coordinate-wise: J, R and G act on each coordinate's (θᵢ, pᵢ, …)
alone. Some flows precondition the gradient with a full matrix instead, e.g.
Levenberg–Marquardt, θ' = −(JᵣᵀJᵣ + μI)⁻¹∇F with Jᵣ the residuals' Jacobian. A system
declares such a metric with ``PortHamiltonian(..., metric=M)``; the numeric field then feeds
the ODE P(θ)∇F where the language says ∇F (the energy still uses F). The energy balance
holds as for R = P: dH/dt = −∇FᵀP∇F ≤ 0 when P is symmetric positive semidefinite, which
a metric promises by construction.

A metric implements ``apply(problem, theta, g) -> P(θ)·g`` on batches (numpy or torch,
shapes (batch, n)). It runs in :func:`odeopt.integrate` (numpy/torch/scipy/torchdiffeq);
symbolic extraction and export stay coordinate-wise and refuse a system with a metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LevenbergMarquardt", "Metric"]


class Metric:
    """P(θ), symmetric positive semidefinite, applied to the gradient (see the module)."""

    description = "metric"

    def apply(self, problem: Any, theta: Any, g: Any) -> Any:
        raise NotImplementedError


@dataclass
class LevenbergMarquardt(Metric):
    """P(θ) = (JᵣᵀJᵣ + μI)⁻¹, Jᵣ = ∂r/∂θ of the problem's residuals r(θ) (batch, m).

    Jᵣ is computed by central differences with step ``eps``·max(1, |θⱼ|); ``problem`` must
    have ``residuals(theta)`` (least squares: r = Wθ − y; the one-neuron nets:
    r = ½(σ(b), σ(w + b))), with F = |r|² (then ∇F = 2Jᵣᵀr and for μ → 0 the flow is
    Gauss–Newton's, θ' = −2Jᵣ⁺r).
    """

    mu: float = 1e-3
    eps: float = 1e-6
    description = "Levenberg–Marquardt: P = (JᵣᵀJᵣ + μI)⁻¹"

    def __post_init__(self) -> None:
        if not self.mu > 0:
            raise ValueError(f"mu must be positive (JᵀJ + μI invertible), got {self.mu}")

    def jacobian(self, problem: Any, theta: np.ndarray) -> np.ndarray:
        if not hasattr(problem, "residuals"):
            raise TypeError(
                f"Levenberg–Marquardt needs residuals r(θ) with F = |r|²; "
                f"{type(problem).__name__} has no residuals()"
            )
        n = theta.shape[1]
        cols = []
        for j in range(n):
            step = self.eps * np.maximum(1.0, np.abs(theta[:, j]))
            e = np.zeros_like(theta)
            e[:, j] = step
            diff = np.asarray(problem.residuals(theta + e)) - np.asarray(
                problem.residuals(theta - e)
            )
            cols.append(diff / (2 * step[:, None]))
        return np.stack(cols, axis=-1)  # (batch, m, n)

    def apply(self, problem: Any, theta: Any, g: Any) -> Any:
        torch_in = hasattr(theta, "detach")
        th = theta.detach().cpu().numpy() if torch_in else np.asarray(theta)
        gv = g.detach().cpu().numpy() if torch_in else np.asarray(g)
        J = self.jacobian(problem, th.astype(np.float64))
        A = np.einsum("bmi,bmj->bij", J, J) + self.mu * np.eye(th.shape[1])
        out = np.linalg.solve(A, gv.astype(np.float64)[..., None])[..., 0]
        if torch_in:
            import torch

            return torch.as_tensor(out, dtype=g.dtype, device=g.device)
        return out.astype(gv.dtype, copy=False)
