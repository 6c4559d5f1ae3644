"""The reference's evaluation protocol (Table A1 of ALGORITHMS.md §4): learned optimizers and
torch's baselines on fresh problems, several test seeds, a confidence interval; and the
shipped checkpoints.

Evaluation (OPT-ML ``main.ipynb``): every optimizer runs ``steps`` = 100 steps on 100 fresh
problems; the loss is recorded before each step, F(θ_0), …, F(θ_99), and "F at step 100" is
the last record, F(θ_99), averaged over the problems. odeopt repeats this over test seeds
(problems drawn with ``torch.Generator().manual_seed(EVAL_SEED + seed)``, away from the
meta-training's streams ``seed`` and ``seed + 10_000``) and reports the mean over seeds with
a Student-t 95 % interval over the per-seed means.

Baselines, as the reference configures them (``NORMAL_OPTS`` and its learning rates):
Adam and RMSprop with torch's defaults but lr, SGD with momentum 0.9, NAG = SGD with momentum
0.9 and ``nesterov=True``. The rates per task are in :data:`BASELINES` (the digits rows are
the reference's MNIST rates, for the digits stand-in).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._checks import check_count, check_flag, check_positive
from .hnn import HNNOptimizerNet
from .lstm import LSTMOptimizerNet
from .train import (
    MetaTrainResult,
    _kind_of,
    reference_settings,
    run_learned,
    run_torch,
)

__all__ = [
    "BASELINES",
    "CHECKPOINTS",
    "EVAL_SEED",
    "baseline",
    "evaluate",
    "load_checkpoint",
    "pretrained",
    "save_checkpoint",
]

EVAL_SEED = 20_000

# name -> task key -> (torch.optim class name, keyword arguments), as the reference runs them
BASELINES: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "adam": {
        "quadratic": ("Adam", {"lr": 0.1}),
        "digits_sigmoid": ("Adam", {"lr": 0.03}),
        "digits_relu": ("Adam", {"lr": 0.03}),
    },
    "rmsprop": {
        "quadratic": ("RMSprop", {"lr": 0.03}),
        "digits_sigmoid": ("RMSprop", {"lr": 0.01}),
        "digits_relu": ("RMSprop", {"lr": 0.003}),
    },
    "sgd": {
        "quadratic": ("SGD", {"lr": 0.01, "momentum": 0.9}),
        "digits_sigmoid": ("SGD", {"lr": 1.0, "momentum": 0.9}),
        "digits_relu": ("SGD", {"lr": 0.3, "momentum": 0.9}),
    },
    "nag": {
        "quadratic": ("SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
        "digits_sigmoid": ("SGD", {"lr": 1.0, "momentum": 0.9, "nesterov": True}),
        "digits_relu": ("SGD", {"lr": 0.3, "momentum": 0.9, "nesterov": True}),
    },
}

CHECKPOINTS = ("hnn_quadratic", "hnn_quadratic_original", "lstm_quadratic")
_CHECKPOINT_DIR = Path(__file__).with_name("checkpoints")


def _task_key(where: str, task: Any) -> str:
    name = getattr(task, "name", None)
    if name == "quadratic":
        return "quadratic"
    if name == "digits_mlp" and getattr(task, "activation", None) in ("sigmoid", "relu"):
        return f"digits_{task.activation}"
    raise ValueError(
        f"{where}: the reference has baseline settings for the quadratic and digits tasks "
        f"only, got task={task!r}; pass an optimizer factory (lambda ps: torch.optim...) instead"
    )


def baseline(name: str, task: Any) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
    """The reference's baseline ``name`` ("adam", "rmsprop", "sgd", "nag") for ``task``, as a
    factory of the parameter list (what :func:`run_torch` takes); its settings are
    :data:`BASELINES`."""
    if not isinstance(name, str) or name not in BASELINES:
        raise ValueError(f"baseline: name must be one of {sorted(BASELINES)}, got name={name!r}")
    cls_name, kwargs = BASELINES[name][_task_key("baseline", task)]
    cls = getattr(torch.optim, cls_name)

    def make(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return cls(params, **kwargs)

    make.settings = (cls_name, dict(kwargs))  # type: ignore[attr-defined]
    return make


def _check_seeds(seeds: Any) -> list[int]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise TypeError(
            f"evaluate: seeds must be an iterable of integers ≥ 0 (e.g. range(5)), got "
            f"seeds={seeds!r}"
        )
    out = [check_count("evaluate", "seeds[i]", s, minimum=0) for s in seeds]
    if not out:
        raise ValueError("evaluate: seeds must hold at least one seed, got an empty iterable")
    if len(set(out)) != len(out):
        raise ValueError(f"evaluate: seeds must be distinct, got seeds={out}")
    return out


def _t_interval(values: np.ndarray) -> tuple[float, float]:
    """mean ± t_{0.975, k−1}·sd/√k over k values (sd with k − 1); (nan, nan) for k = 1."""
    k = len(values)
    if k < 2:
        return (math.nan, math.nan)
    from scipy.stats import t

    half = float(t.ppf(0.975, k - 1) * values.std(ddof=1) / math.sqrt(k))
    m = float(values.mean())
    return (m - half, m + half)


def evaluate(
    net_or_name: Any,
    task: Any,
    problems: int = 100,
    seeds: Iterable[int] = range(5),
    steps: int = 100,
    *,
    out_mul: float | None = None,
    normalize: bool | None = None,
) -> dict[str, Any]:
    """F at step ``steps`` (the reference's counting: the loss before the ``steps``-th
    update, F(θ_{steps−1})), mean over ``problems`` fresh problems per test seed and over
    ``seeds`` (module docstring).

    ``net_or_name``: a net (HNNOptimizerNet or LSTMOptimizerNet; ``out_mul`` and
    ``normalize`` left None take :func:`reference_settings`), a :class:`MetaTrainResult`
    (its own out_mul and normalize), a checkpoint name of :func:`pretrained`, a baseline name
    ("sgd", "nag", "adam", "rmsprop", run as :func:`baseline`), or a factory
    ``lambda params: torch.optim...``.

    Returns ``{"mean", "ci", "per_seed", "curve"}``: ``per_seed`` the mean over problems per
    seed, ``mean`` their mean, ``ci`` the 95 % Student-t interval mean ± t_{0.975,k−1}·sd/√k
    over the k per-seed means ((nan, nan) for one seed), ``curve`` the mean over problems and
    seeds of F(θ_0), …, F(θ_{steps−1}).
    """
    problems = check_count("evaluate", "problems", problems)
    steps = check_count("evaluate", "steps", steps)
    seed_list = _check_seeds(seeds)
    if not callable(getattr(task, "sample", None)) or isinstance(task, type):
        raise TypeError(
            "evaluate: task must be a Task instance with sample(n, generator), such as "
            f"QuadraticTask(), got task={task!r}"
        )
    if isinstance(net_or_name, str) and net_or_name in CHECKPOINTS:
        net_or_name = pretrained(net_or_name)
    if isinstance(net_or_name, MetaTrainResult):
        out_mul = net_or_name.out_mul if out_mul is None else out_mul
        normalize = net_or_name.normalize if normalize is None else normalize
        net_or_name = net_or_name.net
    if isinstance(net_or_name, (HNNOptimizerNet, LSTMOptimizerNet)):
        ref = reference_settings(net_or_name, task)
        om = check_positive("evaluate", "out_mul", ref["out_mul"] if out_mul is None else out_mul)
        nz = check_flag(
            "evaluate", "normalize", ref["normalize"] if normalize is None else normalize
        )
        net = net_or_name

        def run(batch: Any) -> np.ndarray:
            return run_learned(net, batch, steps, om, nz)

    else:
        if out_mul is not None or normalize is not None:
            raise ValueError(
                "evaluate: out_mul and normalize apply to learned optimizers only, got "
                f"out_mul={out_mul!r}, normalize={normalize!r} for {net_or_name!r}"
            )
        if isinstance(net_or_name, str):
            if net_or_name not in BASELINES:
                raise ValueError(
                    f"evaluate: net_or_name must be a net, a MetaTrainResult, one of "
                    f"{sorted(BASELINES)} or of {list(CHECKPOINTS)}, got {net_or_name!r}"
                )
            factory = baseline(net_or_name, task)
        elif callable(net_or_name) and not isinstance(net_or_name, torch.nn.Module):
            factory = net_or_name
        else:
            raise TypeError(
                "evaluate: net_or_name must be a net, a MetaTrainResult, a name or an "
                f"optimizer factory, got {type(net_or_name).__name__}"
            )

        def run(batch: Any) -> np.ndarray:
            return run_torch(factory, batch, steps)

    curves = []
    for s in seed_list:
        batch = task.sample(problems, torch.Generator().manual_seed(EVAL_SEED + s))
        curves.append(run(batch)[:steps])  # F(θ_0) … F(θ_{steps−1}), (steps, problems)
    per_seed = np.array([float(c[-1].mean()) for c in curves])
    return {
        "mean": float(per_seed.mean()),
        "ci": _t_interval(per_seed),
        "per_seed": per_seed.tolist(),
        "curve": np.mean([c.mean(axis=1) for c in curves], axis=0),
    }


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(result: MetaTrainResult, path: str | Path, note: str = "") -> Path:
    """Write ``result`` (net kind and configuration, weights, out_mul, normalize, the
    meta-training's settings and curves, ``note``) to ``path`` for :func:`load_checkpoint`."""
    if not isinstance(result, MetaTrainResult):
        raise TypeError(
            f"save_checkpoint: result must be a MetaTrainResult, got {type(result).__name__}"
        )
    path = Path(path)
    torch.save(
        {
            "format": 1,
            "kind": _kind_of(result.net),
            "config": result.net.config(),
            "state_dict": {k: v.detach().clone() for k, v in result.net.state_dict().items()},
            "dtype": str(next(result.net.parameters()).dtype),
            "out_mul": float(result.out_mul),
            "normalize": bool(result.normalize),
            "settings": dict(result.settings),
            "validation": [float(v) for v in result.validation],
            "best_validation": float(result.best_validation),
            "meta_losses": [float(v) for v in result.meta_losses],
            "note": str(note),
        },
        path,
    )
    return path


def load_checkpoint(path: str | Path) -> MetaTrainResult:
    """The :class:`MetaTrainResult` that :func:`save_checkpoint` wrote to ``path`` (loaded
    with ``weights_only=True``: no code runs); ``settings["note"]`` holds its note."""
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != 1:
        raise ValueError(f"load_checkpoint: {str(path)!r} is not an odeopt.learned checkpoint")
    kind, cfg = data["kind"], data["config"]
    if kind not in ("hnn", "hnn_original", "lstm"):
        raise ValueError(f"load_checkpoint: {str(path)!r} holds an unknown net kind {kind!r}")
    if kind == "lstm":
        net = LSTMOptimizerNet(**cfg)
    else:
        net = HNNOptimizerNet(**cfg)
    dtype = getattr(torch, data["dtype"].removeprefix("torch."))
    net = net.to(dtype)
    net.load_state_dict(data["state_dict"])
    settings = dict(data["settings"])
    settings["note"] = data["note"]
    return MetaTrainResult(
        net=net,
        meta_losses=list(data["meta_losses"]),
        validation=list(data["validation"]),
        best_validation=float(data["best_validation"]),
        out_mul=float(data["out_mul"]),
        normalize=bool(data["normalize"]),
        settings=settings,
    )


def pretrained(name: str) -> MetaTrainResult:
    """A shipped checkpoint, meta-trained on ``QuadraticTask()`` by :func:`meta_train` with
    the reference's protocol (its defaults); of meta-training seeds 0–4, the one that scored
    best on held-out problems (``benchmarks/learned_table.py --part select``):

    * ``"hnn_quadratic"``: the pH-constrained cell;
    * ``"hnn_quadratic_original"``: the authors' cell (``constrained=False``);
    * ``"lstm_quadratic"``: the learning-to-learn LSTM.

    Use ``r.net`` with ``LearnedOptimizer(params, r.net, lr=r.out_mul, normalize=r.normalize)``
    or pass ``r`` (or the name) to :func:`evaluate`. ``r.settings`` records the budget it was
    trained with (iterations, problems per iteration, unroll, lr, out_mul, seed, wall
    seconds) and ``r.settings["note"]`` how it relates to the reference's budget.
    """
    if not isinstance(name, str) or name not in CHECKPOINTS:
        raise ValueError(f"pretrained: name must be one of {list(CHECKPOINTS)}, got name={name!r}")
    path = _CHECKPOINT_DIR / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained: the checkpoint {str(path)!r} is missing from this installation "
            "(setup.cfg's package_data ships odeopt/learned/checkpoints/*.pt)"
        )
    return load_checkpoint(path)
