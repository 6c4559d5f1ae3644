"""Meta-training and evaluation of the learned pH optimizer (ALGORITHMS.md §4).

Meta-loss over an unroll window of T optimizee steps: L(φ) = Σ_t mean_b F_b(θ_t), with
θ_{t+1} = θ_t + out_mul·u_φ(∇F(θ_t), p_t). As in learning-to-learn and the original code,
the optimizee's gradients enter the optimizer detached (no second derivatives); the
meta-gradient flows through θ_t. Adam updates φ after every window; the states are
detached between windows (truncated backpropagation through time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._checks import check_count, check_flag, check_positive
from .hnn import HNNOptimizerNet
from .tasks import ProblemBatch, Task

__all__ = ["MetaTrainResult", "hnn_update", "meta_train", "run_learned", "run_torch"]


def _check_net(where: str, net: Any) -> HNNOptimizerNet:
    if not isinstance(net, HNNOptimizerNet):
        raise TypeError(
            f"{where}: net must be an odeopt.learned.HNNOptimizerNet, got net={type(net).__name__}"
        )
    return net


def _check_problems(where: str, problems: Any, name: str = "problems") -> ProblemBatch:
    """A batch of problems has ``initial()`` and ``losses(params, step)``; a Task (which only
    samples batches) is the usual mistake."""
    if callable(getattr(problems, "initial", None)) and callable(getattr(problems, "losses", None)):
        return problems
    hint = (
        " (a Task: pass task.sample(n, torch.Generator().manual_seed(0)))"
        if hasattr(problems, "sample")
        else ""
    )
    raise TypeError(
        f"{where}: {name} must be a batch of problems with initial() and losses(params, "
        f"step), got {name}={type(problems).__name__}{hint}"
    )


def _normalize(p: torch.Tensor, batch_dims: int) -> torch.Tensor:
    """p/|p| per tensor (per problem when ``batch_dims`` = 1); a zero tensor stays zero."""
    flat = p.reshape(*p.shape[:batch_dims], -1)
    norm = flat.norm(dim=-1, keepdim=True)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    return (flat / safe).reshape(p.shape)


def hnn_update(
    net: HNNOptimizerNet,
    grad: torch.Tensor,
    p_prev: torch.Tensor,
    normalize: bool = True,
    batch_dims: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One learned step for one tensor: (u, p_next), both of ``grad``'s shape.

    u and p_next are the net's outputs for every entry (``HNNOptimizerNet``); with
    ``normalize`` (the original's default) p_next is divided by its norm over the tensor
    (over each problem's tensor when ``batch_dims`` = 1). The step is θ ← θ + out_mul·u.
    ``grad`` and ``p_prev`` must be real floating tensors of one shape.
    """
    _check_net("hnn_update", net)
    for name, x in (("grad", grad), ("p_prev", p_prev)):
        if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
            what = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"hnn_update: {name} must be a real floating tensor, got {what}")
    if grad.shape != p_prev.shape:
        raise ValueError(
            f"hnn_update: grad and p_prev must have one shape, got grad.shape="
            f"{tuple(grad.shape)} and p_prev.shape={tuple(p_prev.shape)}"
        )
    if batch_dims not in (0, 1) or isinstance(batch_dims, bool):
        raise ValueError(f"hnn_update: batch_dims must be 0 or 1, got batch_dims={batch_dims!r}")
    dtype = next(net.parameters()).dtype  # the net's dtype; results in the gradient's
    u, pn = net(grad.reshape(-1, 1).to(dtype), p_prev.reshape(-1, 1).to(dtype))
    u, pn = u.reshape(grad.shape).to(grad.dtype), pn.reshape(grad.shape).to(grad.dtype)
    if normalize:
        pn = _normalize(pn, batch_dims)
    return u, pn


