"""The array vocabulary, written once for numpy and torch.

One object per library — :data:`NUMPY` and :func:`torch_arrays` — holds every array operation
odeopt needs outside plain arithmetic (operators, ``@``, indexing and Python-float constants
behave alike in both libraries and are used directly):

- the objectives' vocabulary (:mod:`odeopt.problems`): ``exp``, ``cos``, ``sin``, ``sqrt``,
  ``where``, and reductions over the last axis, the coordinate axis of a (batch, dim) array:
  ``sum``, ``mean``, ``amax``, ``rsum`` (keeping the axis), ``stack`` of columns;
- the generated code's helpers (:mod:`odeopt.symbolic.codegen`): ``column``, ``row``,
  ``like`` cast a value to the dtype (and device) of a reference array; torch also maps the
  numpy names the printer emits (:meth:`TorchArrays.numpy_names`);
- the integration loop's bookkeeping (:mod:`odeopt.integrate`): NaN-filled buffers, per-row
  index/take/scatter from numpy masks, per-row norms without overflow, finiteness tests that
  answer in numpy, and ``to_numpy``;
- the linear algebra of the implicit solves (:mod:`odeopt.schemes.newton`): ``eps``,
  ``zeros``, ``eye``, ``permute`` and ``solve`` (A⁻¹b per row, the pseudo-inverse solution
  where A is singular).

dtype and device always follow the reference (``like``/``ref``) array, so float32 stays
float32 and a CUDA tensor stays on its device.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "NUMPY",
    "Arrays",
    "NumpyArrays",
    "TorchArrays",
    "arrays",
    "arrays_of",
    "is_torch",
    "prepare",
    "row_norm",
    "scatter",
    "solve_rows",
    "take",
    "torch_arrays",
]


def is_torch(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (torch is not imported for the check)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


class NumpyArrays:
    """The vocabulary bound to numpy."""

    name = "numpy"
    module: Any = np
    torch = False
    exp = staticmethod(np.exp)
    cos = staticmethod(np.cos)
    sin = staticmethod(np.sin)
    sqrt = staticmethod(np.sqrt)
    where = staticmethod(np.where)
    maximum = staticmethod(np.maximum)
    isfinite = staticmethod(np.isfinite)

    # -- reductions over the coordinate (last) axis
    @staticmethod
    def sum(x: Any) -> Any:
        """Σ over the last axis."""
        return np.sum(x, axis=-1)

    @staticmethod
    def rsum(x: Any) -> Any:
        """Σ over the last axis, keeping it (shape (batch, 1))."""
        return np.sum(x, axis=-1, keepdims=True)

    @staticmethod
    def mean(x: Any) -> Any:
        """Mean over the last axis."""
        return np.mean(x, axis=-1)

    @staticmethod
    def amax(x: Any) -> Any:
        """max over the last axis."""
        return x.max(-1)

    @staticmethod
    def stack(columns: Sequence[Any]) -> Any:
        """Columns of shape (batch,) → one array of shape (batch, len(columns))."""
        return np.stack(columns, axis=-1)

    @staticmethod
    def concatenate(parts: Sequence[Any], axis: int = 0) -> Any:
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis)

    # -- values cast to a reference's dtype
    @staticmethod
    def constant(value: Any, like: Any) -> Any:
        """``value`` as an array with the dtype of ``like``."""
        return np.asarray(value, dtype=like.dtype)

    @staticmethod
    def column(x: Any, ref: Any) -> Any:
        """A scalar stays; values per row become a column (rows, 1) of ref's dtype."""
        x = np.asarray(x, dtype=ref.dtype)
        return x.reshape(-1, 1) if x.ndim >= 1 else x

    @staticmethod
    def row(x: Any, ref: Any) -> Any:
        x = np.asarray(x, dtype=ref.dtype)
        return x.reshape(-1) if x.ndim >= 1 else x

    @staticmethod
    def like(value: Any, ref: Any) -> Any:
        """``value`` broadcast to ref's shape and dtype (ref itself when it already is)."""
        if isinstance(value, np.ndarray) and value.shape == ref.shape and value.dtype == ref.dtype:
            return value
        return np.broadcast_to(value, ref.shape).astype(ref.dtype, copy=True)

    @staticmethod
    def empty(shape: tuple[int, ...], like: Any) -> Any:
        """A NaN-filled buffer of ``like``'s dtype."""
        return np.full(shape, np.nan, dtype=like.dtype)

    @staticmethod
    def per_row(value: Any, m: int, like: Any) -> Any:
        """A value as a fresh array of m rows (a per-row array is copied)."""
        if np.ndim(value) == 1:
            return np.array(value, dtype=like.dtype)
        return np.full(m, float(value), dtype=like.dtype)

    @staticmethod
    def copy(a: Any) -> Any:
        return a.copy()

    @staticmethod
    def zeros(shape: int | tuple[int, ...], like: Any) -> Any:
        """A zero-filled array of ``like``'s dtype."""
        return np.zeros(shape, dtype=like.dtype)

    @staticmethod
    def eye(n: int, like: Any) -> Any:
        """The n × n identity in ``like``'s dtype."""
        return np.eye(n, dtype=like.dtype)

    @staticmethod
    def eps(like: Any) -> float:
        """The machine epsilon of ``like``'s dtype (2⁻⁵² in float64, 2⁻²³ in float32)."""
        return float(np.finfo(like.dtype).eps)

    @staticmethod
    def permute(a: Any, axes: Sequence[int]) -> Any:
        """``a`` with its axes reordered (axis i of the result is axis ``axes[i]`` of ``a``)."""
        return a.transpose(*axes)

    @staticmethod
    def solve(A: Any, b: Any) -> Any:
        """A⁻¹b per row (A (m, n, n), b (m, n)), see :func:`solve_rows`."""
        return solve_rows(A, b)

    # -- rows selected by numpy masks
    @staticmethod
    def to_numpy(a: Any) -> np.ndarray:
        return np.asarray(a)

    @staticmethod
    def index(idx: np.ndarray, like: Any = None) -> Any:
        """An index from a numpy boolean mask or integer array."""
        return np.flatnonzero(idx) if idx.dtype == bool else idx

    # -- tests that answer per row, in numpy
    @staticmethod
    def sumsq(x: Any) -> float:
        """Σ x² over all entries (one BLAS pass; NaN and ±inf propagate)."""
        flat = x.ravel()
        return float(np.dot(flat, flat))

    @staticmethod
    def beyond(x: Any, bound: float) -> np.ndarray:
        """Per row (leading axes): a value that is not finite or exceeds ``bound``."""
        with np.errstate(invalid="ignore"):
            return ~np.isfinite(x).all(-1) | (np.abs(x).max(-1) > bound)

    @staticmethod
    def nonfinite(*values: Any) -> np.ndarray | None:
        """The rows where any of ``values`` (each (rows,)) is not finite, or None."""
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(values[0])
            for v in values[1:]:
                ok &= np.isfinite(v)
        return None if ok.all() else ~ok

    @staticmethod
    def safe_divide(a: Any, b: Any) -> Any:
        """a / b, 0 where b = 0."""
        nonzero = b != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(nonzero, a / np.where(nonzero, b, 1.0), 0.0)


