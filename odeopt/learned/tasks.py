"""Optimizee families for meta-training: many independent problems batched in one tensor.

Each task samples ``n`` problems at once; their parameters are tensors with a leading
problem axis, and ``losses(params, step)`` returns one loss per problem, so the gradient of
their sum is every problem's own gradient (the learned optimizer is coordinate-wise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from ._checks import check_count, check_float_dtype, check_generator

__all__ = ["DigitsMLPTask", "ProblemBatch", "QuadraticTask", "Task"]


class ProblemBatch(Protocol):
    n: int

    def initial(self) -> list[torch.Tensor]:
        """Starting parameters, each with the problem axis first."""
        ...

    def losses(self, params: list[torch.Tensor], step: int) -> torch.Tensor:
        """F_b(θ_b) for every problem b (shape (n,)); ``step`` picks the minibatch."""
        ...


class Task(Protocol):
    name: str

    def sample(self, n: int, generator: torch.Generator) -> ProblemBatch: ...


def _check_name(where: str, name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{where}: name must be a string, got name={name!r}")


@dataclass
class _Quadratics:
    W: torch.Tensor  # (n, dim, dim)
    y: torch.Tensor  # (n, dim)

    @property
    def n(self) -> int:
        return self.W.shape[0]

    def initial(self) -> list[torch.Tensor]:
        return [torch.zeros_like(self.y)]

    def losses(self, params: list[torch.Tensor], step: int) -> torch.Tensor:
        (theta,) = params
        r = torch.einsum("bij,bj->bi", self.W, theta) - self.y
        return (r * r).sum(-1)


@dataclass
class QuadraticTask:
    """F(θ) = |Wθ − y|², W ∈ ℝ^{d×d} and y ∈ ℝ^d with i.i.d. N(0, 1) entries, θ₀ = 0 (the
    learning-to-learn benchmark, d = 10).

    The defaults are the reference's task (OPT-ML ``QuadraticLoss``/``QuadOptimizee``: d = 10,
    standard normal W and y, θ₀ = 0, float32). The one departure: problems are drawn from the
    caller's ``torch.Generator`` (reproducible, and many at once) instead of the global
    generator, so the draws themselves differ from the reference's."""

    dim: int = 10
    dtype: torch.dtype = torch.float32
    name: str = "quadratic"

    def __post_init__(self) -> None:
        self.dim = check_count("QuadraticTask", "dim", self.dim)
        check_float_dtype("QuadraticTask", "dtype", self.dtype)
        _check_name("QuadraticTask", self.name)

    def sample(self, n: int, generator: torch.Generator) -> _Quadratics:
        """``n`` ≥ 1 problems drawn with ``generator`` (a torch.Generator)."""
        n = check_count("QuadraticTask.sample", "n", n)
        check_generator("QuadraticTask.sample", "generator", generator)
        W = torch.randn(n, self.dim, self.dim, generator=generator, dtype=self.dtype)
        y = torch.randn(n, self.dim, generator=generator, dtype=self.dtype)
        return _Quadratics(W, y)


@dataclass
class _MLPs:
    X: torch.Tensor  # (samples, features)
    Y: torch.Tensor  # (samples,)
    init: list[torch.Tensor]
    batches: torch.Tensor  # (steps, n, batch) sample indices
    activation: str

    @property
    def n(self) -> int:
        return self.init[0].shape[0]

    def initial(self) -> list[torch.Tensor]:
        return [w.clone() for w in self.init]

    def losses(self, params: list[torch.Tensor], step: int) -> torch.Tensor:
        W1, b1, W2, b2 = params
        idx = self.batches[step % self.batches.shape[0]]  # (n, batch)
        x = self.X[idx]  # (n, batch, features)
        h = torch.baddbmm(b1.unsqueeze(1), x, W1)
        h = torch.sigmoid(h) if self.activation == "sigmoid" else torch.relu(h)
        logits = torch.baddbmm(b2.unsqueeze(1), h, W2)  # (n, batch, classes)
        lp = torch.log_softmax(logits, dim=-1)
        return -lp.gather(-1, self.Y[idx].unsqueeze(-1)).squeeze(-1).mean(-1)


@dataclass
class DigitsMLPTask:
    """Cross-entropy of a 64–hidden–10 MLP on scikit-learn's bundled 8×8 digits (pixels/16),
    minibatches of ``batch`` drawn per problem for each of ``steps`` steps (a longer run
    cycles through them; the loss after the last step reuses the first), weights and biases
    initialised as torch.nn.Linear does (uniform ±1/√fan_in). ``split`` picks the first
    1000 images ("train", for meta-training) or the remaining 797 ("test"). The stand-in
    for the original's MNIST 784-20-10 (no downloads here); ``activation`` "sigmoid" or
    "relu" (the transfer test)."""

    hidden: int = 20
    activation: str = "sigmoid"
    batch: int = 128
    split: str = "train"
    steps: int = 100
    dtype: torch.dtype = torch.float32
    name: str = "digits_mlp"

    def __post_init__(self) -> None:
        self.hidden = check_count("DigitsMLPTask", "hidden", self.hidden)
        self.batch = check_count("DigitsMLPTask", "batch", self.batch)
        self.steps = check_count("DigitsMLPTask", "steps", self.steps)
        check_float_dtype("DigitsMLPTask", "dtype", self.dtype)
        _check_name("DigitsMLPTask", self.name)
        if self.activation not in ("sigmoid", "relu"):
            raise ValueError(
                "DigitsMLPTask: activation must be 'sigmoid' or 'relu', "
                f"got activation={self.activation!r}"
            )
        if self.split not in ("train", "test"):
            raise ValueError(
                f"DigitsMLPTask: split must be 'train' or 'test', got split={self.split!r}"
            )
        from sklearn.datasets import load_digits

        X, Y = load_digits(return_X_y=True)
        part = slice(0, 1000) if self.split == "train" else slice(1000, None)
        self._X = torch.tensor(X[part] / 16.0, dtype=self.dtype)
        self._Y = torch.tensor(Y[part], dtype=torch.long)

    def sample(self, n: int, generator: torch.Generator) -> _MLPs:
        """``n`` ≥ 1 MLPs (initial weights and minibatch indices) drawn with ``generator``."""
        n = check_count("DigitsMLPTask.sample", "n", n)
        check_generator("DigitsMLPTask.sample", "generator", generator)
        f, h, c = self._X.shape[1], self.hidden, 10

        def uniform(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
            b = 1.0 / math.sqrt(fan_in)
            return (torch.rand(shape, generator=generator, dtype=self.dtype) * 2 - 1) * b

        init = [uniform((n, f, h), f), uniform((n, h), f)] + [
            uniform((n, h, c), h),
            uniform((n, c), h),
        ]
        batches = torch.randint(
            0, self._X.shape[0], (self.steps, n, self.batch), generator=generator
        )
        return _MLPs(self._X, self._Y, init, batches, self.activation)