def run_learned(
    net: HNNOptimizerNet,
    problems: ProblemBatch,
    steps: int = 100,
    out_mul: float = 0.1,
    normalize: bool = True,
    window: int | None = None,
    on_window: Callable[[torch.Tensor], None] | None = None,
) -> np.ndarray:
    """Run the learned optimizer on a batch of problems; returns F at steps 0…steps, (steps+1, n).

    With ``window`` and ``on_window`` (meta-training) the graph is kept over each window of
    ``window`` steps, ``on_window(Σ_t mean_b F_b)`` is called at its end and the states are
    detached; otherwise the net runs without a graph. ``steps`` is an integer ≥ 1 and
    ``out_mul`` finite and > 0; ``window`` without ``on_window`` is refused (it would do
    nothing).
    """
    _check_net("run_learned", net)
    _check_problems("run_learned", problems)
    steps = check_count("run_learned", "steps", steps)
    out_mul = check_positive("run_learned", "out_mul", out_mul)
    normalize = check_flag("run_learned", "normalize", normalize)
    training = on_window is not None
    if training and not callable(on_window):
        raise TypeError(
            f"run_learned: on_window must be callable, got on_window={type(on_window).__name__}"
        )
    if training:
        if window is None:
            raise ValueError("run_learned: on_window needs window, an integer ≥ 1; got None")
        window = check_count("run_learned", "window", window)
    elif window is not None:
        raise ValueError(
            f"run_learned: window={window!r} is used only with on_window (meta-training); "
            "pass both or neither"
        )
    params = [w.detach().requires_grad_(True) for w in problems.initial()]
    moms = [torch.zeros_like(w) for w in params]
    history = []
    acc: torch.Tensor | None = None
    for k in range(steps):
        losses = problems.losses(params, k)
        history.append(losses.detach().cpu().numpy())
        if training:
            acc = losses.mean() if acc is None else acc + losses.mean()
        grads = torch.autograd.grad(losses.sum(), params, retain_graph=training)
        with torch.set_grad_enabled(training):
            new_params, new_moms = [], []
            for w, g, m in zip(params, grads, moms, strict=True):
                u, pn = hnn_update(net, g.detach(), m, normalize, batch_dims=1)
                new_params.append(torch.add(w, u, alpha=out_mul))
                new_moms.append(pn)
        params, moms = new_params, new_moms
        if training and (k + 1) % window == 0:
            on_window(acc)
            acc = None
            params = [w.detach().requires_grad_(True) for w in params]
            moms = [m.detach() for m in moms]
        elif not training:
            params = [w.detach().requires_grad_(True) for w in params]
    if training and acc is not None:
        on_window(acc)
    with torch.no_grad():
        history.append(problems.losses(params, steps).cpu().numpy())
    return np.stack(history)


def run_torch(
    optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    problems: ProblemBatch,
    steps: int = 100,
) -> np.ndarray:
    """A torch.optim optimizer on the same batch (coordinate-wise optimizers treat every
    problem independently); F at steps 0…steps, (steps+1, n). ``optimizer`` maps the list of
    parameters to an optimizer (e.g. ``lambda ps: torch.optim.SGD(ps, lr=0.01)``)."""
    if not callable(optimizer) or isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            "run_torch: optimizer must be a function of the parameter list that returns a "
            "torch.optim.Optimizer (e.g. lambda ps: torch.optim.SGD(ps, lr=0.01)), "
            f"got optimizer={type(optimizer).__name__}"
        )
    _check_problems("run_torch", problems)
    steps = check_count("run_torch", "steps", steps)
    params = [w.detach().clone().requires_grad_(True) for w in problems.initial()]
    opt = optimizer(params)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(
            "run_torch: optimizer(params) must return a torch.optim.Optimizer, "
            f"got {type(opt).__name__}"
        )
    history = []
    for k in range(steps):
        opt.zero_grad()
        losses = problems.losses(params, k)
        history.append(losses.detach().cpu().numpy())
        losses.sum().backward()
        opt.step()
    with torch.no_grad():
        history.append(problems.losses(params, steps).cpu().numpy())
    return np.stack(history)


