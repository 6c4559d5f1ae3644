"""Events: roots of a function of the state and the globals, located per trajectory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sympy as sp

if TYPE_CHECKING:
    from ..symbolic.system import PortHamiltonian

__all__ = ["Event", "EventRecord"]


@dataclass
class Event:
    """An event is a root of e(x, F, t) crossed during a step, located per trajectory.

    ``fn`` is a sympy expression of the system's symbols (blocks through reductions, the loss
    F, the time t, parameters), e.g. ``F - goal``, or a callable ``fn(state, F, t)`` returning
    one value per trajectory. ``direction`` +1 fires only on crossings from below, −1 from
    above, 0 on both. ``terminal`` stops the trajectory at the event. Otherwise ``action``
    switches it: a mapping of parameter keywords to new values and of block names to reset
    values (e.g. ``{"friction": 2.0}`` or ``{"p": 0.0}``), or a callable
    ``action(state, params) -> (state, params)`` on the trajectories that fired.
    ``once`` disarms the event for a trajectory after it fired. The root is located by
    bisection on the scheme's own step to within ``tol`` in time.
    """

    fn: Any
    terminal: bool = False
    action: Mapping[str, Any] | Callable[..., Any] | None = None
    direction: int = 0
    once: bool = True
    tol: float = 1e-10
    name: str = "event"
    _compiled: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"direction must be -1, 0 or +1, got {self.direction}")
        if not (isinstance(self.tol, (int, float)) and 0 < self.tol < float("inf")):
            raise ValueError(f"tol must be a finite number > 0, got tol={self.tol!r}")
        if self.terminal and self.action is not None:
            raise ValueError("a terminal event stops the trajectory; it takes no action")
        if not (callable(self.fn) or isinstance(self.fn, sp.Expr)):
            raise TypeError(
                f"an event function is a sympy expression or a callable, got {self.fn!r}"
            )
        if isinstance(self.fn, sp.Expr) and self.name == "event":
            self.name = str(self.fn)

    def needs_loss(self, system: PortHamiltonian) -> bool:
        if isinstance(self.fn, sp.Expr):
            return system.loss is not None and system.loss in self.fn.free_symbols
        return True

    def values(
        self,
        system: PortHamiltonian,
        backend: str,
        state: Mapping[str, Any],
        F: Any,
        t: Any,
        params: Mapping[str, Any],
    ) -> Any:
        """e per trajectory, shape (batch,)."""
        if not isinstance(self.fn, sp.Expr):
            return self.fn(state, F, t)
        key = (id(system), backend)
        if key not in self._compiled:
            from ..symbolic.system import compiled_expression

            self._compiled[key] = compiled_expression(system, [], [self.fn], backend)
        fn = self._compiled[key]
        names = {p.name: p.symbol.name for p in system.parameters}
        kwargs = {names[k]: v for k, v in params.items()}
        (value,) = fn(dict(state), F, None, t, **kwargs)
        return value


@dataclass(frozen=True)
class EventRecord:
    """Trajectory ``trajectory`` crossed event ``name`` at time ``time`` (during step ``step``)."""

    trajectory: int
    time: float
    name: str
    step: int
