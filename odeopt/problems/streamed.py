"""Objectives whose data change with time: streamed samples or batches (Massaroli's mode)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..arrays import arrays_of

__all__ = ["Streamed", "streamed"]


class Streamed:
    """F(θ, t) = F_k(θ) with k = ⌊t / period⌋ mod K: the parts take turns, each for one
    ``period`` of time (data arriving as a stream; H becomes time-varying).

    ``value_and_grad(theta, t)`` takes t as a scalar or one time per row (shape (batch,) or
    (batch, 1)); :func:`odeopt.integrate` passes it (the objective is ``time_dependent``).
    Within one period the system is the batch one, so its energy balance holds there; at the
    switching times H jumps with the data. The objective is discontinuous in t there: a
    multi-stage scheme whose stages straddle a switch is first-order across it (the data of
    t = k·period are the k-th part's).
    """

    time_dependent = True

    def __init__(self, parts: Sequence[Any], period: float, name: str = "streamed") -> None:
        if not parts:
            raise ValueError("streamed: give at least one part")
        if not period > 0:
            raise ValueError(f"streamed: period must be positive, got {period}")
        dims = {p.dim for p in parts}
        if len(dims) != 1:
            raise ValueError(f"streamed: the parts disagree on the dimension: {sorted(dims)}")
        self.parts = list(parts)
        self.period = float(period)
        self.dim = dims.pop()
        self.name = name
        self.domain = getattr(parts[0], "domain", (-1.0, 1.0))

    def index(self, t: Any) -> np.ndarray:
        """k(t) per row."""
        tt = np.asarray(arrays_of(t).to_numpy(t), dtype=float)
        return (np.floor(tt.reshape(-1) / self.period + 1e-12).astype(np.int64)) % len(self.parts)

    def value_and_grad(self, theta: Any, t: Any = 0.0) -> tuple[Any, Any]:
        k = self.index(t)
        if k.size == 1:
            return self.parts[int(k[0])].value_and_grad(theta)
        F, g = None, None
        for part in np.unique(k):
            index = arrays_of(theta).index(k == part, theta)
            Fp, gp = self.parts[int(part)].value_and_grad(theta[index])
            if F is None:
                F = _empty_like(Fp, theta.shape[0])
                g = _empty_like(gp, theta.shape[0])
            F[index], g[index] = Fp, gp
        return F, g

    def value(self, theta: Any, t: Any = 0.0) -> Any:
        return self.value_and_grad(theta, t)[0]

    def hvp(self, theta: Any, v: Any, t: Any = 0.0) -> Any:
        """∇²F_k(θ)·v per row, k = k(t) (see :meth:`derivative`)."""
        return self.derivative(theta, v, t=t)

    def derivative(self, theta: Any, *vectors: Any, t: Any = 0.0) -> Any:
        """∇^{j+1}F_k(θ)[v₁, …, v_j] per row with the part k = k(t) of each row's time."""
        k = self.index(t)
        if k.size == 1:
            return self.parts[int(k[0])].derivative(theta, *vectors)
        out = None
        for part in np.unique(k):
            index = arrays_of(theta).index(k == part, theta)
            D = self.parts[int(part)].derivative(theta[index], *(v[index] for v in vectors))
            if out is None:
                out = _empty_like(D, theta.shape[0])
            out[index] = D
        return out

    def __repr__(self) -> str:
        return f"Streamed({len(self.parts)} parts, period {self.period})"


def _empty_like(x: Any, n: int) -> Any:
    """A buffer of n rows shaped, typed (and placed) like the rows of ``x``; every row is
    written by the caller (NaN until then)."""
    a = arrays_of(x)
    x = x if a.torch else np.asarray(x)
    return a.empty((n, *x.shape[1:]), x)


def streamed(problem: Any, batch_size: int, period: float, seed: int = 0) -> Streamed:
    """A :class:`~odeopt.problems.torch_module.TorchModuleProblem` (e.g. :func:`blobs`) cut
    into batches of ``batch_size`` rows (shuffled with ``seed``) that arrive one per
    ``period``: Massaroli's streamed mode (batch_size = 1 is per sample)."""
    from .torch_module import TorchModuleProblem

    if not isinstance(problem, TorchModuleProblem):
        raise TypeError("streamed() cuts the data of a torch_module problem (e.g. blobs())")
    n = len(problem.inputs)
    if not 1 <= batch_size <= n:
        raise ValueError(f"streamed: batch_size must be in [1, {n}], got {batch_size}")
    order = np.random.default_rng(seed).permutation(n)
    parts = []
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        part = TorchModuleProblem(
            problem.model,
            problem.inputs[rows],
            problem.targets[rows],
            problem.loss_fn,
            f"{problem.name}[{start}:{start + len(rows)}]",
            problem.domain,
        )
        parts.append(part)
    out = Streamed(parts, period, f"streamed {problem.name}")
    if hasattr(problem, "accuracy"):
        out.accuracy = problem.accuracy  # type: ignore[attr-defined]
    return out