@dataclass
class MetaTrainResult:
    """The trained net (the best by validation), the meta-losses and validation curve."""

    net: HNNOptimizerNet
    meta_losses: list[float] = field(default_factory=list)
    validation: list[float] = field(default_factory=list)
    best_validation: float = float("inf")
    out_mul: float = 0.1


def meta_train(
    task: Task,
    net: HNNOptimizerNet | None = None,
    *,
    iterations: int = 200,
    problems: int = 16,
    steps: int = 100,
    unroll: int = 15,
    lr: float = 0.01,
    out_mul: float = 0.1,
    normalize: bool = True,
    validate_every: int = 20,
    validation_problems: int = 32,
    seed: int = 0,
    progress: bool = False,
) -> MetaTrainResult:
    """Meta-train a learned pH optimizer (module docstring) with Adam(lr) on ``task``.

    Each iteration samples ``problems`` fresh optimizees and runs ``steps`` steps in windows
    of ``unroll``; every ``validate_every`` iterations the mean F over ``steps`` steps on a
    fixed validation batch is measured and the best weights are kept (the original's model
    selection). Deterministic given ``seed``.

    Every argument is checked first (counts are integers ≥ 1, ``seed`` ≥ 0, ``lr`` and
    ``out_mul`` finite and > 0, flags are bools, ``task`` an instance with ``sample``): a
    TypeError or ValueError names the argument and its value.
    """
    if isinstance(task, type) or not callable(getattr(task, "sample", None)):
        what = f"the class {task.__name__}" if isinstance(task, type) else type(task).__name__
        raise TypeError(
            "meta_train: task must be a Task instance with sample(n, generator), such as "
            f"QuadraticTask() or DigitsMLPTask(), got task={what}"
        )
    if net is not None:
        _check_net("meta_train", net)
    iterations = check_count("meta_train", "iterations", iterations)
    problems = check_count("meta_train", "problems", problems)
    steps = check_count("meta_train", "steps", steps)
    unroll = check_count("meta_train", "unroll", unroll)
    validate_every = check_count("meta_train", "validate_every", validate_every)
    validation_problems = check_count("meta_train", "validation_problems", validation_problems)
    lr = check_positive("meta_train", "lr", lr)
    out_mul = check_positive("meta_train", "out_mul", out_mul)
    normalize = check_flag("meta_train", "normalize", normalize)
    progress = check_flag("meta_train", "progress", progress)
    seed = check_count("meta_train", "seed", seed, minimum=0)
    gen = torch.Generator().manual_seed(seed)
    if net is None:
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        net = HNNOptimizerNet(preprocess=getattr(task, "name", "") != "quadratic")
        torch.random.set_rng_state(torch_state)
    val_batch = task.sample(validation_problems, torch.Generator().manual_seed(seed + 10_000))
    _check_problems("meta_train", val_batch, "task.sample(n, generator)")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    result = MetaTrainResult(net=net, out_mul=out_mul)
    best: dict[str, Any] | None = None

    def window_step(acc: torch.Tensor) -> None:
        if not torch.isfinite(acc):
            raise FloatingPointError(
                f"meta_train: the meta-loss became {float(acc)} (the optimizee diverged); "
                f"lower out_mul ({out_mul}) or lr ({lr})"
            )
        opt.zero_grad()
        acc.backward()
        opt.step()
        result.meta_losses.append(float(acc.detach()))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=iterations, desc="meta-train")
    for it in range(iterations):
        run_learned(net, task.sample(problems, gen), steps, out_mul, normalize, unroll, window_step)
        if (it + 1) % validate_every == 0 or it + 1 == iterations:
            val = float(run_learned(net, val_batch, steps, out_mul, normalize)[:-1].mean())
            result.validation.append(val)
            if val < result.best_validation:
                result.best_validation = val
                best = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if best is not None:
        net.load_state_dict(best)
    return result
