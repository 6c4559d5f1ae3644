"""Helpers shared by test modules in several directories.

Imported as ``from helpers import ...``: pytest puts ``tests/`` on ``sys.path`` when it loads
``tests/conftest.py`` (the default "prepend" import mode), which it does for every test below
``tests/``, whatever the working directory."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from odeopt import problems


def flat(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """The tensors, detached, flattened and concatenated into one vector."""
    return torch.cat([x.detach().flatten() for x in tensors])


def run_steps(
    opt: torch.optim.Optimizer,
    model: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    on_step: Callable[[int, torch.optim.Optimizer], None] | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """``steps`` calls of ``opt.step(closure)`` on the cross-entropy of ``model(X)`` against
    ``y`` (``on_step(k, opt)`` before step k); returns the flattened parameters after them and
    the loss each closure call returned."""
    losses = []
    for k in range(steps):
        if on_step is not None:
            on_step(k, opt)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X), y)
            loss.backward()
            return loss

        losses.append(opt.step(closure).item())
    return flat(model.parameters()), losses


def nan_beyond(limit: float) -> problems.Problem:
    """F = −½θ² (ascent: |θ| grows as eᵗ), undefined (NaN) where θ > limit; ∇F stays finite."""

    def value(th):
        F = -0.5 * (th**2).sum(-1)
        if isinstance(th, torch.Tensor):
            return torch.where(th[:, 0] > limit, torch.full_like(F, float("nan")), F)
        return np.where(th[:, 0] > limit, np.nan, F)

    return problems.from_functions(value, lambda th: -th, dim=1)


def bensaid_runs(max_steps: int = 5000, gd_steps: int = 2000) -> dict:
    """GD (Euler, h = 0.1, ``gd_steps`` steps) and LC_EGD (Bensaid's protocol: first step
    0.1, |∇F| < 1e-4, at most ``max_steps``) as study runs."""
    import odeopt as oo

    gf = oo.zoo.gradient_flow()
    return {
        "GD": oo.Run(gf, "euler", h=0.1, steps=gd_steps),
        "LC_EGD": oo.Run(
            gf,
            oo.schemes.EnergyDecrease("euler"),
            t_span=(0, 1e8),
            h=0.1,
            gtol=1e-4,
            max_steps=max_steps,
        ),
    }
