"""Switches: parameter changes that fire once, when the loss reaches a goal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

__all__ = ["Switch"]


@dataclass(frozen=True)
class Switch:
    """Set parameters once, the first time F ≤ goal (relative: F ≤ goal·F(θ₀)).

    ``goal`` is an expression of parameters (e.g. the parameter ``F_goal``); ``set`` maps
    parameter symbols to their new values, expressions of parameters (e.g. ``{k: k_1}``).
    In :func:`odeopt.integrate` a switch is an event located per trajectory on the crossing
    of F − goal from above (a trajectory that starts at or below the goal switches at t₀);
    in an exported optimizer it fires on the closure's loss, optionally smoothed by an
    exponential moving average (``switch_smoothing``), and the new values are written into
    every param group (so they are in ``state_dict``).
    """

    goal: Any
    set: Mapping[sp.Symbol, Any] = field(default_factory=dict)
    relative: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "goal", sp.sympify(self.goal))
        object.__setattr__(self, "set", {k: sp.sympify(v) for k, v in dict(self.set).items()})
