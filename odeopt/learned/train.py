"""Meta-training and evaluation of the learned pH optimizer and of the learning-to-learn LSTM
(ALGORITHMS.md §4).

Meta-loss over an unroll window of T optimizee steps: L(φ) = Σ_t mean_b F_b(θ_t), with
θ_{t+1} = θ_t + out_mul·u_φ(∇F(θ_t), s_t) and s_t the optimizer's per-entry state (p for the
pH cell, (h₀, c₀, h₁, c₁) for the LSTM). As in learning-to-learn and the original code, the
optimizee's gradients enter the optimizer detached (no second derivatives); the
meta-gradient flows through θ_t and s_t. Adam updates φ after every window; the states are
detached between windows (truncated backpropagation through time).

The reference protocol (github.com/AfoninAndrei/OPT-ML, ``main.ipynb`` and ``training.py``)
is :func:`meta_train`'s default; :func:`reference_settings` gives its per-optimizer values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._checks import check_count, check_flag, check_positive
from .hnn import HNNOptimizerNet
from .lstm import LSTMOptimizerNet
from .tasks import ProblemBatch, Task

__all__ = [
    "MetaTrainResult",
    "hnn_update",
    "learned_update",
    "make_net",
    "meta_train",
    "reference_settings",
    "run_learned",
    "run_torch",
]

NET_KINDS = ("hnn", "hnn_original", "lstm")


def _check_net(where: str, net: Any) -> HNNOptimizerNet | LSTMOptimizerNet:
    if not isinstance(net, (HNNOptimizerNet, LSTMOptimizerNet)):
        raise TypeError(
            f"{where}: net must be an odeopt.learned.HNNOptimizerNet or LSTMOptimizerNet, "
            f"got net={type(net).__name__}"
        )
    return net


def _is_quadratic(task: Any) -> bool:
    return getattr(task, "name", "") == "quadratic"


def make_net(kind: str, task: Any = None, seed: int = 0) -> HNNOptimizerNet | LSTMOptimizerNet:
    """A fresh net of ``kind`` — "hnn" (the pH-constrained cell), "hnn_original" (the authors'
    cell, ``constrained=False``) or "lstm" (learning-to-learn) — initialised under
    ``torch.manual_seed(seed)`` (the global generator is restored afterwards), with
    LogSign preprocessing unless ``task`` is the quadratic task (the reference's choice for
    both optimizers)."""
    if kind not in NET_KINDS:
        raise ValueError(f"make_net: kind must be one of {NET_KINDS}, got kind={kind!r}")
    seed = check_count("make_net", "seed", seed, minimum=0)
    preprocess = task is not None and not _is_quadratic(task)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if kind == "lstm":
            return LSTMOptimizerNet(preprocess=preprocess)
        return HNNOptimizerNet(preprocess=preprocess, constrained=kind == "hnn")
    finally:
        torch.random.set_rng_state(state)


def reference_settings(net: Any, task: Any = None) -> dict[str, Any]:
    """The reference's meta-training and evaluation settings for ``net`` (a net, or "hnn",
    "hnn_original", "lstm") on ``task`` (OPT-ML's ``main.ipynb``):

    =====================  =========  ======  =========  =====================
    optimizer, task        unroll T   lr      out_mul    normalize p
    =====================  =========  ======  =========  =====================
    pH cell, quadratic     15         0.01    0.001      yes
    pH cell, networks      15         0.01    0.1 (*)    yes (*)
    LSTM, quadratic        20         0.003   1.0        (no p)
    LSTM, networks         20         0.01    0.1        (no p)
    =====================  =========  ======  =========  =====================

    (*) odeopt's departures on networks: the reference's MNIST run used out_mul 0.001 without
    normalisation; on the digits stand-in (64 inputs, not MNIST's 784) odeopt keeps the
    out_mul 0.1 and the normalisation it was tuned with (pass them to reproduce MNIST's).
    The reference also evaluates its MNIST LSTM with out_mul 1.0 after training it with 0.1
    — a slip; odeopt evaluates with the trained value.
    """
    if isinstance(net, str):
        if net not in NET_KINDS:
            raise ValueError(f"reference_settings: net must be one of {NET_KINDS}, got {net!r}")
        lstm = net == "lstm"
    else:
        lstm = isinstance(_check_net("reference_settings", net), LSTMOptimizerNet)
    quad = task is None or _is_quadratic(task)
    if lstm:
        return {
            "unroll": 20,
            "lr": 0.003 if quad else 0.01,
            "out_mul": 1.0 if quad else 0.1,
            "normalize": True,
        }
    return {"unroll": 15, "lr": 0.01, "out_mul": 0.001 if quad else 0.1, "normalize": True}


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


def initial_state(net: HNNOptimizerNet | LSTMOptimizerNet, w: torch.Tensor) -> tuple:
    """The zero state of ``net`` for one tensor ``w``: (p,) of w's shape for the pH cell,
    (h₀, c₀, h₁, c₁) of shape (w.numel(), hidden) for the LSTM."""
    if isinstance(net, LSTMOptimizerNet):
        return net.initial_state(w.numel(), w)
    return (torch.zeros_like(w),)


def learned_update(
    net: HNNOptimizerNet | LSTMOptimizerNet,
    grad: torch.Tensor,
    state: tuple,
    normalize: bool = True,
    batch_dims: int = 0,
) -> tuple[torch.Tensor, tuple]:
    """One learned step for one tensor, either net: (u, state') with u of ``grad``'s shape.

    The pH cell: ``state`` = (p,) and this is :func:`hnn_update`. The LSTM: ``state`` =
    (h₀, c₀, h₁, c₁), each (grad.numel(), hidden), one row per entry in ``grad.reshape(-1)``'s
    order (``normalize`` and ``batch_dims`` do not apply: the LSTM has no p). The net runs in
    its own dtype; u and the state come back in the gradient's.
    """
    if isinstance(net, HNNOptimizerNet):
        u, pn = hnn_update(net, grad, state[0], normalize, batch_dims)
        return u, (pn,)
    _check_net("learned_update", net)
    if not isinstance(grad, torch.Tensor) or not grad.dtype.is_floating_point:
        what = grad.dtype if isinstance(grad, torch.Tensor) else type(grad).__name__
        raise TypeError(f"learned_update: grad must be a real floating tensor, got {what}")
    rows = (grad.numel(), net.hidden)
    if (
        not isinstance(state, tuple)
        or len(state) != 4
        or any(not isinstance(s, torch.Tensor) or tuple(s.shape) != rows for s in state)
    ):
        items = state if isinstance(state, (tuple, list)) else [state]
        got = [tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__ for s in items]
        raise ValueError(
            f"learned_update: the LSTM's state must be a tuple (h0, c0, h1, c1) of tensors of "
            f"shape {rows} for grad.shape={tuple(grad.shape)}, got {got}"
        )
    dtype = next(net.parameters()).dtype
    u, new = net(grad.reshape(-1, 1).to(dtype), tuple(s.to(dtype) for s in state))
    return u.reshape(grad.shape).to(grad.dtype), tuple(s.to(grad.dtype) for s in new)


def run_learned(
    net: HNNOptimizerNet,
    problems: ProblemBatch,
    steps: int = 100,
    out_mul: float = 0.1,
    normalize: bool = True,
    window: int | None = None,
    on_window: Callable[[torch.Tensor], None] | None = None,
    train_remainder: bool = False,
) -> np.ndarray:
    """Run a learned optimizer (the pH cell or the LSTM) on a batch of problems; returns F at
    steps 0…steps, (steps+1, n): row k is F(θ_k), θ_0 the start.

    With ``window`` and ``on_window`` (meta-training) the graph is kept over each window of
    ``window`` steps, ``on_window(Σ_t mean_b F_b)`` is called at its end and the states are
    detached; otherwise the net runs without a graph. The last ``steps % window`` steps form
    a partial window: as in the reference, they are run but not trained on, unless
    ``train_remainder`` (then ``on_window`` is called for them too). ``steps`` is an integer
    ≥ 1 and ``out_mul`` finite and > 0; ``window`` without ``on_window`` is refused (it would
    do nothing).
    """
    _check_net("run_learned", net)
    _check_problems("run_learned", problems)
    steps = check_count("run_learned", "steps", steps)
    out_mul = check_positive("run_learned", "out_mul", out_mul)
    normalize = check_flag("run_learned", "normalize", normalize)
    train_remainder = check_flag("run_learned", "train_remainder", train_remainder)
    training = on_window is not None
    if training and not callable(on_window):
        raise TypeError(
            f"run_learned: on_window must be callable, got on_window={type(on_window).__name__}"
        )
    if training:
        if window is None:
            raise ValueError("run_learned: on_window needs window, an integer ≥ 1; got None")
        window = check_count("run_learned", "window", window)
        if window > steps and not train_remainder:
            raise ValueError(
                f"run_learned: window={window} > steps={steps} and train_remainder=False: "
                "on_window would never be called; lower window or pass train_remainder=True"
            )
    elif window is not None:
        raise ValueError(
            f"run_learned: window={window!r} is used only with on_window (meta-training); "
            "pass both or neither"
        )
    params = [w.detach().requires_grad_(True) for w in problems.initial()]
    moms = [initial_state(net, w) for w in params]
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
                u, st = learned_update(net, g.detach(), m, normalize, batch_dims=1)
                new_params.append(torch.add(w, u, alpha=out_mul))
                new_moms.append(st)
        params, moms = new_params, new_moms
        if training and (k + 1) % window == 0:
            on_window(acc)
            acc = None
            params = [w.detach().requires_grad_(True) for w in params]
            moms = [tuple(s.detach() for s in m) for m in moms]
        elif not training:
            params = [w.detach().requires_grad_(True) for w in params]
    if training and acc is not None and train_remainder:
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
    """The trained net (the best by validation), the meta-losses and validation curve, and
    what it must run with: ``out_mul`` (LearnedOptimizer's lr) and ``normalize``.
    ``settings`` records the meta-training's arguments (its budget) and its wall time in
    seconds (``settings["seconds"]``)."""

    net: HNNOptimizerNet | LSTMOptimizerNet
    meta_losses: list[float] = field(default_factory=list)
    validation: list[float] = field(default_factory=list)
    best_validation: float = float("inf")
    out_mul: float = 0.1
    normalize: bool = True
    settings: dict[str, Any] = field(default_factory=dict)


def meta_train(
    task: Task,
    net: HNNOptimizerNet | LSTMOptimizerNet | str | None = None,
    *,
    iterations: int = 2000,
    problems: int = 1,
    steps: int = 100,
    unroll: int | None = None,
    lr: float | None = None,
    out_mul: float | None = None,
    normalize: bool | None = None,
    validate_every: int = 20,
    validation_problems: int = 50,
    validation: str = "fresh",
    train_remainder: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> MetaTrainResult:
    """Meta-train a learned optimizer (module docstring) with Adam(lr) on ``task``.

    ``net``: a net to train in place, or "hnn" (the pH-constrained cell, the default),
    "hnn_original" (the authors' cell) or "lstm" (learning-to-learn), made by
    :func:`make_net` with ``seed``. ``unroll``, ``lr``, ``out_mul`` and ``normalize`` left
    None take the reference's values for that net and task (:func:`reference_settings`).

    Each iteration samples ``problems`` fresh optimizees and runs ``steps`` steps in windows
    of ``unroll`` (the last ``steps % unroll`` steps are trained on only with
    ``train_remainder``); every ``validate_every`` iterations the mean F over the ``steps``
    recorded losses F(θ_0)…F(θ_{steps−1}) on ``validation_problems`` problems is measured and
    the best weights are kept (the original's model selection). ``validation="fresh"`` draws
    new validation problems every time (from their own stream, seeded ``seed + 10_000``),
    ``"fixed"`` re-uses one batch (a less noisy selection). Deterministic given ``seed``.

    The defaults are the reference's quadratic protocol (OPT-ML ``main.ipynb``: ``fit(...,
    n_epochs=100, n_tests=50)`` with ``training.py``'s loop): 100 epochs × 20 = 2000
    iterations of one optimizee each, 100 steps, Adam after each complete window (steps
    91–100 when T = 15 are run but not trained on), model selection at the end of each epoch
    on 50 fresh problems. What differs: the problems come from seeded generators instead of
    torch's global one (the same distribution, other draws); the reference also evaluates 50
    problems after each of an epoch's first 19 iterations, results it discards (they change
    only its random stream); with ``problems`` > 1 the window's meta-loss averages over the
    optimizees (with the reference's one problem: its sum).

    Every argument is checked first (counts are integers ≥ 1, ``seed`` ≥ 0, ``lr`` and
    ``out_mul`` finite and > 0, flags are bools, ``task`` an instance with ``sample``): a
    TypeError or ValueError names the argument and its value.
    """
    import time

    if isinstance(task, type) or not callable(getattr(task, "sample", None)):
        what = f"the class {task.__name__}" if isinstance(task, type) else type(task).__name__
        raise TypeError(
            "meta_train: task must be a Task instance with sample(n, generator), such as "
            f"QuadraticTask() or DigitsMLPTask(), got task={what}"
        )
    kind = net if isinstance(net, str) else None
    if kind is not None and kind not in NET_KINDS:
        raise ValueError(f"meta_train: net must be a net or one of {NET_KINDS}, got net={net!r}")
    if net is not None and kind is None:
        _check_net("meta_train", net)
    iterations = check_count("meta_train", "iterations", iterations)
    problems = check_count("meta_train", "problems", problems)
    steps = check_count("meta_train", "steps", steps)
    validate_every = check_count("meta_train", "validate_every", validate_every)
    validation_problems = check_count("meta_train", "validation_problems", validation_problems)
    progress = check_flag("meta_train", "progress", progress)
    train_remainder = check_flag("meta_train", "train_remainder", train_remainder)
    if validation not in ("fresh", "fixed"):
        raise ValueError(
            f"meta_train: validation must be 'fresh' or 'fixed', got validation={validation!r}"
        )
    seed = check_count("meta_train", "seed", seed, minimum=0)
    ref = reference_settings(kind or (net if net is not None else "hnn"), task)
    unroll = check_count("meta_train", "unroll", ref["unroll"] if unroll is None else unroll)
    lr = check_positive("meta_train", "lr", ref["lr"] if lr is None else lr)
    out_mul = check_positive(
        "meta_train", "out_mul", ref["out_mul"] if out_mul is None else out_mul
    )
    normalize = check_flag(
        "meta_train", "normalize", ref["normalize"] if normalize is None else normalize
    )
    if steps < unroll and not train_remainder:
        raise ValueError(
            f"meta_train: steps={steps} < unroll={unroll} and train_remainder=False: no window "
            "of the unroll completes, so nothing would be trained; lower unroll or pass "
            "train_remainder=True"
        )
    gen = torch.Generator().manual_seed(seed)
    if net is None or kind is not None:
        net = make_net(kind or "hnn", task, seed)
    val_gen = torch.Generator().manual_seed(seed + 10_000)
    val_batch = task.sample(validation_problems, val_gen)
    _check_problems("meta_train", val_batch, "task.sample(n, generator)")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    settings = dict(
        net=_kind_of(net), task=getattr(task, "name", type(task).__name__),
        iterations=iterations, problems=problems, steps=steps, unroll=unroll, lr=lr,
        out_mul=out_mul, normalize=normalize, validate_every=validate_every,
        validation_problems=validation_problems, validation=validation,
        train_remainder=train_remainder, seed=seed,
    )  # fmt: skip
    result = MetaTrainResult(net=net, out_mul=out_mul, normalize=normalize, settings=settings)
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
    t0 = time.perf_counter()
    for it in range(iterations):
        batch = task.sample(problems, gen)
        run_learned(net, batch, steps, out_mul, normalize, unroll, window_step, train_remainder)
        if (it + 1) % validate_every == 0 or it + 1 == iterations:
            if validation == "fresh" and result.validation:  # a new batch after the first
                val_batch = task.sample(validation_problems, val_gen)
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
    settings["seconds"] = time.perf_counter() - t0
    return result


def _kind_of(net: HNNOptimizerNet | LSTMOptimizerNet) -> str:
    """ "hnn", "hnn_original" or "lstm"."""
    if isinstance(net, LSTMOptimizerNet):
        return "lstm"
    return "hnn" if net.constrained else "hnn_original"
