"""Batched integration of a system on an objective: schemes, backends, events, trajectories."""

from .events import Event, EventRecord
from .field import NumericField
from .solve import SCIPY_METHODS, integrate, torchdiffeq_methods
from .trajectory import EnergyIncrease, EnergyReport, Trajectory

__all__ = [
    "SCIPY_METHODS",
    "EnergyIncrease",
    "EnergyReport",
    "Event",
    "EventRecord",
    "NumericField",
    "Trajectory",
    "integrate",
    "torchdiffeq_methods",
]
