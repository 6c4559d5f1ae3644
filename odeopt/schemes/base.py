"""What a scheme is, and the field it steps.

A scheme maps a state x (a dict of blocks) at time t to the state after one step of size h.
It is written once, with plain arithmetic on the block values, and so runs on three kinds of
values:

* sympy expressions, through :class:`odeopt.schemes.program.SymbolicField`, which records the
  update program (the discrete rule of the next stage);
* numpy arrays and torch tensors of shape (batch, n), through
  :class:`odeopt.integrate.field.NumericField`, for batched integration.

The only thing a scheme asks of its field is the :class:`Field` protocol below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import sympy as sp

__all__ = ["Field", "Projected", "Scheme", "Step", "State", "axpy", "combine", "for_system"]

State = dict[str, Any]


class Field(Protocol):
    """The vector field f(x, t) of a system as a scheme sees it.

    ``position`` are the blocks the loss depends on (θ); ``momentum`` all other blocks
    (energy and auxiliary), the split a partitioned scheme such as symplectic Euler needs.
    """

    symbolic: bool
    position: tuple[str, ...]
    momentum: tuple[str, ...]
    energy_blocks: tuple[str, ...]

    def __call__(self, x: State, t: Any, blocks: Sequence[str] | None = None) -> State:
        """ẋ_b = f_b(x, t) for the requested blocks (all when None)."""
        ...

    def advance(self, x: State, t: Any, h: Any, blocks: Sequence[str]) -> State:
        """x_b + h·f_b(x, t) for ``blocks`` (others kept): ``axpy(x, h, f(x, t, blocks))``,
        which a numeric field fuses into one generated function."""
        ...

    def energy(self, x: State, t: Any) -> Any:
        """H(x, t), one value per trajectory."""
        ...

    def grad_energy(self, x: State, t: Any) -> State:
        """∂H/∂x_b per coordinate, for the energy blocks."""
        ...

    def structure(self, x: State, t: Any, v: State) -> State:
        """(J − R)(x)·v per coordinate, for a vector v over the energy blocks."""
        ...

    def total(self, v: State) -> Any:
        """Σ_b Σᵢ v_b,ᵢ: the sum over blocks and coordinates, one value per trajectory."""
        ...

    def safe_divide(self, a: Any, b: Any) -> Any:
        """a / b, and 0 where b = 0 (numerically); plain a / b symbolically."""
        ...

    def constant(self, value: sp.Rational | int) -> Any:
        """A scheme coefficient as the field's values want it (exact or float)."""
        ...

    def unknowns(self, x: State) -> State:
        """Symbols for an unknown next state (symbolic fields; implicit schemes)."""
        ...

    def distance(self, a: State, b: State) -> Any:
        """max over blocks and coordinates of |a − b| / (1 + |b|), per trajectory (numeric)."""
        ...

    def project(self, x: State, t: Any) -> State:
        """x with the momentum rescaled onto the level set H = E (systems with a stored
        energy, :class:`~odeopt.symbolic.EnergyLevel`): p ← r·p, r = √(S*(E)/|p|²)."""
        ...


@dataclass
class Step:
    """The result of one step: the new state and, for schemes that estimate it, the local
    error per block (the difference of two approximations of the step)."""

    x: State
    error: State | None = None
    info: dict[str, Any] = field(default_factory=dict)


def axpy(x: State, h: Any, k: Mapping[str, Any]) -> State:
    """x + h·k over the blocks of k; the other blocks of x are kept."""
    out = dict(x)
    for b, kb in k.items():
        out[b] = x[b] + h * kb
    return out


def combine(x: State, h: Any, terms: Sequence[tuple[Any, Mapping[str, Any]]]) -> State:
    """x + h·Σⱼ cⱼ·kⱼ, skipping zero coefficients (so 0·NaN never enters)."""
    out = dict(x)
    live = [(c, k) for c, k in terms if c != 0]
    if not live:
        return out
    for b in live[0][1]:
        acc = None
        for c, k in live:
            term = k[b] if c == 1 else c * k[b]
            acc = term if acc is None else acc + term
        out[b] = x[b] + h * acc
    return out


class Scheme:
    """A one-step scheme x_{k+1} = Φ_h(x_k, t_k).

    Attributes
    ----------
    name: the registry name.
    order: the global order of convergence p (error O(hᵖ)) on smooth problems.
    partitioned: whether the scheme treats the position and momentum blocks differently.
    adaptive: whether :meth:`step` returns an error estimate for a step-size controller.
    error_order: q, the order of the method the error estimate belongs to (the controller
        scales h by err^(−1/(q+1))).
    implicit: whether a step solves a nonlinear equation.
    """

    name: ClassVar[str] = ""
    order: int = 1
    partitioned: bool = False
    adaptive: bool = False
    error_order: int = 1
    implicit: bool = False

    def step(self, f: Field, x: State, t: Any, h: Any) -> Step:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order})"


class Projected(Scheme):
    """``inner`` preceded by the projection onto the level set H = E:
    x_{k+1} = Φ_h(P(x_k), t_k), P the field's :meth:`Field.project`.

    This is how a stored-energy system that asks for it (``EnergyLevel(project=True)``,
    ECD's exact energy rescaling) is stepped, in integration, extraction and export alike;
    :func:`for_system` wraps a scheme when the system asks.
    """

    def __init__(self, inner: Scheme) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.order = inner.order
        self.partitioned = inner.partitioned
        self.adaptive = inner.adaptive
        self.error_order = inner.error_order
        self.implicit = inner.implicit
        if hasattr(inner, "controller"):
            self.controller = inner.controller

    def __getattr__(self, name: str) -> Any:
        """The inner scheme's other attributes (an implicit scheme's ``tol``, say), so that
        the integrator sees the same scheme through the projection."""
        if name == "inner":  # not set yet (copying, unpickling)
            raise AttributeError(name)
        return getattr(self.inner, name)

    def step(self, f: Field, x: State, t: Any, h: Any) -> Step:
        return self.inner.step(f, f.project(x, t), t, h)

    def __repr__(self) -> str:
        return f"Projected({self.inner!r})"


def for_system(scheme: Scheme, system: Any) -> Scheme:
    """``scheme`` as ``system`` is stepped: wrapped in :class:`Projected` when the system
    stores its energy and asks for the projection."""
    ls = getattr(system, "level_set", None)
    if ls is not None and ls.spec.project and not isinstance(scheme, Projected):
        return Projected(scheme)
    return scheme
