"""Euler–Richardson with an adaptive step, and the step-size controller that drives it.

The scheme proposes a step and estimates its local error; the controller (kept outside the
scheme, as in diffrax and scipy) accepts or rejects it and picks the next step size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from ..checks import check_real
from .base import Field, Scheme, State, Step, axpy

__all__ = ["EnergyController", "EnergyDecrease", "EulerRichardson", "StepController"]


def _check_reals(obj: Any, *names: str, allow_inf: bool = False) -> None:
    """Each named attribute is a real number, finite unless ``allow_inf`` (never NaN)."""
    for name in names:
        check_real(name, getattr(obj, name), allow_inf=allow_inf)


class EulerRichardson(Scheme):
    """Euler–Richardson: an Euler step and a corrected step, their difference the error.

    ``variant="midpoint"`` (the default, the textbook scheme):
        k₁ = f(x, t),  k₂ = f(x + ½h k₁, t + ½h),  x_{k+1} = x + h k₂,
        error = h (k₂ − k₁)  (≈ the local error of the Euler step, O(h²)).
        The propagated solution is the midpoint rule: order 2.
    ``variant="reference"`` (Bensaid's reference code, ALGORITHMS.md §5):
        k₁ = f(x, t),  k₂ = f(x + h k₁, t + h),  x_{k+1} = x + h k₂,
        error = ½h (k₂ − k₁).  Order 1. For gradient flow this is θᵢ = θ − ηg(θ),
        θ ← θ − ηg(θᵢ), err = ½η|g(θ) − g(θᵢ)|; with ``StepController(norm="l2", rtol=0,
        atol=tol, grow=inf, shrink=0)`` the step update η ← 0.9η/√err is the reference's.
        The step reports the Euler predictor x + h·f(x) (``info["predictor"]``): with
        ``gtol``, ``integrate`` stops a trajectory where |∇F| < gtol there, as the reference
        does (its accepted iterates may settle at the stability edge h ≈ 2/λmax·…, where
        |∇F| stays large while the predictor lands on the minimum).
    """

    name = "euler_richardson"
    adaptive = True
    error_order = 1

    def __init__(self, variant: str = "midpoint", controller: Any = None) -> None:
        if variant not in ("midpoint", "reference"):
            raise ValueError(f"variant must be 'midpoint' or 'reference', got {variant!r}")
        self.variant = variant
        self.controller = controller  # integrate's default when given; export needs one
        self.order = 2 if variant == "midpoint" else 1

    def step(self, f: Field, x: State, t: Any, h: Any) -> Step:
        half = f.constant(sp.Rational(1, 2))
        k1 = f(x, t)
        if self.variant == "midpoint":
            k2 = f(axpy(x, half * h, k1), t + half * h)
            err_scale = h
        else:
            probe = axpy(x, h, k1)
            k2 = f(probe, t + h)
            err_scale = half * h
        x1 = axpy(x, h, k2)
        error = {b: err_scale * (k2[b] - k1[b]) for b in k1}
        if self.variant == "reference":  # the Euler predictor, where the reference tests |∇F|
            return Step(x1, error, info={"predictor": probe})
        return Step(x1, error)

    def __repr__(self) -> str:
        return f"EulerRichardson(variant={self.variant!r})"


@dataclass
class StepController:
    """Accept/reject and the next step size from a scheme's error estimate (per trajectory).

    err = ‖e / (atol + rtol·max(|x|, |x_new|))‖ over all coordinates of all blocks, the norm
    being the root mean square (``"rms"``, as scipy) or the Euclidean norm (``"l2"``).
    The step is accepted when err ≤ 1; then h ← h·clip(safety·err^(−1/(q+1)), shrink, grow),
    q the order of the estimate (on rejection err > 1, so the factor is below ``safety``).
    """

    rtol: float = 1e-6
    atol: float = 1e-9
    safety: float = 0.9
    grow: float = 5.0
    shrink: float = 0.2
    norm: str = "rms"
    h_min: float = 0.0
    h_max: float = float("inf")

    def __post_init__(self) -> None:
        if self.norm not in ("rms", "l2"):
            raise ValueError(f"norm must be 'rms' or 'l2', got {self.norm!r}")
        _check_reals(self, "rtol", "atol", "safety", "shrink", "h_min")
        _check_reals(self, "grow", "h_max", allow_inf=True)
        if not self.h_min <= self.h_max:
            raise ValueError(f"need h_min ≤ h_max, got h_min={self.h_min}, h_max={self.h_max}")
        if self.h_min < 0:
            raise ValueError(f"h_min must be ≥ 0, got h_min={self.h_min}")
        if self.rtol < 0 or self.atol < 0 or (self.rtol == 0 and self.atol == 0):
            raise ValueError(
                f"rtol and atol must be ≥ 0 and not both 0, got rtol={self.rtol}, atol={self.atol}"
            )
        if not 0 < self.safety <= 1:
            raise ValueError(f"safety must lie in (0, 1], got {self.safety}")
        if self.grow < 1 or not 0 <= self.shrink <= 1:
            raise ValueError(f"need grow ≥ 1 and 0 ≤ shrink ≤ 1, got {self.grow}, {self.shrink}")

    def error_norm(self, xp: Any, x: State, x_new: State, error: State) -> Any:
        """err per trajectory (shape (batch,)), for numpy or torch values (``xp`` the module)."""
        total = 0.0
        count = 0
        for b, e in error.items():
            scale = self.atol + self.rtol * xp.maximum(abs(x[b]), abs(x_new[b]))
            total = total + ((e / scale) ** 2).sum(-1)
            count += e.shape[-1]
        if self.norm == "rms":
            total = total / count
        return total**0.5

    def factor(self, err: Any, error_order: int) -> Any:
        """The step-size factor safety·err^(−1/(q+1)), clipped to [shrink, min(grow, 1e10)]
        (err = 0 gives the largest factor)."""
        exponent = -1.0 / (error_order + 1)
        with np.errstate(divide="ignore", over="ignore"):
            raw = self.safety * err.clip(min=1e-300) ** exponent
        return raw.clip(min=self.shrink, max=min(self.grow, 1e10))


class EnergyDecrease(Scheme):
    """Lyapunov step-size control around a fixed-step scheme (Bensaid's LC_EGD and LC_M).

    The inner scheme proposes x' from x; the step is accepted when the energy drops by at
    least a fraction λ of what the flow's dissipation promises,

        H(x') − H(x) ≤ λ·h·Ḣ,   Ḣ = Σ_b ∇_bH·f_b  at x (``rate_at="old"``) or at x',

    reported as the error e = H(x') − H(x) − λhḢ (accepted iff e ≤ 0). The paired
    :class:`EnergyController` shrinks h by ``shrink`` on rejection and grows it by ``grow``
    after acceptance. Gradient flow + ``"euler"`` is LC_EGD: accept θ − ηg iff
    F(θ − ηg) − F(θ) ≤ −λη|g|² (λ = ½, η/2 on rejection, η·10⁴ after acceptance).
    Heavy ball + ``"symplectic_euler"`` with ``rate_at="new"`` is LC_M's test
    V_{n+1} − V_n ≤ −λη(γ/m²)|p_{n+1}|² (β̄ = γ/m).
    """

    name = "energy_decrease"
    adaptive = True
    error_order = 1

    def __init__(
        self,
        inner: str | Scheme = "euler",
        lam: float = 0.5,
        shrink: float = 0.5,
        grow: float = 1e4,
        rate_at: str = "old",
        h_max: float = float("inf"),
    ) -> None:
        from . import get

        for name, value in (("lam", lam), ("shrink", shrink), ("grow", grow), ("h_max", h_max)):
            check_real(name, value, allow_inf=name in ("grow", "h_max"))
        if not h_max > 0:
            raise ValueError(f"h_max must be > 0, got h_max={h_max}")
        self.inner = get(inner)
        if self.inner.adaptive or self.inner.implicit:
            raise ValueError(f"energy control wraps an explicit fixed-step scheme, not {inner!r}")
        if not 0 < lam < 1:
            raise ValueError(f"lam must lie in (0, 1), got {lam}")
        if rate_at not in ("old", "new"):
            raise ValueError(f"rate_at must be 'old' or 'new', got {rate_at!r}")
        self.lam, self.rate_at = lam, rate_at
        self.order = self.inner.order
        self.partitioned = self.inner.partitioned
        self.controller = EnergyController(shrink=shrink, grow=grow, h_max=h_max)

    def step(self, f: Field, x: State, t: Any, h: Any) -> Step:
        new = self.inner.step(f, x, t, h).x
        at = x if self.rate_at == "old" else new
        t_at = t if self.rate_at == "old" else t + h
        grad = f.grad_energy(at, t_at)
        flow = f(at, t_at, f.energy_blocks)
        rate = f.total({b: grad[b] * flow[b] for b in f.energy_blocks})
        lam = f.constant(sp.Rational(self.lam).limit_denominator(10**6))
        error = f.energy(new, t + h) - f.energy(x, t) - lam * h * rate
        return Step(new, {"H": error})

    def __repr__(self) -> str:
        return f"EnergyDecrease({self.inner!r}, lam={self.lam}, rate_at={self.rate_at!r})"


@dataclass
class EnergyController:
    """Accept/reject for :class:`EnergyDecrease`: accept iff e ≤ 0; h ← h·grow after an
    acceptance, h ← h·shrink after a rejection, within [h_min, h_max]."""

    shrink: float = 0.5
    grow: float = 1e4
    h_min: float = 0.0
    h_max: float = float("inf")

    def __post_init__(self) -> None:
        _check_reals(self, "shrink", "h_min")
        _check_reals(self, "grow", "h_max", allow_inf=True)
        if not 0 <= self.h_min <= self.h_max:
            raise ValueError(f"need 0 ≤ h_min ≤ h_max, got h_min={self.h_min}, h_max={self.h_max}")
        if not 0 < self.shrink < 1 or self.grow < 1:
            raise ValueError(f"need 0 < shrink < 1 and grow ≥ 1, got {self.shrink}, {self.grow}")

    def error_norm(self, xp: Any, x: State, x_new: State, error: State) -> Any:
        """0.5 where the energy test passes (≤ 1: accepted), 2 where it fails, NaN where it
        is not finite (a failure)."""
        e = error["H"]
        e = e.reshape(-1) if hasattr(e, "reshape") else e
        return xp.where(e <= 0, 0.5 + 0 * e, 2.0 + 0 * e)

    def factor(self, err: Any, error_order: int) -> Any:
        return np.where(err <= 1.0, self.grow, self.shrink)