class TorchArrays:
    """The same vocabulary bound to torch (dtype and device follow the inputs)."""

    name = "torch"
    torch = True

    def __init__(self) -> None:
        import torch

        self.module: Any = torch
        self._torch = torch
        self.exp = torch.exp
        self.cos = torch.cos
        self.sin = torch.sin
        self.sqrt = torch.sqrt
        self.where = torch.where
        self.isfinite = torch.isfinite

    def maximum(self, a: Any, b: Any) -> Any:
        """Elementwise max; takes Python scalars like numpy's."""
        return self._torch.maximum(*self._tensors(a, b))

    def minimum(self, a: Any, b: Any) -> Any:
        return self._torch.minimum(*self._tensors(a, b))

    def _tensors(self, a: Any, b: Any) -> tuple[Any, Any]:
        torch = self._torch
        ref = a if isinstance(a, torch.Tensor) else b
        if not isinstance(ref, torch.Tensor):
            return torch.as_tensor(a), torch.as_tensor(b)
        return (
            torch.as_tensor(a, dtype=ref.dtype, device=ref.device),
            torch.as_tensor(b, dtype=ref.dtype, device=ref.device),
        )

    def sum(self, x: Any) -> Any:
        return self._torch.sum(x, dim=-1)

    def rsum(self, x: Any) -> Any:
        return self._torch.sum(x, dim=-1, keepdim=True)

    def mean(self, x: Any) -> Any:
        return self._torch.mean(x, dim=-1)

    @staticmethod
    def amax(x: Any) -> Any:
        return x.amax(-1)

    def stack(self, columns: Sequence[Any]) -> Any:
        return self._torch.stack(list(columns), dim=-1)

    def concatenate(self, parts: Sequence[Any], axis: int = 0) -> Any:
        return parts[0] if len(parts) == 1 else self._torch.cat(list(parts), axis)

    def constant(self, value: Any, like: Any) -> Any:
        return self._torch.as_tensor(value, dtype=like.dtype, device=like.device)

    def column(self, x: Any, ref: Any) -> Any:
        x = self._torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
        return x.reshape(-1, 1) if x.ndim >= 1 else x

    def row(self, x: Any, ref: Any) -> Any:
        x = self._torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
        return x.reshape(-1) if x.ndim >= 1 else x

    def like(self, value: Any, ref: Any) -> Any:
        torch = self._torch
        if not isinstance(value, torch.Tensor):
            return torch.full_like(ref, float(value))
        if value.shape == ref.shape and value.dtype == ref.dtype:
            return value
        return value.to(ref.dtype).expand(ref.shape).clone()

    def empty(self, shape: tuple[int, ...], like: Any) -> Any:
        return self._torch.full(shape, float("nan"), dtype=like.dtype, device=like.device)

    def per_row(self, value: Any, m: int, like: Any) -> Any:
        if hasattr(value, "shape") and value.ndim == 1:
            return self._torch.as_tensor(value, dtype=like.dtype, device=like.device).clone()
        return self._torch.full((m,), float(value), dtype=like.dtype, device=like.device)

    @staticmethod
    def copy(a: Any) -> Any:
        return a.clone()

    def zeros(self, shape: int | tuple[int, ...], like: Any) -> Any:
        return self._torch.zeros(shape, dtype=like.dtype, device=like.device)

    def eye(self, n: int, like: Any) -> Any:
        return self._torch.eye(n, dtype=like.dtype, device=like.device)

    def eps(self, like: Any) -> float:
        return float(self._torch.finfo(like.dtype).eps)

    @staticmethod
    def permute(a: Any, axes: Sequence[int]) -> Any:
        return a.permute(*axes)

    def solve(self, A: Any, b: Any) -> Any:
        """A⁻¹b per row (A (m, n, n), b (m, n)); the pseudo-inverse solution of the rows
        whose A is singular. CPU tensors go through numpy (:func:`solve_rows`; torch's batched
        solve of many small systems costs ~100× more there), other devices through
        ``torch.linalg.solve_ex`` with ``pinv`` for the singular rows."""
        torch = self._torch
        if A.device.type == "cpu":
            return torch.from_numpy(solve_rows(A.numpy(), b.numpy()))
        sol, info = torch.linalg.solve_ex(A, b.unsqueeze(-1))
        sol = sol.squeeze(-1)
        bad = info != 0
        if bool(bad.any()):
            sol[bad] = (torch.linalg.pinv(A[bad]) @ b[bad].unsqueeze(-1)).squeeze(-1)
        return sol

    @staticmethod
    def to_numpy(a: Any) -> np.ndarray:
        return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)

    def index(self, idx: np.ndarray, like: Any = None) -> Any:
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx
        return self._torch.as_tensor(idx, device=getattr(like, "device", None))

    @staticmethod
    def sumsq(x: Any) -> float:
        flat = x.reshape(-1)
        return float(flat.dot(flat))

    def beyond(self, x: Any, bound: float) -> np.ndarray:
        bad = ~self._torch.isfinite(x).all(-1) | (x.abs().amax(-1) > bound)
        return bad.cpu().numpy()

    def nonfinite(self, *values: Any) -> np.ndarray | None:
        torch = self._torch
        ok = torch.isfinite(values[0])
        for v in values[1:]:
            ok = ok & torch.isfinite(v)
        if bool(ok.all()):
            return None
        return ~ok.cpu().numpy()

    def safe_divide(self, a: Any, b: Any) -> Any:
        torch = self._torch
        nonzero = b != 0
        return torch.where(
            nonzero, a / torch.where(nonzero, b, torch.ones_like(b)), torch.zeros_like(a)
        )

    def numpy_names(self) -> dict[str, Any]:
        """The numpy names generated code calls whose torch namesake differs (elementwise
        comparisons, ``ufunc.reduce``, scalars in maximum/minimum, ``select``, constants)."""
        torch = self._torch
        return {
            "equal": torch.eq,  # numpy.equal is elementwise; torch.equal is not
            "not_equal": torch.ne,
            "logical_and": _Ufunc(torch.logical_and),
            "logical_or": _Ufunc(torch.logical_or),
            "maximum": _Ufunc(self.maximum),
            "minimum": _Ufunc(self.minimum),
            "select": self.select,
            "power": torch.pow,
            "nan": float("nan"),
            "pi": float(np.pi),
            "e": float(np.e),
        }

    def select(self, conds: Sequence[Any], values: Sequence[Any], default: Any = None) -> Any:
        """numpy.select for sympy's Piecewise (the last condition is True)."""
        torch = self._torch
        tensors = [v for v in values if isinstance(v, torch.Tensor) and v.is_floating_point()]
        dtype = tensors[0].dtype if tensors else torch.get_default_dtype()

        def as_t(v: Any) -> Any:
            return torch.as_tensor(v, dtype=dtype)

        out = as_t(values[-1])
        for c, v in zip(reversed(conds[:-1]), reversed(values[:-1]), strict=True):
            out = torch.where(torch.as_tensor(c), as_t(v), out)
        return out


