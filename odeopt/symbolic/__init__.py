"""The symbolic port-Hamiltonian language: blocks, globals, systems, energy balance."""

from .compiled import CompiledSystem
from .energy import EnergyBalance, to_globals
from .language import (
    Block,
    Gradient,
    Loss,
    Reduction,
    Time,
    blocks,
    inner,
    loss,
    parameters,
    sqnorm,
    t,
    total,
)
from .level_set import EnergyLevel
from .metric import LevenbergMarquardt, Metric
from .switch import Switch
from .system import PortHamiltonian
from .validation import Parameter

__all__ = [
    "Block",
    "CompiledSystem",
    "EnergyBalance",
    "EnergyLevel",
    "Gradient",
    "LevenbergMarquardt",
    "Loss",
    "Metric",
    "Parameter",
    "PortHamiltonian",
    "Reduction",
    "Switch",
    "Time",
    "blocks",
    "inner",
    "loss",
    "parameters",
    "sqnorm",
    "t",
    "to_globals",
    "total",
]
