"""Problems from user callables: :func:`from_functions`.

Without an analytic gradient the value callable is differentiated with torch autograd, never by
finite differences (which would silently trade accuracy for a step size): it must then accept
a torch tensor θ of shape (batch, dim) and return F of shape (batch,) built from torch
operations, each row depending on its own θ row only. ``hvp`` (∇²F·v) differentiates ∇F the
same way: it needs torch callables (a numpy-only problem has no Hessian and says so). Since
the rows are independent, ∇F = ∂(Σ_rows F)/∂θ row by row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backend import Namespace, is_torch
from .base import Minimum, Problem

__all__ = ["FunctionProblem", "from_functions"]


class FunctionProblem(Problem):
    """F and ∇F from user callables (see :func:`from_functions`)."""

    def __init__(
        self,
        value: Callable[[Any], Any],
        grad: Callable[[Any], Any] | None,
        dim: int,
        name: str,
        domain: tuple[float, float],
        minima: Sequence[Minimum] | None,
    ) -> None:
        if not callable(value) or (grad is not None and not callable(grad)):
            raise TypeError(f"{name}: value and grad must be callables")
        super().__init__(name, dim, domain, [] if minima is None else minima)
        self._value_fn = value
        self._grad_fn = grad

    def _check_out(self, label: str, out: Any, theta: Any, shape: tuple[int, ...]) -> Any:
        if not is_torch(theta):
            out = np.asarray(out)
        got = tuple(getattr(out, "shape", ()))
        if got != shape:
            raise ValueError(
                f"{self.name}: the {label} callable must return shape {shape} for theta of "
                f"shape {tuple(theta.shape)}; got shape {got}"
            )
        return out

    def _evaluate(self, xp: Namespace, theta: Any, need_grad: bool) -> tuple[Any, Any]:
        batch = theta.shape[0]
        if need_grad and self._grad_fn is None:
            F, g = self._autograd(theta)
        else:
            F = self._value_fn(theta)
            g = self._grad_fn(theta) if need_grad and self._grad_fn is not None else None
        F = self._check_out("value", F, theta, (batch,))
        if g is not None:
            g = self._check_out("grad", g, theta, (batch, self.dim))
        return F, g

    def _autograd(self, theta: Any) -> tuple[Any, Any]:
        import torch

        tensor = theta if is_torch(theta) else torch.from_numpy(np.ascontiguousarray(theta))
        with torch.enable_grad():
            leaf = tensor.detach().requires_grad_(True)
            try:
                F = self._value_fn(leaf)
            except Exception as error:
                raise TypeError(
                    f"{self.name}: from_functions without grad= differentiates value with torch "
                    "autograd, so value must accept a torch tensor; it raised "
                    f"{type(error).__name__}: {error}. Pass grad= for a numpy-only value"
                ) from error
            if not is_torch(F) or not F.requires_grad:
                raise TypeError(
                    f"{self.name}: from_functions without grad= needs value to return a torch "
                    "tensor that depends on theta through torch operations; pass grad= otherwise"
                )
            (g,) = torch.autograd.grad(F.sum(), leaf)
        F, g = F.detach(), g.detach()
        if is_torch(theta):
            return F, g
        return F.numpy(), g.numpy()

    def _torch_derivative(self, theta: Any, vectors: Any) -> Any:
        """Without ``grad=``, ∇F is autograd's, so the contraction differentiates ``value``
        (create_graph); with ``grad=`` it differentiates that callable on a leaf tensor (see
        :meth:`Problem._torch_derivative`)."""
        if self._grad_fn is not None:
            return super()._torch_derivative(theta, vectors)
        import torch

        from .base import NO_HESSIAN, HessianUnavailable

        numpy_input = not is_torch(theta)
        tensor = torch.from_numpy(np.ascontiguousarray(theta)) if numpy_input else theta
        vs = [torch.from_numpy(np.ascontiguousarray(v)) if numpy_input else v for v in vectors]
        leaf = tensor.detach().requires_grad_(True)
        with torch.enable_grad():
            try:
                F = self._value_fn(leaf)
            except Exception as exc:
                raise HessianUnavailable(f"{self.name}: {NO_HESSIAN}") from exc
            if not is_torch(F) or not F.requires_grad:
                raise HessianUnavailable(f"{self.name}: {NO_HESSIAN}")
            (D,) = torch.autograd.grad(F.sum(), leaf, create_graph=True)
            for j, v in enumerate(vs):
                last = j == len(vs) - 1
                (D,) = torch.autograd.grad(
                    (D * v).sum(), leaf, create_graph=not last, allow_unused=True
                )
                if D is None:
                    D = torch.zeros_like(leaf)
                    break
        D = D.detach()
        return D.numpy() if numpy_input else D


def from_functions(
    value: Callable[[Any], Any],
    grad: Callable[[Any], Any] | None = None,
    *,
    dim: int,
    name: str = "custom",
    domain: tuple[float, float] = (-1.0, 1.0),
    minima: Sequence[Minimum] | None = None,
) -> FunctionProblem:
    """Wrap ``value(θ) → F`` (and ``grad(θ) → ∇F``) as a :class:`Problem`.

    Both callables receive θ of shape (batch, dim) as given (numpy array or torch tensor) and
    must return shapes (batch,) and (batch, dim). With ``grad=None``, ∇F comes from torch
    autograd: ``value`` must work on torch tensors (numpy θ is converted to torch and the
    results back to numpy); a numpy-only ``value`` raises TypeError when a gradient is asked.
    ``minima`` lists known global minima, if any; ``critical_points()`` is unavailable.
    """
    return FunctionProblem(value, grad, dim, name, domain, minima)
