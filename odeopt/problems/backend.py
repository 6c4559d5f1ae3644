"""One array vocabulary for numpy and torch, so that each objective is written once.

:func:`prepare` looks at θ and returns the namespace for its type together with θ as a floating
array: numpy float16/32/64 and torch tensors keep their dtype (and device); integer or boolean
input is promoted to float64 (numpy) or to torch's default dtype. Reductions act on the last
axis, the coordinate axis of a (batch, dim) array. Arithmetic operators, ``@``, indexing and
Python-float constants behave alike in both libraries and are used directly.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["Namespace", "NumpyNamespace", "TorchNamespace", "is_torch", "prepare"]


def is_torch(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (torch is not imported for the check)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


class NumpyNamespace:
    """The operations the objectives use, bound to numpy."""

    name = "numpy"
    exp = staticmethod(np.exp)
    cos = staticmethod(np.cos)
    sin = staticmethod(np.sin)
    sqrt = staticmethod(np.sqrt)
    where = staticmethod(np.where)

    @staticmethod
    def sum(x: Any) -> Any:
        """Σ over the last axis."""
        return np.sum(x, axis=-1)

    @staticmethod
    def mean(x: Any) -> Any:
        """Mean over the last axis."""
        return np.mean(x, axis=-1)

    @staticmethod
    def stack(columns: list[Any]) -> Any:
        """Columns of shape (batch,) → one array of shape (batch, len(columns))."""
        return np.stack(columns, axis=-1)

    @staticmethod
    def constant(value: Any, like: Any) -> Any:
        """``value`` as an array with the dtype of ``like``."""
        return np.asarray(value, dtype=like.dtype)


class TorchNamespace:
    """The same operations, bound to torch (dtype and device follow the inputs)."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self.exp = torch.exp
        self.cos = torch.cos
        self.sin = torch.sin
        self.sqrt = torch.sqrt
        self.where = torch.where

    def sum(self, x: Any) -> Any:
        return self._torch.sum(x, dim=-1)

    def mean(self, x: Any) -> Any:
        return self._torch.mean(x, dim=-1)

    def stack(self, columns: list[Any]) -> Any:
        return self._torch.stack(columns, dim=-1)

    def constant(self, value: Any, like: Any) -> Any:
        return self._torch.as_tensor(value, dtype=like.dtype, device=like.device)


Namespace = NumpyNamespace | TorchNamespace

_NUMPY = NumpyNamespace()
_TORCH: list[TorchNamespace] = []


def prepare(theta: Any) -> tuple[Namespace, Any]:
    """The namespace for ``theta`` and ``theta`` as a real floating array of its own backend."""
    if is_torch(theta):
        if theta.is_complex():
            raise ValueError(f"theta must be real; got dtype {theta.dtype}")
        if not theta.is_floating_point():
            theta = theta.to(sys.modules["torch"].get_default_dtype())
        if not _TORCH:
            _TORCH.append(TorchNamespace())
        return _TORCH[0], theta
    array = np.asarray(theta)
    if np.iscomplexobj(array):
        raise ValueError(f"theta must be real; got dtype {array.dtype}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return _NUMPY, array
