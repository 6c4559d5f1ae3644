"""The construction-time checks of a system's definition: blocks, H, symbols and parameters.

What :class:`~odeopt.symbolic.system.PortHamiltonian` refuses before it derives anything
(the structure of J and R and the boundedness of H are in :mod:`.structure`):

* blocks: Block symbols, distinct names, none reserved (``lr``, ``h``, ``F``, ``g``, ``t``),
  none named like the loss or its gradient; at least one energy block;
* H: a scalar of globals only (the loss F, reductions Σφ, the time t, parameters): a bare
  coordinate symbol xᵢ outside a reduction has no meaning as a global;
* the entries of H, J, R, G, u and aux: finite, real, no undeclared function, block, gradient
  or symbol (reductions are searched through their summands); one loss, of an energy block;
* parameters: keyed by symbol or by the name of the one symbol of that name, keyword names
  that are identifiers and not reserved, no repeats, no clash with a block; values real,
  finite and obeying the symbol's assumptions (positive, nonnegative, …).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp
from sympy.core.function import AppliedUndef

from ..arrays import arrays_of
from ..errors import StructureError
from .language import Block, Gradient, Loss, Reduction, Time, coordinate_symbols
from .level_set import EnergyLevel
from .switch import Switch

__all__ = [
    "RESERVED_BLOCK_NAMES",
    "RESERVED_NAMES",
    "Parameter",
    "as_matrix",
    "check_block_names",
    "check_blocks",
    "check_defaults",
    "check_hamiltonian",
    "check_parameters",
    "check_symbols",
    "check_value",
    "find_loss",
    "named_symbols",
    "sympify_entry",
]

#: Entries: (label, expression) pairs, e.g. ("J[0,1]", -1), as PortHamiltonian._entries yields
Entries = Sequence[tuple[str, sp.Expr]]


@dataclass(frozen=True)
class Parameter:
    """A named parameter: its keyword ``name``, its sympy ``symbol`` and a ``default`` value."""

    name: str
    symbol: sp.Symbol
    default: float | None
    stored: bool = False  # state, not a hyper-parameter (the stored energy E of a level set)


RESERVED_NAMES = frozenset({"state", "F", "g", "t", "h", "lr", "blocks", "backend", "n"})

#: block names that collide with a name the pipeline gives to something else
RESERVED_BLOCK_NAMES = {
    "lr": "the learning rate of an exported optimizer (the step h)",
    "h": "the step size of the schemes",
    "F": "the loss",
    "g": "the gradient of the loss",
    "t": "the time",
}

_ASSUMPTION_CHECKS: tuple[tuple[str, Callable[[float], bool]], ...] = (
    ("positive", lambda v: v > 0),
    ("nonnegative", lambda v: v >= 0),
    ("negative", lambda v: v < 0),
    ("nonpositive", lambda v: v <= 0),
    ("nonzero", lambda v: v != 0),
)


def check_value(p: Parameter, value: Any, error: type[Exception]) -> None:
    """A parameter value (scalar or per-row array) must be finite, real and obey the symbol's
    assumptions; raises ``error`` naming the parameter."""
    if value is None:
        return
    try:
        arr = np.asarray(arrays_of(value).to_numpy(value), float)
    except (TypeError, ValueError) as exc:
        raise error(f"parameter {p.name!r} must be a real number, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise error(f"parameter {p.name!r} must be finite, got {p.name} = {value!r}")
    for assumption, ok in _ASSUMPTION_CHECKS:
        if p.symbol.assumptions0.get(assumption) and not np.all(ok(arr)):
            raise error(
                f"parameter {p.name!r} ({p.symbol}) is declared {assumption} but was given {value}"
            )


def check_defaults(parameters: Iterable[Parameter]) -> None:
    """Each default given is a real finite scalar (a StructureError names the parameter)."""
    for p in parameters:
        if p.default is None:
            continue
        if isinstance(p.default, (str, bytes)) or np.ndim(p.default) != 0:
            raise StructureError(
                f"parameter {p.name!r} must be a real number (a scalar default), got {p.default!r}"
            )
        try:
            v = complex(p.default)
        except (TypeError, ValueError) as exc:
            raise StructureError(
                f"parameter {p.name!r} must be a real number, got {p.default!r}"
            ) from exc
        if v.imag != 0:
            raise StructureError(f"parameter {p.name!r} must be a real number, got {p.default!r}")
        if not np.isfinite(v.real):
            raise StructureError(
                f"parameter {p.name!r} must be finite, got {p.name} = {p.default!r}"
            )


def as_matrix(value: Any, what: str, shape: tuple[int, int] | None = None) -> sp.Matrix:
    """``value`` as a sympy Matrix (of ``shape`` when given); a StructureError names ``what``."""
    try:
        m = sp.Matrix(value)
    except Exception as exc:  # sympy raises several types for ragged input
        raise StructureError(f"{what} must be a matrix (a list of rows); got {value!r}") from exc
    if shape is not None and m.shape != shape:
        raise StructureError(
            f"{what} has shape {m.shape[0]}×{m.shape[1]}, but the system needs "
            f"{shape[0]}×{shape[1]} (one row/column per energy block)"
        )
    return m


def check_blocks(blocks: Sequence[Block] | Block, what: str) -> tuple[Block, ...]:
    """The blocks as a tuple: Block symbols with distinct, unreserved names; ``what`` is
    "blocks" (at least one needed) or "aux"."""
    if isinstance(blocks, Block):
        blocks = [blocks]
    out = tuple(blocks)
    for b in out:
        if not isinstance(b, Block):
            raise StructureError(
                f"{what} must be Block symbols made with odeopt.blocks(); got {b!r} "
                f"({type(b).__name__})"
            )
    names = [b.name for b in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise StructureError(f"{what} names repeat: {dup}")
    for b in out:
        if b.name in RESERVED_BLOCK_NAMES:
            raise StructureError(
                f"block {b.name!r} ({what}): the name {b.name!r} is reserved for "
                f"{RESERVED_BLOCK_NAMES[b.name]}; rename the block"
            )
    if what == "blocks" and not out:
        raise StructureError("a system needs at least one energy block")
    return out


def check_hamiltonian(H: Any) -> sp.Expr:
    """H as a sympy scalar of globals (no coordinate symbol outside a reduction)."""
    if isinstance(H, (sp.MatrixBase, list, tuple)):
        raise StructureError(f"H must be a scalar expression, got a {type(H).__name__}: {H}")
    try:
        H = sp.sympify(H)
    except sp.SympifyError as exc:
        raise StructureError(f"H must be a sympy expression, got {H!r}") from exc
    if not isinstance(H, sp.Expr):
        raise StructureError(f"H must be a scalar expression, got {H!r}")
    coords = coordinate_symbols(H)
    if coords:
        names = ", ".join(sorted(s.name for s in coords))
        raise StructureError(
            f"H must be a scalar of globals, but it contains the coordinate symbol(s) "
            f"{names} outside a reduction; write sqnorm(p), inner(a, b) or total(φ) instead"
        )
    return H


def sympify_entry(value: Any, where: str) -> sp.Expr:
    """``value`` as a scalar sympy expression; a StructureError names ``where``."""
    try:
        e = sp.sympify(value)
    except (sp.SympifyError, TypeError, SyntaxError) as exc:
        raise StructureError(f"{where} must be a sympy expression, got {value!r}") from exc
    if not isinstance(e, sp.Expr):
        raise StructureError(f"{where} must be a scalar expression, got {value!r}")
    return e


def check_block_names(blocks: Iterable[Block], loss: Loss | None) -> None:
    """A block may not take the name of the loss or of its gradient."""
    if loss is None:
        return
    for b in blocks:
        for what, nm in (("loss", loss.name), ("gradient", loss.grad.name)):
            if b.name == nm:
                raise StructureError(
                    f"block {b.name!r}: the name {nm!r} is the {what}'s; rename the block"
                )


def find_loss(entries: Entries, blocks: Sequence[Block]) -> Loss | None:
    """The one loss in the entries (None if none), which must be of an energy block."""
    losses: set[Loss] = set()
    for _, e in entries:
        losses |= {s for s in sp.sympify(e).free_symbols if isinstance(s, Loss)}
    if len(losses) > 1:
        raise StructureError(f"a system has one loss; found {sorted(map(str, losses))}")
    loss = next(iter(losses), None)
    if loss is not None and loss.block not in blocks:
        raise StructureError(f"the loss {loss} depends on block {loss.block}, not an energy block")
    return loss


def named_symbols(
    entries: Entries, energy_level: EnergyLevel | None, switches: Sequence[Any]
) -> dict[str, set[sp.Symbol]]:
    """The plain symbols (candidate parameters) of the system's expressions, by name."""
    exprs: list[Any] = [e for _, e in entries]
    if energy_level is not None:
        exprs += [energy_level.initial, energy_level.domain, energy_level.shift]
    for sw in switches:
        if isinstance(sw, Switch):
            exprs += [sw.goal, *sw.set, *sw.set.values()]
    out: dict[str, set[sp.Symbol]] = {}
    for e in exprs:
        if e is None:
            continue
        try:
            todo = list(sp.sympify(e).free_symbols)
        except (sp.SympifyError, TypeError, AttributeError):
            continue
        while todo:
            s = todo.pop()
            if isinstance(s, Reduction):
                todo.extend(s.summand.free_symbols)
            elif isinstance(s, sp.Symbol) and not isinstance(s, (Block, Gradient, Loss, Time)):
                out.setdefault(s.name, set()).add(s)
    return out


