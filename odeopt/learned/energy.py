"""The energy view of the learned pH optimizer (issue 16, item 4; the paper's interpretability
argument): the Hamiltonian of its cell, the power it dissipates and the power its port
supplies, along an optimization run, next to the loss.

The pH cell (:class:`~odeopt.learned.HamiltonianCell`, d = 1, ``constrained=True``) on the
state x = (q, p) of every parameter entry, q = ∇F(θ_k) the gradient and p the optimizer's
previous (normalised) output, is the port-Hamiltonian system

    ẋ = (J − D)∇H(x) + [0; 1]·u,   J = [[0, 1], [−1, 0]],   D = KKᵀ ⪰ 0,   u = G(q),
    H(q, p) = ½M⁻¹p² + Φ(q),   Φ(q) = ∫₀^q V,   M⁻¹ = LᵀL,   ∇H = [V(q); M⁻¹p],

whose power balance (``net.cell.to_system().energy_balance()`` proves it symbolically) is

    dH/dt = ∇Hᵀẋ = −∇HᵀD∇H + yᵀu,   y = M⁻¹p   (∇HᵀJ∇H = 0: J is skew).

Each optimizer step evaluates this vector field once, at x_k, and reads the update from
ẋ(x_k); it does not integrate the cell. So along a run, per step k and problem b (sums over
the problem's entries):

* ``H[k]`` = Σ H(q_k, p_k), the cell's energy at its input of step k;
* ``dissipated[k]`` = −Σ ∇HᵀD∇H ≤ 0 and ``supplied[k]`` = Σ yᵀG(q), the two powers at x_k;
* ``dH_dt[k]`` = Σ ∇H(x_k)ᵀẋ(x_k), with ∇H by autograd of H and ẋ the cell's forward: the
  rate at which H would change if the cell flowed from x_k. It equals
  ``dissipated + supplied`` exactly in exact arithmetic (the identity above; to rounding in
  float64), and it is the time derivative of H along the cell's own flow (tested by finite
  differences of H on a fine-step integration of ẋ = f(x), error O(h²));
* ``loss[k]`` = F(θ_k).

H[k + 1] − H[k] is *not* the integral of these powers: between steps q jumps to the next
gradient and p to the normalised output. The trace reads the cell as a pH system at every
state it visits; that is what makes the learned optimizer's energy interpretable.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._checks import check_count, check_flag, check_positive
from .hnn import HNNOptimizerNet
from .train import MetaTrainResult, _check_problems, initial_state, learned_update
from .train import reference_settings as _reference_settings

__all__ = ["EnergyTrace", "energy_trace"]


@dataclass
class EnergyTrace:
    """:func:`energy_trace`'s record (module docstring): arrays of shape (steps, n) for n
    problems — ``loss``, ``H``, ``dissipated`` (−∇HᵀD∇H), ``supplied`` (yᵀG(q)), ``dH_dt``
    (∇Hᵀẋ) — and the cell's inputs ``q``, ``p`` of shape (steps, n, entries) (every
    parameter tensor's entries of a problem, concatenated); ``out_mul`` and ``normalize``
    the run's settings."""

    loss: np.ndarray
    H: np.ndarray
    dissipated: np.ndarray
    supplied: np.ndarray
    dH_dt: np.ndarray
    q: np.ndarray
    p: np.ndarray
    out_mul: float
    normalize: bool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """The number of recorded steps."""
        return int(self.loss.shape[0])

    def mean(self, name: str) -> np.ndarray:
        """The mean over problems of ``name`` (one of loss, H, dissipated, supplied, dH_dt),
        shape (steps,)."""
        if name not in ("loss", "H", "dissipated", "supplied", "dH_dt"):
            raise ValueError(
                "EnergyTrace.mean: name must be one of 'loss', 'H', 'dissipated', 'supplied', "
                f"'dH_dt', got name={name!r}"
            )
        return getattr(self, name).mean(axis=1)


