"""The learned (meta-trained) port-Hamiltonian optimizer (seed 002, ALGORITHMS.md §4)."""

from .hnn import HamiltonianCell, HNNOptimizerNet, LogSign
from .optimizer import LearnedOptimizer, save_source, to_source
from .tasks import DigitsMLPTask, QuadraticTask
from .train import MetaTrainResult, hnn_update, meta_train, run_learned, run_torch

__all__ = [
    "DigitsMLPTask",
    "HNNOptimizerNet",
    "HamiltonianCell",
    "LearnedOptimizer",
    "LogSign",
    "MetaTrainResult",
    "QuadraticTask",
    "hnn_update",
    "meta_train",
    "run_learned",
    "run_torch",
    "save_source",
    "to_source",
]
