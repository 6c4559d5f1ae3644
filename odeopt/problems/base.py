"""The :class:`Problem` contract: a batched objective F: ℝᵈ → ℝ with its analytic gradient.

θ is a (batch, dim) numpy array or torch tensor; ``value`` returns F per row, shape (batch,),
``grad`` returns ∇F per row, shape (batch, dim), both of θ's type, dtype and device.
``hvp(θ, v)`` gives ∇²F(θ)·v per row and ``derivative(θ, v₁, …, v_k)`` the contraction
∇^{k+1}F(θ)[v₁, …, v_k] (modified equations need them): exact from the problem's ``sympy()``
form on numpy arrays, by torch autograd through the same ``_evaluate`` on tensors (and where
there is no symbolic form), exactly for quadratics. Known facts ride along: ``minima`` (the
global minima, where known), ``critical_points()`` (all solutions of ∇F(θ) = 0 with their
Hessian classification, computed exactly with sympy where the problem allows it) and
``sympy()`` (the exact formula).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from ..arrays import arrays_of, is_torch
from .backend import Namespace, prepare

__all__ = [
    "KINDS",
    "CriticalPoint",
    "CriticalPointsUnavailable",
    "HessianUnavailable",
    "Minimum",
    "Problem",
]

#: what a problem without second derivatives is told
NO_HESSIAN = (
    "hvp needs the Hessian: give the problem a sympy() form or a torch objective (its F and "
    "∇F written with torch operations, or a torch_module)"
)


class HessianUnavailable(TypeError):
    """The problem cannot give ∇²F·v (no symbolic form, no torch autograd); the message says
    what to give it."""


KINDS = ("minimum", "maximum", "saddle", "degenerate")


class CriticalPointsUnavailable(NotImplementedError, ValueError):
    """``critical_points()`` cannot be listed for this problem (infinitely many, a continuum, or
    no exact form); the message says why. Catch it as ``NotImplementedError`` or ``ValueError``.
    """


@dataclass(frozen=True)
class Minimum:
    """A known global minimum: F(point) = value."""

    point: tuple[float, ...]
    value: float

    @property
    def numeric(self) -> np.ndarray:
        """The point as a float64 array of shape (dim,)."""
        return np.asarray(self.point, dtype=np.float64)


@dataclass(frozen=True)
class CriticalPoint:
    """A solution of ∇F(θ) = 0.

    ``point`` and ``value`` are sympy numbers (exact where the problem allows: rationals,
    radicals or algebraic numbers ``CRootOf``). ``hessian_eigenvalues`` are the eigenvalues of
    ∇²F at the point, as floats in increasing order. ``kind`` is ``"minimum"`` (all > 0),
    ``"maximum"`` (all < 0), ``"saddle"`` (both signs) or ``"degenerate"`` (some eigenvalue is
    zero, exactly or to within round-off; then ``degenerate`` is True and the second-order test
    does not decide).
    """

    point: tuple[sp.Expr, ...]
    value: sp.Expr
    kind: str
    hessian_eigenvalues: tuple[float, ...]
    degenerate: bool

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")
        if self.degenerate != (self.kind == "degenerate"):
            raise ValueError("degenerate must be True exactly when kind == 'degenerate'")

    @property
    def numeric(self) -> np.ndarray:
        """The point as a float64 array of shape (dim,)."""
        return np.array([float(sp.N(c, 30)) for c in self.point], dtype=np.float64)

    @property
    def numeric_value(self) -> float:
        """F at the point, as a float."""
        return float(sp.N(self.value, 30))


class Problem:
    """A batched objective F: ℝᵈ → ℝ with its analytic gradient ∇F.

    Subclasses implement :meth:`_evaluate`, which computes F (and ∇F when asked) once for both
    backends through the array namespace ``xp`` (see :mod:`odeopt.problems.backend`), and
    optionally :meth:`sympy`, :meth:`_critical_points` and :meth:`_find_minima`.
    """

    name: str
    dim: int
    domain: tuple[float, float]

    def __init__(
        self,
        name: str,
        dim: int,
        domain: tuple[float, float],
        minima: Sequence[Minimum] | None = None,
    ) -> None:
        if int(dim) != dim or dim < 1:
            raise ValueError(f"{name}: dim must be a positive integer; got {dim!r}")
        lo, hi = (float(v) for v in domain)
        if not lo < hi:
            raise ValueError(f"{name}: domain must be (lo, hi) with lo < hi; got {domain!r}")
        self.name = name
        self.dim = int(dim)
        self.domain = (lo, hi)
        self._minima: list[Minimum] | None = None if minima is None else list(minima)
        self._critical: list[CriticalPoint] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """The problem without its compiled derivative functions (rebuilt on demand): a
        problem stays picklable after ``hvp``/``derivative`` (for process pools)."""
        state = dict(self.__dict__)
        state.pop("_derivative_fns", None)
        return state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} dim={self.dim}>"

    # -- numbers -------------------------------------------------------------------------------

    def value(self, theta: Any) -> Any:
        """F(θ) per row: (batch, dim) → (batch,)."""
        xp, theta = self._prepare(theta)
        return self._evaluate(xp, theta, False)[0]

    def grad(self, theta: Any) -> Any:
        """∇F(θ) per row: (batch, dim) → (batch, dim)."""
        xp, theta = self._prepare(theta)
        return self._evaluate(xp, theta, True)[1]

    def value_and_grad(self, theta: Any) -> tuple[Any, Any]:
        """(F(θ), ∇F(θ)) in one pass sharing the intermediate terms."""
        xp, theta = self._prepare(theta)
        return self._evaluate(xp, theta, True)

    def _evaluate(self, xp: Namespace, theta: Any, need_grad: bool) -> tuple[Any, Any]:
        """F (batch,) and, when ``need_grad``, ∇F (batch, dim), else None."""
        raise NotImplementedError

    def hvp(self, theta: Any, v: Any) -> Any:
        """∇²F(θ)·v per row: θ and v (batch, dim) → (batch, dim), of θ's type, dtype, device."""
        return self.derivative(theta, v)

    def derivative(self, theta: Any, *vectors: Any) -> Any:
        """∇^{k+1}F(θ)[v₁, …, v_k] per row, (∇^{k+1}F)ᵢⱼ…·v₁ⱼ⋯ summed: k ≥ 1 vectors of θ's
        shape (batch, dim) → (batch, dim); k = 1 is :meth:`hvp`.

        numpy θ: exact from :meth:`sympy` (the contraction differentiated symbolically and
        compiled once per k), else torch autograd through :meth:`_evaluate`; torch θ: autograd
        (dtype and device kept), else the symbolic form. Raises :class:`HessianUnavailable`
        when the problem has neither.
        """
        xp, theta = self._prepare(theta)
        if not vectors:
            raise TypeError(f"{self.name}: derivative(theta, v, ...) needs at least one vector")
        vs = []
        for j, v in enumerate(vectors):
            v = _like(v, theta)
            if tuple(v.shape) != tuple(theta.shape):
                raise ValueError(
                    f"{self.name}: vector {j + 1} must have theta's shape {tuple(theta.shape)}; "
                    f"got shape {tuple(v.shape)}"
                )
            vs.append(v)
        cache = self.__dict__.setdefault("_derivative_fns", {})
        if "form" not in cache:
            cache["form"] = self.sympy() is not None
        torch_input = xp.name == "torch"
        if not torch_input and cache["form"]:
            return self._sympy_derivative(theta, vs)
        try:
            return self._torch_derivative(theta, vs)
        except HessianUnavailable:
            if not cache["form"]:
                raise
        # torch input, no autograd through _evaluate, but an exact form: numpy and back
        import torch

        out = self._sympy_derivative(
            theta.detach().cpu().double().numpy(), [v.detach().cpu().double().numpy() for v in vs]
        )
        return torch.as_tensor(out, dtype=theta.dtype, device=theta.device)

    def _torch_derivative(self, theta: Any, vectors: Sequence[Any]) -> Any:
        """The contraction by torch autograd: ∇F from :meth:`_evaluate` on a leaf tensor,
        then one backward pass per vector, ∂/∂θ Σᵢ (D·v)ᵢ (rows are independent, so the sum
        over the batch keeps them apart). Raises :class:`HessianUnavailable` when
        ``_evaluate`` does not run on torch tensors or its ∇F does not depend on θ through
        autograd."""
        import torch

        from .backend import prepare

        numpy_input = not is_torch(theta)
        tensor = torch.from_numpy(np.ascontiguousarray(theta)) if numpy_input else theta
        vs = [torch.from_numpy(np.ascontiguousarray(v)) if numpy_input else v for v in vectors]
        leaf = tensor.detach().requires_grad_(True)
        with torch.enable_grad():
            try:
                _, D = self._evaluate(prepare(leaf)[0], leaf, True)
            except Exception as exc:  # written for numpy only: no autograd
                raise HessianUnavailable(f"{self.name}: {NO_HESSIAN}") from exc
            if not isinstance(D, torch.Tensor) or not D.requires_grad:
                raise HessianUnavailable(f"{self.name}: {NO_HESSIAN}")
            for j, v in enumerate(vs):
                last = j == len(vs) - 1
                (D,) = torch.autograd.grad(
                    (D * v.to(D.dtype)).sum(), leaf, create_graph=not last, allow_unused=True
                )
                if D is None:  # ∇^jF is constant: the next derivative vanishes
                    D = torch.zeros_like(leaf)
                    break
        D = D.detach()
        return D.numpy() if numpy_input else D

    def _sympy_derivative(self, theta: np.ndarray, vectors: Sequence[np.ndarray]) -> np.ndarray:
        """The contraction from :meth:`sympy`: Dᵢ = Σⱼ ∂(∇^kF[v₁…v_{k−1}])ᵢ/∂xⱼ·v_kⱼ built
        symbolically once per k and compiled with numpy (``sympy.lambdify``)."""
        k = len(vectors)
        cache = self.__dict__.setdefault("_derivative_fns", {})
        if k not in cache:
            form = self.sympy()
            assert form is not None
            F, xs = form
            vsyms = [sp.symbols(f"v{j}_0:{len(xs)}", real=True) for j in range(k)]
            D = [sp.diff(F, x) for x in xs]
            for vj in vsyms:
                D = [
                    sp.Add(*(sp.diff(Di, x) * vx for x, vx in zip(xs, vj, strict=True))) for Di in D
                ]
            args = [*xs, *(s for vj in vsyms for s in vj)]
            cache[k] = sp.lambdify(args, D, "numpy")
        cols = [*theta.T, *(c for v in vectors for c in v.T)]
        with np.errstate(all="ignore"):
            out = cache[k](*cols)
        return np.stack(
            [np.broadcast_to(np.asarray(c, float), theta.shape[:1]) for c in out], -1
        ).astype(theta.dtype, copy=False)

    def check_shape(self, theta: Any) -> None:
        """Raise ValueError unless θ has shape (batch, dim)."""
        shape = tuple(theta.shape)
        if len(shape) != 2 or shape[1] != self.dim:
            raise ValueError(
                f"{self.name}: theta must have shape (batch, {self.dim}); got shape {shape}"
            )

    def _prepare(self, theta: Any) -> tuple[Namespace, Any]:
        xp, theta = prepare(theta)
        self.check_shape(theta)
        return xp, theta

    def sample(self, batch: int, seed: int = 0, backend: str = "numpy") -> Any:
        """``batch`` points uniform in the box [lo, hi]^dim, float64, shape (batch, dim).

        The numbers depend only on ``seed`` (numpy's default generator): the torch backend
        returns the same points as a CPU tensor.
        """
        if backend not in ("numpy", "torch"):
            raise ValueError(f"backend must be 'numpy' or 'torch'; got {backend!r}")
        if int(batch) != batch or batch < 0:
            raise ValueError(f"batch must be a non-negative integer; got {batch!r}")
        lo, hi = self.domain
        points = np.random.default_rng(seed).uniform(lo, hi, size=(int(batch), self.dim))
        if backend == "torch":
            import torch

            return torch.from_numpy(points)
        return points

    # -- exact facts ---------------------------------------------------------------------------

    def sympy(self) -> tuple[sp.Expr, tuple[sp.Symbol, ...]] | None:
        """The exact formula F(x₁, …, x_d) and its symbols, or None where there is none."""
        return None

    @property
    def minima(self) -> list[Minimum]:
        """The known global minima (empty where none is known or F is unbounded below)."""
        if self._minima is None:
            self._minima = self._find_minima()
        return list(self._minima)

    def _find_minima(self) -> list[Minimum]:
        return []

    def critical_points(self) -> list[CriticalPoint]:
        """All solutions of ∇F = 0, classified by the Hessian, sorted by value then point.

        Raises :class:`CriticalPointsUnavailable` where they cannot be listed.
        """
        if self._critical is None:
            points = self._critical_points()
            self._critical = sorted(
                points, key=lambda c: (c.numeric_value, tuple(c.numeric.tolist()))
            )
        return list(self._critical)

    def _critical_points(self) -> list[CriticalPoint]:
        raise CriticalPointsUnavailable(
            f"{self.name}: no exact form to solve ∇F = 0 from; see .minima for known minima"
        )


def _like(v: Any, theta: Any) -> Any:
    """v as an array of θ's kind (numpy or torch, dtype and device of θ)."""
    a = arrays_of(theta)
    return a.constant(v if a.torch else arrays_of(v).to_numpy(v), theta)


def lowest_critical_points(problem: Problem) -> list[Minimum]:
    """The critical points of least value that are minima or degenerate, as :class:`Minimum`.

    They are the global minima whenever inf F is attained (F bounded below and attaining its
    infimum, e.g. F coercive, or F ≥ 0 with some critical value 0): a global minimiser is a
    critical point of least value. Each caller states why this holds for its problem.
    """
    points = [c for c in problem.critical_points() if c.kind in ("minimum", "degenerate")]
    if not points:
        return []
    least = min(c.numeric_value for c in points)
    return [
        Minimum(tuple(float(v) for v in c.numeric), c.numeric_value)
        for c in points
        if abs(c.numeric_value - least) <= 1e-12 * max(1.0, abs(least))
    ]
