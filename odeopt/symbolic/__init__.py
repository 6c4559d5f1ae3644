"""The symbolic port-Hamiltonian language: blocks, globals, systems, energy balance."""

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
from .system import CompiledSystem, Parameter, PortHamiltonian

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