class _Ufunc:
    """A binary function with numpy's ``ufunc.reduce`` over a sequence."""

    def __init__(self, fn: Callable[[Any, Any], Any]) -> None:
        self._fn = fn

    def __call__(self, a: Any, b: Any) -> Any:
        return self._fn(a, b)

    def reduce(self, items: Sequence[Any]) -> Any:
        return functools.reduce(self._fn, items)


Arrays = NumpyArrays | TorchArrays

NUMPY = NumpyArrays()


@functools.cache
def torch_arrays() -> TorchArrays:
    """The torch vocabulary (torch is imported on first use)."""
    return TorchArrays()


def arrays(name: str) -> Arrays:
    """The vocabulary by library name, ``"numpy"`` or ``"torch"``."""
    if name == "numpy":
        return NUMPY
    if name == "torch":
        return torch_arrays()
    raise ValueError(f"unknown array library {name!r}; expected 'numpy' or 'torch'")


def arrays_of(value: Any) -> Arrays:
    """The vocabulary of ``value``'s library (torch for a tensor, numpy otherwise)."""
    return torch_arrays() if is_torch(value) else NUMPY


def take(xs: Mapping[str, Any], idx: Any) -> dict[str, Any]:
    """Rows ``idx`` of each array of ``xs``."""
    return {b: v[idx] for b, v in xs.items()}


