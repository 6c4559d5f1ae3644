"""Metrics that are not coordinate-wise: the extension point for θ' = −P(θ)∇F.

odeopt's language is coordinate-wise: J, R and G act on each coordinate's (θᵢ, pᵢ, …)
alone. Some flows precondition the gradient with a full matrix instead, e.g.
Levenberg–Marquardt, θ' = −(JᵣᵀJᵣ + μI)⁻¹∇F with Jᵣ the residuals' Jacobian. A system
declares such a metric with ``PortHamiltonian(..., metric=M)``; the numeric field then feeds
the ODE P(θ)∇F where the language says ∇F (the energy still uses F). The energy balance
holds as for R = P: dH/dt = −∇FᵀP∇F, ≤ 0 when P ⪰ 0 (gᵀPg ≥ 0 for every g).

odeopt cannot read a proof out of ``apply``, so a metric states what it knows in ``psd``:

* ``"proved"``: P ⪰ 0 by construction, with the argument in ``psd_proof``
  (Levenberg–Marquardt: (JᵣᵀJᵣ + μI)⁻¹ with μ > 0, below);
* ``"declared"``: the author says P ⪰ 0; the energy balance checks it numerically;
* ``None`` (the default): nothing is claimed, and the verdict is "not proved".

Either way :meth:`Metric.check_psd` looks for a g with gᵀP(θ)g < 0 on random (θ, g), and a
counter-example makes the verdict "not proved" (a metric P = −I, gradient ascent, is never
"dissipative"). The default check calls ``apply(None, θ, g)``; a metric that needs the
problem overrides it (Levenberg–Marquardt checks itself on a random linear least-squares
problem).

A metric implements ``apply(problem, theta, g) -> P(θ)·g`` on batches (numpy or torch,
shapes (batch, n)). It runs in :func:`odeopt.integrate` (numpy/torch/scipy/torchdiffeq);
symbolic extraction and export stay coordinate-wise and refuse a system with a metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..arrays import arrays_of

__all__ = ["LevenbergMarquardt", "Metric"]


#: relative tolerance of :meth:`Metric.check_psd`: gᵀPg ≥ −tol·|g|·|Pg| counts as ≥ 0
PSD_CHECK_RTOL = 1e-10


class Metric:
    """P(θ) applied to the gradient (see the module); ``psd`` states what is known of P ⪰ 0."""

    description = "metric"
    psd: str | None = None  # "proved", "declared" or None (see the module)
    psd_proof: str = ""

    def apply(self, problem: Any, theta: Any, g: Any) -> Any:
        raise NotImplementedError

    def check_psd(
        self, samples: int = 64, seed: int = 0, dim: int = 4, problem: Any = None
    ) -> tuple[bool | None, str, dict[str, Any] | None, int]:
        """Look for gᵀP(θ)g < −tol·|g|·|P(θ)g| (tol = :data:`PSD_CHECK_RTOL`) on ``samples``
        random (θ, g) of dimension ``dim``, at scales 10^±2.

        Returns (True: none found / False: found / None: apply could not be evaluated,
        what was done, the counter-example {"theta", "g", "gPg"} or None, samples checked).
        """
        rng = np.random.default_rng(seed)
        scale = 10.0 ** rng.uniform(-2, 2, (samples, 1))
        theta = rng.standard_normal((samples, dim)) * scale
        g = rng.standard_normal((samples, dim)) * 10.0 ** rng.uniform(-2, 2, (samples, 1))
        try:
            Pg = np.asarray(self.apply(problem, theta, g), dtype=float)
        except Exception as exc:  # a user's apply may need the problem: say so, do not fail
            what = f"apply(problem={problem!r}, θ, g) raised {type(exc).__name__}: {exc}"
            return None, what, None, 0
        if Pg.shape != g.shape:
            return None, f"apply returned shape {Pg.shape} for g of shape {g.shape}", None, 0
        q = np.sum(g * Pg, axis=-1)
        size = np.linalg.norm(g, axis=-1) * np.linalg.norm(Pg, axis=-1)
        valid = np.isfinite(q) & np.isfinite(size)
        bad = valid & (q < -PSD_CHECK_RTOL * size)
        checked = int(valid.sum())
        if not bad.any():
            what = f"a numeric check found gᵀPg ≥ 0 in {checked} random (θ, g)"
            return True, what, None, checked
        i = int(np.argmin(np.where(bad, q / np.where(size > 0, size, 1.0), np.inf)))
        example = {"theta": theta[i].tolist(), "g": g[i].tolist(), "gPg": float(q[i])}
        return False, f"a numeric check found gᵀP(θ)g = {q[i]:.3g} < 0", example, checked


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
    psd = "proved"
    psd_proof = (
        "by construction: JᵣᵀJᵣ is symmetric with xᵀJᵣᵀJᵣx = |Jᵣx|² ≥ 0, so JᵣᵀJᵣ + μI (μ > 0) "
        "is symmetric with eigenvalues ≥ μ > 0, and its inverse P is symmetric with eigenvalues "
        "in (0, 1/μ]: gᵀPg > 0 for g ≠ 0, whatever the Jacobian"
    )

    def __post_init__(self) -> None:
        for name in ("mu", "eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise TypeError(f"{name} must be a real number, got {name}={v!r}")
            if not np.isfinite(v):
                raise ValueError(f"{name} must be finite, got {name}={v}")
            if not v > 0:
                why = "JᵀJ + μI invertible" if name == "mu" else "a difference step"
                raise ValueError(f"{name} must be positive ({why}), got {name}={v}")

    def check_psd(
        self, samples: int = 64, seed: int = 0, dim: int = 4, problem: Any = None
    ) -> tuple[bool | None, str, dict[str, Any] | None, int]:
        """:meth:`Metric.check_psd` on a random linear least-squares problem r = Wθ − y
        (a check of the implementation; the proof is :attr:`psd_proof`)."""
        if problem is None:
            rng = np.random.default_rng(seed)
            problem = _LinearResiduals(
                rng.standard_normal((dim + 1, dim)), rng.standard_normal(dim + 1)
            )
        return super().check_psd(samples, seed, dim, problem)

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
        a = arrays_of(theta)  # the result is of θ's library, with g's dtype (and device)
        th, gv = a.to_numpy(theta), a.to_numpy(g)
        J = self.jacobian(problem, th.astype(np.float64))
        A = np.einsum("bmi,bmj->bij", J, J) + self.mu * np.eye(th.shape[1])
        out = np.linalg.solve(A, gv.astype(np.float64)[..., None])[..., 0]
        return a.constant(out, g if a.torch else gv)


@dataclass
class _LinearResiduals:
    """r(θ) = Wθ − y on batches: the problem :meth:`LevenbergMarquardt.check_psd` uses."""

    W: np.ndarray
    y: np.ndarray

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(theta) @ self.W.T - self.y
