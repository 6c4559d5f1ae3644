"""odeopt: optimizers as port-Hamiltonian ODEs.

Define a system symbolically, check its energy balance, compile its vector field, and (in
later stages) integrate it, discretize it and export the update rule as a torch optimizer.
"""

from . import analysis, optimizers, plot, problems, schemes, study, zoo
from .errors import StructureError
from .export import UpdateRule, discretize
from .integrate import Event, SaveAt, Stop, Trajectory, integrate
from .study import Run, Study, StudyResult
from .symbolic import (
    Block,
    EnergyBalance,
    PortHamiltonian,
    blocks,
    inner,
    loss,
    parameters,
    sqnorm,
    t,
    total,
)

__version__ = "0.1.0"

__all__ = [
    "Block",
    "EnergyBalance",
    "Event",
    "PortHamiltonian",
    "Run",
    "SaveAt",
    "Stop",
    "StructureError",
    "Study",
    "StudyResult",
    "Trajectory",
    "UpdateRule",
    "analysis",
    "blocks",
    "discretize",
    "inner",
    "integrate",
    "loss",
    "optimizers",
    "parameters",
    "plot",
    "problems",
    "schemes",
    "sqnorm",
    "study",
    "t",
    "total",
    "zoo",
]
