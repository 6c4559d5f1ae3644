"""Euler–Richardson with an adaptive step, and the step-size controller that drives it.

The scheme proposes a step and estimates its local error; the controller (kept outside the
scheme, as in diffrax and scipy) accepts or rejects it and picks the next step size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from .base import Field, Scheme, State, Step, axpy

__all__ = ["EulerRichardson", "StepController"]


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
    """

    name = "euler_richardson"
    adaptive = True
    error_order = 1

    def __init__(self, variant: str = "midpoint") -> None:
        if variant not in ("midpoint", "reference"):
            raise ValueError(f"variant must be 'midpoint' or 'reference', got {variant!r}")
        self.variant = variant
        self.order = 2 if variant == "midpoint" else 1

    def step(self, f: Field, x: State, t: Any, h: Any) -> Step:
        half = f.constant(sp.Rational(1, 2))
        k1 = f(x, t)
        if self.variant == "midpoint":
            k2 = f(axpy(x, half * h, k1), t + half * h)
            err_scale = h
        else:
            k2 = f(axpy(x, h, k1), t + h)
            err_scale = half * h
        x1 = axpy(x, h, k2)
        error = {b: err_scale * (k2[b] - k1[b]) for b in k1}
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