def check_parameters(
    parameters: Mapping[Any, Any] | Sequence[Any] | None,
    aliases: Mapping[str, Any] | None,
    symbols_by_name: Callable[[], dict[str, set[sp.Symbol]]],
    block_names: set[str],
) -> tuple[Parameter, ...]:
    """Parameters keyed by their sympy symbols or by the symbols' names (a string names the
    one symbol of that name in ``symbols_by_name()``, called only when a name is given: the
    symbols of H, J, R, G, u, aux, the energy level and the switches)."""
    if parameters is None:
        parameters = {}
    if isinstance(parameters, (str, sp.Basic)) or not isinstance(
        parameters, (Mapping, list, tuple, set, frozenset)
    ):
        raise StructureError(
            "parameters must be a mapping {symbol: value or None} or a list of symbols, "
            f"got {parameters!r}"
        )
    if not isinstance(parameters, Mapping):
        parameters = {s: None for s in parameters}
    if aliases is not None and not isinstance(aliases, Mapping):
        raise StructureError(f"aliases must be a mapping {{name: symbol}}, got {aliases!r}")
    named: dict[str, set[sp.Symbol]] | None = None

    def resolve(key: Any, what: str) -> sp.Symbol:
        nonlocal named
        if isinstance(key, str):
            if named is None:
                named = symbols_by_name()
            found = named.get(key, set())
            if len(found) == 1:
                return next(iter(found))
            if not found:
                known = ", ".join(sorted(named)) or "none"
                raise StructureError(
                    f"{what} {key!r} names no symbol of the system (its symbols: {known}); "
                    f"use the symbol itself, made with odeopt.parameters({key!r}, ...)"
                )
            raise StructureError(
                f"{what} {key!r} is ambiguous: the system has {len(found)} symbols named "
                f"{key!r} with different assumptions; use the symbol itself"
            )
        if not isinstance(key, sp.Symbol) or isinstance(
            key, (Block, Gradient, Loss, Reduction, Time)
        ):
            raise StructureError(
                f"{what} must be a plain sympy symbol (made with odeopt.parameters) or its "
                f"name, got {key!r} ({type(key).__name__})"
            )
        return key

    resolved: dict[sp.Symbol, Any] = {}
    given: dict[sp.Symbol, Any] = {}
    for key, value in parameters.items():
        sym = resolve(key, "parameters= key")
        if sym in resolved:
            raise StructureError(
                f"parameter {sym.name!r} is given twice in parameters= "
                f"(as {given[sym]!r} and as {key!r})"
            )
        resolved[sym], given[sym] = value, key
    names = {s: s.name for s in resolved}
    for alias, target in (aliases or {}).items():
        if not isinstance(alias, str):
            raise StructureError(
                f"aliases are keyword names (strings), got {alias!r} ({type(alias).__name__})"
            )
        sym = resolve(target, f"alias {alias!r}:")
        if sym not in resolved:
            raise StructureError(f"alias {alias!r} names {sym}, which is not a parameter")
        names[sym] = alias
    out = []
    for sym, value in resolved.items():
        if not names[sym].isidentifier():
            raise StructureError(f"parameter name {names[sym]!r} is not an identifier")
        if names[sym] in RESERVED_NAMES:
            raise StructureError(
                f"parameter name {names[sym]!r} is reserved (reserved: "
                f"{', '.join(sorted(RESERVED_NAMES))}); rename it or give an alias"
            )
        out.append(Parameter(names[sym], sym, None if value is None else value))
    seen = [p.name for p in out]
    dup = sorted({n for n in seen if seen.count(n) > 1})
    if dup:
        raise StructureError(f"parameter names repeat: {dup}")
    for p in out:
        if p.name in block_names or p.symbol.name in block_names:
            raise StructureError(
                f"parameter {p.name!r} has the name of a block; rename one of them"
            )
    return tuple(out)


