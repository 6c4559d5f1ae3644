"""Analysis of update rules: what a discrete rule does, derived from the one definition.

* :func:`quadratic` — the rule on F = ½λ|θ|² is linear, x_{k+1} = M(λ)x_k: its iteration
  matrix, spectral radius, stability region and ρ maps;
* :func:`tune` — min over step and parameters of max_{λ∈[μ, L]} ρ(M(λ)) (the tuned rate);
* :func:`discrete_energy` — whether one step decreases H on quadratics, and for which h;
* :func:`modified_equation` — the ODE the rule really follows (backward error analysis);
* :func:`worst_case` — the tight worst case over smooth (strongly) convex functions (PEPit).
"""

from __future__ import annotations

from .energy import DiscreteEnergy, discrete_energy
from .linear_map import curvature
from .modified import (
    ModifiedBalance,
    ModifiedSystem,
    NoModifiedEquation,
    eta,
    modified_equation,
)
from .pep import METRICS, NotCertifiableError, WorstCase, worst_case, worst_case_curve
from .quadratic import QuadraticRule, quadratic
from .stability import StabilityRegion
from .tuning import TunedRule, tune

__all__ = [
    "ModifiedBalance",
    "ModifiedSystem",
    "NoModifiedEquation",
    "eta",
    "modified_equation",
    "METRICS",
    "NotCertifiableError",
    "WorstCase",
    "worst_case",
    "worst_case_curve",
    "DiscreteEnergy",
    "QuadraticRule",
    "StabilityRegion",
    "TunedRule",
    "curvature",
    "discrete_energy",
    "quadratic",
    "tune",
]
