"""A system's expressions as batched numeric functions (numpy or torch, float64 or float32).

:class:`CompiledSystem` evaluates the vector field ẋ = f(x) of a
:class:`~odeopt.symbolic.system.PortHamiltonian` per coordinate over a batch of trajectories,
``{block: (batch, n) array}``, and its Hamiltonian H (a global, shape (batch,)), through
:func:`~odeopt.symbolic.codegen.compile_expressions`; :func:`compiled_expression` compiles
further per-coordinate or global expressions of the same symbols.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sympy as sp

from .codegen import Compiled, compile_expressions

if TYPE_CHECKING:
    from .system import PortHamiltonian

__all__ = ["CompiledSystem", "compiled_expression"]


class CompiledSystem:
    """Batched numeric vector field and Hamiltonian of a :class:`PortHamiltonian`.

    ``field(state, F, g, t=0.0, **params)`` returns ``{block name: dx/dt}`` with arrays of
    shape (batch, n); ``energy(state, F, t=0.0, **params)`` returns H of shape (batch,).
    A level-set system's stored energy E, when not given, is H of the state.
    Parameters default to the system's defaults. ``state`` maps block names to (batch, n)
    arrays (numpy, or torch tensors for ``backend="torch"``).
    """

    def __init__(self, system: PortHamiltonian, backend: str) -> None:
        self.system = system
        self.backend = backend
        params = [p.symbol for p in system.parameters]
        exprs = list(system.vector_field.values())
        self._field = compile_expressions(exprs, [], system.all_blocks, params, backend)
        self._energy = compile_expressions(
            [], [system.hamiltonian], system.all_blocks, params, backend
        )
        self._names = [b.name for b in system.vector_field]
        self._keywords = {p.name: p.symbol.name for p in system.parameters}

    @property
    def source(self) -> str:
        return self._field.source

    def _params(self, values: dict[str, Any]) -> dict[str, Any]:
        merged = self.system.with_parameters(**values)
        return {self._keywords[k]: v for k, v in merged.items()}

    def field(
        self, state: Mapping[str, Any], F: Any = None, g: Any = None, t: Any = 0.0, **params: Any
    ) -> dict[str, Any]:
        values = self._params(params)
        ls = self.system.level_set
        if ls is not None and values[ls.E.name] is None:  # E defaults to H of this state
            values[ls.E.name] = self.energy(state, F, t, **params)
        out = self._field(dict(state), F, g, t, **values)
        return dict(zip(self._names, out, strict=True))

    __call__ = field

    def energy(self, state: Mapping[str, Any], F: Any = None, t: Any = 0.0, **params: Any) -> Any:
        values = self._params(params)
        ls = self.system.level_set
        if ls is not None and values[ls.E.name] is None:
            values[ls.E.name] = 1.0  # H does not use the stored E
        (H,) = self._energy(dict(state), F, None, t, **values)
        return H


def compiled_expression(
    system: PortHamiltonian,
    coordinate_exprs: Sequence[sp.Expr],
    scalar_exprs: Sequence[sp.Expr] = (),
    backend: str = "numpy",
) -> Compiled:
    """Compile further per-coordinate or global expressions of a system's symbols."""
    return compile_expressions(
        coordinate_exprs,
        scalar_exprs,
        system.all_blocks,
        [p.symbol for p in system.parameters],
        backend,
    )
