"""Batched integration of a system on an objective: schemes, backends, events, trajectories."""

from .backends import Backend, register
from .events import Event, EventRecord
from .field import NumericField
from .options import SaveAt, Stop
from .solve import SCIPY_METHODS, integrate, torchdiffeq_methods
from .trajectory import EnergyIncrease, EnergyReport, Trajectory

__all__ = [
    "SCIPY_METHODS",
    "Backend",
    "EnergyIncrease",
    "EnergyReport",
    "Event",
    "EventRecord",
    "NumericField",
    "SaveAt",
    "Stop",
    "Trajectory",
    "integrate",
    "register",
    "torchdiffeq_methods",
]
