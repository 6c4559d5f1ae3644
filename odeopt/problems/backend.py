"""The array vocabulary the objectives are written in (see :mod:`odeopt.arrays`).

:func:`prepare` looks at θ and returns the vocabulary for its type together with θ as a
floating array: numpy float16/32/64 and torch tensors keep their dtype (and device); integer or
boolean input is promoted to float64 (numpy) or to torch's default dtype. Reductions act on the
last axis, the coordinate axis of a (batch, dim) array. Arithmetic operators, ``@``, indexing
and Python-float constants behave alike in both libraries and are used directly.
"""

from __future__ import annotations

from ..arrays import Arrays as Namespace
from ..arrays import NumpyArrays as NumpyNamespace
from ..arrays import TorchArrays as TorchNamespace
from ..arrays import is_torch, prepare

__all__ = ["Namespace", "NumpyNamespace", "TorchNamespace", "is_torch", "prepare"]
