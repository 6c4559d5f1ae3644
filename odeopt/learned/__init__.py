"""The learned (meta-trained) port-Hamiltonian optimizer (seed 002, ALGORITHMS.md §4), the
learning-to-learn LSTM it is compared with, and the reference's evaluation protocol."""

from .energy import EnergyTrace, energy_trace
from .hnn import HamiltonianCell, HNNOptimizerNet, LogSign
from .lstm import LSTMOptimizerNet
from .optimizer import LearnedOptimizer, save_source, to_source
from .protocol import (
    BASELINES,
    CHECKPOINTS,
    baseline,
    evaluate,
    load_checkpoint,
    pretrained,
    save_checkpoint,
)
from .tasks import DigitsMLPTask, QuadraticTask
from .train import (
    MetaTrainResult,
    hnn_update,
    learned_update,
    make_net,
    meta_train,
    reference_settings,
    run_learned,
    run_torch,
)

__all__ = [
    "BASELINES",
    "CHECKPOINTS",
    "DigitsMLPTask",
    "EnergyTrace",
    "HNNOptimizerNet",
    "HamiltonianCell",
    "LSTMOptimizerNet",
    "LearnedOptimizer",
    "LogSign",
    "MetaTrainResult",
    "QuadraticTask",
    "baseline",
    "energy_trace",
    "evaluate",
    "hnn_update",
    "learned_update",
    "load_checkpoint",
    "make_net",
    "meta_train",
    "pretrained",
    "reference_settings",
    "run_learned",
    "run_torch",
    "save_checkpoint",
    "save_source",
    "to_source",
]