def _resolve(net: Any, out_mul: float | None, normalize: bool | None) -> tuple:
    if isinstance(net, str):
        from .protocol import pretrained

        net = pretrained(net)
    if isinstance(net, MetaTrainResult):
        out_mul = net.out_mul if out_mul is None else out_mul
        normalize = net.normalize if normalize is None else normalize
        net = net.net
    if not isinstance(net, HNNOptimizerNet):
        raise TypeError(
            "energy_trace: net must be a pH HNNOptimizerNet, a MetaTrainResult holding one or "
            f"a checkpoint name such as 'hnn_quadratic', got net={type(net).__name__}"
        )
    if not net.constrained or net.preprocess:
        raise ValueError(
            "energy_trace: the energy view needs the pH-constrained cell on raw gradients "
            "(HNNOptimizerNet(preprocess=False, constrained=True)); got "
            f"preprocess={net.preprocess}, constrained={net.constrained} (the original cell is "
            "no pH system and with LogSign (d = 2) V need not be a gradient field, so there is "
            "no H)"
        )
    ref = _reference_settings(net)  # the quadratic's: the net has no preprocessing
    out_mul = check_positive(
        "energy_trace", "out_mul", ref["out_mul"] if out_mul is None else out_mul
    )
    normalize = check_flag(
        "energy_trace", "normalize", ref["normalize"] if normalize is None else normalize
    )
    return net, out_mul, normalize


def energy_trace(
    net: Any,
    problems: Any,
    steps: int = 100,
    *,
    out_mul: float | None = None,
    normalize: bool | None = None,
) -> EnergyTrace:
    """Run the learned optimizer ``net`` on the batch ``problems`` (``task.sample(n,
    generator)``) for ``steps`` steps, exactly as :func:`~odeopt.learned.run_learned` does
    (same arithmetic, in the net's dtype), and record at each step the loss and the energy
    terms of the cell at its input (module docstring), computed by a float64 copy of the cell.

    ``net``: a pH :class:`HNNOptimizerNet` without preprocessing (d = 1, the quadratic
    protocol's), a :class:`MetaTrainResult` holding one (its ``out_mul`` and ``normalize``)
    or a checkpoint name (``"hnn_quadratic"``). ``out_mul`` and ``normalize`` left None take
    the result's or :func:`~odeopt.learned.reference_settings`'s values.
    """
    net, out_mul, normalize = _resolve(net, out_mul, normalize)
    _check_problems("energy_trace", problems)
    steps = check_count("energy_trace", "steps", steps)
    cell = copy.deepcopy(net.cell).double().requires_grad_(False)
    params = [w.detach().requires_grad_(True) for w in problems.initial()]
    states = [initial_state(net, w) for w in params]
    n = int(params[0].shape[0])
    rec: dict[str, list[np.ndarray]] = {k: [] for k in ("loss", "H", "dis", "sup", "dH", "q", "p")}
    for k in range(steps):
        losses = problems.losses(params, k)
        rec["loss"].append(losses.detach().double().cpu().numpy())
        grads = torch.autograd.grad(losses.sum(), params)
        q = torch.cat([g.detach().reshape(n, -1) for g in grads], dim=1).double()
        p = torch.cat([s[0].detach().reshape(n, -1) for s in states], dim=1).double()
        b = cell.balance(q.reshape(-1, 1), p.reshape(-1, 1))
        with torch.no_grad():
            H = cell.hamiltonian(q.reshape(-1, 1), p.reshape(-1, 1)).reshape(n, -1).sum(1)
        rec["H"].append(H.numpy())
        rec["dis"].append(b["dissipated"].detach().reshape(n, -1).sum(1).numpy())
        rec["sup"].append(b["supplied"].detach().reshape(n, -1).sum(1).numpy())
        rec["dH"].append(b["dH_dt"].detach().reshape(n, -1).sum(1).numpy())
        rec["q"].append(q.numpy())
        rec["p"].append(p.numpy())
        with torch.no_grad():
            new_params, new_states = [], []
            for w, g, s in zip(params, grads, states, strict=True):
                u, st = learned_update(net, g.detach(), s, normalize, batch_dims=1)
                new_params.append(torch.add(w, u, alpha=out_mul))
                new_states.append(st)
        params = [w.detach().requires_grad_(True) for w in new_params]
        states = new_states
    return EnergyTrace(
        loss=np.stack(rec["loss"]),
        H=np.stack(rec["H"]),
        dissipated=np.stack(rec["dis"]),
        supplied=np.stack(rec["sup"]),
        dH_dt=np.stack(rec["dH"]),
        q=np.stack(rec["q"]),
        p=np.stack(rec["p"]),
        out_mul=float(out_mul),
        normalize=bool(normalize),
        info={"entries": int(q.shape[1]), "problems": n},
    )