def check_symbols(
    entries: Entries,
    blocks: Iterable[Block],
    parameters: Iterable[Parameter],
    loss: Loss | None,
) -> None:
    """Every entry finite and real, with no undeclared function, block, gradient or symbol
    (``blocks``: the energy and auxiliary blocks; reductions searched through their summands)."""
    declared_blocks = set(blocks)
    declared_params = {p.symbol for p in parameters}
    for where, expr in entries:
        expr = sp.sympify(expr)
        if expr.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
            raise StructureError(f"{where} = {expr} is not finite")
        if expr.has(sp.I):
            raise StructureError(f"{where} = {expr} is not real")
        undef = expr.atoms(AppliedUndef)
        if undef:
            raise StructureError(
                f"undeclared function {sorted(map(str, undef))[0]} in {where}; write it with "
                "sympy functions, parameters and globals"
            )
        todo = list(expr.free_symbols)
        while todo:
            s = todo.pop()
            if isinstance(s, Reduction):
                todo.extend(s.summand.free_symbols)
            elif isinstance(s, Block):
                if s not in declared_blocks:
                    raise StructureError(
                        f"block {s.name!r} in {where} is not one of the system's blocks "
                        f"({', '.join(b.name for b in declared_blocks)})"
                    )
            elif isinstance(s, (Loss, Time)):
                continue
            elif isinstance(s, Gradient):
                if loss is None or s != loss.grad:
                    raise StructureError(
                        f"gradient symbol {s.name!r} in {where} belongs to no loss of this system"
                    )
            elif s not in declared_params:
                raise StructureError(
                    f"undeclared symbol {s.name!r} in {where}; declare it in parameters="
                )
