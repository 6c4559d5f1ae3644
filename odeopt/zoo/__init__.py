"""The zoo: one short declarative definition per optimizer.

``odeopt.zoo.names()`` lists them; ``odeopt.zoo.get(name, **params)`` builds one.
``odeopt.zoo.weight_decay(system, c, decoupled=False)`` wraps any of them (or your own system
with a loss) in weight decay; it takes a system, so it is a function, not a registry entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..symbolic import PortHamiltonian
from .adaptive import adam, levenberg_marquardt, rmsprop
from .classic import braking, gradient_flow, heavy_ball, massaroli, nesterov
from .ecd import bbi, ecdsep, ruthless
from .weight_decay import weight_decay

__all__ = [
    "REGISTRY",
    "adam",
    "bbi",
    "braking",
    "ecdsep",
    "get",
    "gradient_flow",
    "heavy_ball",
    "levenberg_marquardt",
    "massaroli",
    "names",
    "nesterov",
    "rmsprop",
    "ruthless",
    "weight_decay",
]

REGISTRY: dict[str, Callable[..., PortHamiltonian]] = {
    "gradient_flow": gradient_flow,
    "heavy_ball": heavy_ball,
    "nesterov": nesterov,
    "braking": braking,
    "massaroli": massaroli,
    "rmsprop": rmsprop,
    "adam": adam,
    "levenberg_marquardt": levenberg_marquardt,
    "bbi": bbi,
    "ruthless": ruthless,
    "ecdsep": ecdsep,
}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str, **params: Any) -> PortHamiltonian:
    """Build the zoo system ``name`` with parameter values ``params``."""
    if name not in REGISTRY:
        raise KeyError(f"no zoo system {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name](**params)
