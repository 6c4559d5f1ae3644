"""The learning-to-learn baseline: Andrychowicz et al. (2016)'s coordinate-wise LSTM optimizer,
as the reference (github.com/AfoninAndrei/OPT-ML, ``Optimizer_LSTM``) runs it against the
learned pH optimizer (ALGORITHMS.md §4).

Every parameter entry carries its own state (h₀, c₀, h₁, c₁) of a two-layer LSTM with 20
hidden units whose weights all entries share:

    x = pre(g)                      (LogSign(g) with ``preprocess``, else g itself)
    (h₀, c₀) ← LSTMCell₀(x, (h₀, c₀)),   (h₁, c₁) ← LSTMCell₁(h₀, (h₁, c₁))
    u = W·h₁ + b                     (a linear output)
    θ ← θ + out_mul·u                (out_mul: the output's scale)

pre is Andrychowicz et al.'s Appendix A preprocessing with p = 10: x ↦ (log|x|/p, sign x) if
|x| ≥ e^{−p}, else (−1, e^p·x). The state starts at zero. It is meta-trained by the same
:func:`~odeopt.learned.meta_train` as the pH cell, with the optimizee's gradients detached
(no second derivatives, as in the reference and the paper).

Parameter counts: 5221 for raw gradients, 5301 with preprocessing (the reference's).
Departures from the reference:

* LogSign computes log|x| where the reference takes log(|x| + 10⁻⁸) (a relative change
  below 2·10⁻⁴ of the first input, on |x| ≥ e^{−10}).
* The meta-gradient. Without preprocessing (the quadratic protocol) the reference feeds the
  LSTM a tensor that shares memory with θ.grad. At the first step of each window θ is a
  leaf, so every later step's ``loss.backward()`` adds ∂F(θ_k)/∂θ into that memory in place,
  and the backward pass of the first layer's input weights reads this sum instead of the
  gradient the forward pass used (autograd cannot see it: the tensor comes from ``.data``).
  Measured on the reference's own loop, float64, same weights and problem: the input weights'
  meta-gradient differs from the true one by 99 % (relative), every other parameter's
  agrees to 10⁻¹⁵; copying the gradient first makes all agree to 4·10⁻¹⁶. odeopt feeds the
  tensor ``torch.autograd.grad`` returns (nothing writes to it later), and its
  meta-gradient matches central differences of the meta-loss
  (tests/learned/test_protocol.py). The pH cell is not affected (its input is
  concatenated, a copy); with preprocessing neither is the LSTM.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._checks import check_count, check_flag, check_positive
from .hnn import LogSign

__all__ = ["LSTMOptimizerNet"]


class LSTMOptimizerNet(nn.Module):
    """Andrychowicz et al.'s coordinate-wise LSTM optimizer (module docstring):
    ``forward(g, state) → (u, state')`` for one entry per row, g and u of shape (n, 1) and the
    state a tuple (h₀, c₀, h₁, c₁) of (n, hidden) tensors.

    ``preprocess`` feeds LogSign(g) (two inputs per entry, P its p); ``hidden`` is the width
    of both layers (20 in the paper and the reference).
    """

    state_names = ("h0", "c0", "h1", "c1")

    def __init__(self, preprocess: bool = False, hidden: int = 20, P: float = 10.0) -> None:
        super().__init__()
        self.preprocess = check_flag("LSTMOptimizerNet", "preprocess", preprocess)
        self.hidden = check_count("LSTMOptimizerNet", "hidden", hidden)
        self.P = check_positive("LSTMOptimizerNet", "P", P)
        d = 2 if self.preprocess else 1
        self.pre = LogSign(self.P) if self.preprocess else nn.Identity()
        self.recurs = nn.LSTMCell(d, self.hidden)
        self.recurs2 = nn.LSTMCell(self.hidden, self.hidden)
        self.output = nn.Linear(self.hidden, 1)

    def config(self) -> dict[str, Any]:
        """The constructor's arguments (what a checkpoint needs to rebuild the net)."""
        return {"preprocess": self.preprocess, "hidden": self.hidden, "P": self.P}

    def initial_state(self, rows: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The zero state (h₀, c₀, h₁, c₁) for ``rows`` entries, in ``like``'s dtype and
        device."""
        z = torch.zeros(rows, self.hidden, dtype=like.dtype, device=like.device)
        return (z, z, z, z)

    def forward(
        self, g: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h0, c0, h1, c1 = state
        x = self.pre(g)
        # torch.lstm_cell is what nn.LSTMCell runs; the generated source calls it too
        h0, c0 = torch.lstm_cell(
            x,
            (h0, c0),
            self.recurs.weight_ih,
            self.recurs.weight_hh,
            self.recurs.bias_ih,
            self.recurs.bias_hh,
        )
        h1, c1 = torch.lstm_cell(
            h0,
            (h1, c1),
            self.recurs2.weight_ih,
            self.recurs2.weight_hh,
            self.recurs2.bias_ih,
            self.recurs2.bias_hh,
        )
        return self.output(h1), (h0, c0, h1, c1)