def prepare(theta: Any) -> tuple[Arrays, Any]:
    """The vocabulary for ``theta`` and ``theta`` as a real floating array of its own library:
    numpy float16/32/64 and torch tensors keep their dtype (and device); integer or boolean
    input becomes float64 (numpy) or torch's default dtype."""
    if is_torch(theta):
        if theta.is_complex():
            raise ValueError(f"theta must be real; got dtype {theta.dtype}")
        if not theta.is_floating_point():
            theta = theta.to(sys.modules["torch"].get_default_dtype())
        return torch_arrays(), theta
    array = np.asarray(theta)
    if np.iscomplexobj(array):
        raise ValueError(f"theta must be real; got dtype {array.dtype}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return NUMPY, array


def scatter(a: Arrays, full: Mapping[str, Any], idx: Any, rows: Mapping[str, Any]) -> dict:
    """Copies of the arrays of ``full`` with rows ``idx`` replaced by those of ``rows``."""
    out = {}
    for b, v in full.items():
        w = a.copy(v)
        w[idx] = rows[b]
        out[b] = w
    return out


def solve_rows(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A⁻¹b per row with numpy (A (m, n, n), b (m, n)); when one row's A is singular, the
    pseudo-inverse (least-squares, minimum-norm) solution for every row, NaN for the rows
    whose A has a non-finite entry."""
    with np.errstate(all="ignore"):
        try:
            return np.linalg.solve(A, b[..., None])[..., 0]
        except np.linalg.LinAlgError:
            finite = np.isfinite(A).all((-1, -2))
            out = np.full_like(b, np.nan)
            out[finite] = (np.linalg.pinv(A[finite]) @ b[finite][..., None])[..., 0]
            return out


def row_norm(a: Arrays, g: Any) -> Any:
    """|g| per row without overflow: m·(Σ(g/m)²)^½ with m = max|gᵢ| (|g| up to the dtype's
    maximum stays finite; Σg² alone overflows from 1.3e154 in float64, 1.8e19 in float32);
    an infinite entry gives |g| = inf, not NaN."""
    m = a.amax(abs(g))
    safe = a.where((m > 0) & (m < float("inf")), m, m * 0 + 1)
    out = m * (((g / safe[:, None]) ** 2).sum(-1) ** 0.5)
    return a.where(m == float("inf"), m, out)
