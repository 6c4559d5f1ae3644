"""Port-Hamiltonian systems over n-dimensional blocks.

A system is ẋ = (J(x) − R(x)) ∇H(x) + G(x) u,  y = G(x)ᵀ ∇H(x), where x stacks the *energy
blocks* coordinate by coordinate: for coordinate i, xᵢ = (θᵢ, pᵢ, …) ∈ Rᵏ, J and R are k×k,
G is k×m, u and y have m entries. H is a global scalar (a function of the loss, reductions,
time and parameters), so ∇H at coordinate i is (∂H/∂θᵢ, ∂H/∂pᵢ, …), computed by the chain
rule through the globals (:func:`~odeopt.symbolic.language.coordinate_derivative`).
*Auxiliary blocks* (Adam's second moment, …) carry their own explicit per-coordinate ODE.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp
from sympy.core.function import AppliedUndef

from ..errors import StructureError
from .codegen import Compiled, compile_expressions
from .language import (
    Block,
    Gradient,
    Loss,
    Reduction,
    Time,
    coordinate_derivative,
    coordinate_symbols,
)
from .level_set import EnergyLevel, LevelSet
from .switch import Switch

__all__ = ["BlockMap", "Parameter", "PortHamiltonian", "CompiledSystem"]


class BlockMap(Mapping[Block, sp.Expr]):
    """A read-only mapping keyed by blocks, also indexable by the block's name."""

    def __init__(self, items: Sequence[tuple[Block, sp.Expr]]) -> None:
        self._items = dict(items)
        self._by_name = {b.name: b for b in self._items}

    def __getitem__(self, key: Block | str) -> sp.Expr:
        if isinstance(key, str):
            if key not in self._by_name:
                raise KeyError(f"no block named {key!r}; blocks are {list(self._by_name)}")
            key = self._by_name[key]
        if key not in self._items:
            raise KeyError(
                f"no block {key!r} ({type(key).__name__}); blocks are {list(self._by_name)} "
                "(index by the Block or its name)"
            )
        return self._items[key]

    def __iter__(self) -> Iterator[Block]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{b.name}': {e}" for b, e in self._items.items()) + "}"


@dataclass(frozen=True)
class Parameter:
    """A named parameter: its keyword ``name``, its sympy ``symbol`` and a ``default`` value."""

    name: str
    symbol: sp.Symbol
    default: float | None
    stored: bool = False  # state, not a hyper-parameter (the stored energy E of a level set)


def _as_matrix(value: Any, what: str, shape: tuple[int, int] | None = None) -> sp.Matrix:
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


def _nonzero_matrix(m: sp.Matrix) -> bool:
    return any(_nonzero(e) for e in m)


def _nonzero(expr: sp.Expr) -> bool:
    """True unless expr simplifies to 0."""
    expr = sp.sympify(expr)
    if expr == 0:
        return False
    return sp.simplify(expr) != 0


RESERVED_NAMES = frozenset({"state", "F", "g", "t", "h", "lr", "blocks", "backend", "n"})

#: block names that collide with a name the pipeline gives to something else
RESERVED_BLOCK_NAMES = {
    "lr": "the learning rate of an exported optimizer (the step h)",
    "h": "the step size of the schemes",
    "F": "the loss",
    "g": "the gradient of the loss",
    "t": "the time",
}

#: relative tolerance of the skew/symmetry/PSD checks on float entries (per matrix size k):
#: |Jᵢⱼ + Jⱼᵢ| ≤ tol·k·max|J|, and eigenvalues λ ≥ −tol·k·max|λ| count as ≥ 0 (round-off of
#: decimals such as R = [[.01, .05], [.05, .25]] = vvᵀ). Exact entries are decided exactly.
FLOAT_RTOL = 1e-12

_NON_FINITE = (sp.nan, sp.zoo, sp.oo, -sp.oo)


def _prepare(M: sp.Matrix) -> tuple[sp.Matrix, float | None, bool]:
    """(matrix, tolerance or None, rationalized) for the structure checks.

    Exact entries: (M, None, False), decided exactly. All entries numbers with a float among
    them: (M, FLOAT_RTOL·k·max|Mᵢⱼ|, False), decided numerically with that tolerance.
    Floats mixed with symbols: each float is read as the shortest decimal that prints it
    (0.1 → 1/10, sympy's nsimplify(rational=True)) and the result is decided exactly.
    """
    if not any(sp.sympify(e).has(sp.Float) for e in M):
        return M, None, False
    if all(sp.sympify(e).is_Number for e in M):
        size = max((abs(float(e)) for e in M), default=0.0)
        return M, FLOAT_RTOL * max(M.shape[0], 1) * size, False
    return M.applyfunc(lambda e: sp.nsimplify(e, rational=True)), None, True


def _show(e: Any) -> str:
    """An entry for a message: floats as Python prints them (0.3, not 0.300000000000000)."""
    e = sp.sympify(e)
    return f"{float(e):g}" if isinstance(e, sp.Float) else str(e)


def _is_zero(expr: sp.Expr, tol: float | None) -> bool:
    if tol is None:
        return not _nonzero(expr)
    return abs(float(expr)) <= tol


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
        arr = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, float)
    except (TypeError, ValueError) as exc:
        raise error(f"parameter {p.name!r} must be a real number, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise error(f"parameter {p.name!r} must be finite, got {p.name} = {value!r}")
    for assumption, ok in _ASSUMPTION_CHECKS:
        if p.symbol.assumptions0.get(assumption) and not np.all(ok(arr)):
            raise error(
                f"parameter {p.name!r} ({p.symbol}) is declared {assumption} but was given {value}"
            )


class PortHamiltonian:
    """An optimizer written as a port-Hamiltonian ODE over n-dimensional blocks.

    ẋ = (J − R)∇H + G u,   y = Gᵀ∇H,   ṡ = f_aux(…) for auxiliary blocks s.

    Parameters
    ----------
    hamiltonian:
        H, a scalar of globals only: the loss F, reductions (|p|², ⟨a, b⟩, Σφ), the time t and
        parameters. A bare coordinate symbol in H is an error.
    blocks:
        The energy blocks, in the order of J's rows (e.g. ``[theta, p]``).
    J, R:
        k×k per-coordinate matrices (nested lists or sympy matrices); J skew-symmetric, R
        symmetric positive semidefinite. R defaults to zero.
    G, u:
        Optional port: G is k×m; u is a sequence of m expressions or a callable taking the
        output y = Gᵀ∇H (a sympy column) and returning u, e.g. ``lambda y: -k * y``.
    aux:
        Auxiliary blocks with their own ODE, ``{s: rate}``.
    parameters:
        ``{symbol: default value or None}`` for every parameter symbol used (or a list of
        symbols). A key may be the symbol's name, ``{"m": 1.0}``: it names the one symbol of
        that name in H, J, R, G, u, aux, the energy level or the switches. Defaults are real
        finite scalars. The names in ``RESERVED_NAMES`` (``h``, ``lr``, ``t``, ``F``, ``g``,
        …) and the blocks' names are refused.
    aliases:
        Keyword names for parameters, ``{"friction": gamma}`` (or ``{"friction": "gamma"}``);
        the keyword defaults to the symbol's name.

    Raises
    ------
    StructureError
        Naming the entry: J not skew, R not symmetric or not PSD (also after substituting the
        default parameter values; exact entries are decided exactly, float entries to the
        relative tolerance ``FLOAT_RTOL``), non-finite entries or defaults ("is not finite",
        "must be finite"), H not a scalar of globals, shapes that disagree, undeclared
        symbols or blocks, blocks named ``lr``, ``h``, ``F``, ``g``, ``t`` (or like the loss,
        its gradient or a parameter), parameter values that contradict their symbol's
        assumptions, and H unbounded below through a kinetic term κ·|x|² with κ < 0 (from
        the assumptions or the defaults, e.g. a negative mass; see :meth:`_kinetic_terms`).
    """

    def __init__(
        self,
        hamiltonian: Any,
        blocks: Sequence[Block],
        J: Any,
        R: Any = None,
        G: Any = None,
        u: Any = None,
        aux: Mapping[Block, Any] | None = None,
        parameters: Mapping[sp.Symbol, Any] | Sequence[sp.Symbol] | None = None,
        aliases: Mapping[str, sp.Symbol] | None = None,
        name: str = "system",
        description: str = "",
        energy_level: EnergyLevel | None = None,
        switches: Sequence[Switch] = (),
        metric: Any = None,
    ) -> None:
        self.name = name
        self.description = description
        self.blocks = self._check_blocks(blocks, "blocks")
        self.aux_blocks = self._check_blocks(list(aux or {}), "aux")
        clash = {b.name for b in self.blocks} & {b.name for b in self.aux_blocks}
        if clash:
            raise StructureError(f"block(s) {sorted(clash)} are both energy and auxiliary blocks")
        k = len(self.blocks)
        self.hamiltonian = self._check_hamiltonian(hamiltonian)
        self.J = _as_matrix(J, "J", (k, k))
        self.R = sp.zeros(k, k) if R is None else _as_matrix(R, "R", (k, k))
        if G is None:
            if u is not None:
                raise StructureError("an input u was given without a port matrix G")
            self.G = sp.zeros(k, 0)
        else:
            self.G = _as_matrix(G, "G")
            if self.G.shape[0] != k:
                raise StructureError(
                    f"G has {self.G.shape[0]} rows, but the system has {k} energy blocks"
                )
        if not isinstance(name, str):
            raise StructureError(f"name must be a string, got {name!r}")
        if energy_level is not None and not isinstance(energy_level, EnergyLevel):
            raise StructureError(
                f"energy_level must be an odeopt.symbolic.EnergyLevel, got {energy_level!r}"
            )
        if isinstance(switches, Switch) or not isinstance(switches, (list, tuple)):
            raise StructureError(
                f"switches must be a list of odeopt.symbolic.Switch objects, got {switches!r}"
            )
        if aux is not None and not isinstance(aux, Mapping):
            raise StructureError(f"aux must be a mapping {{block: rate}}, got {aux!r}")

        # ∇H per coordinate, by the chain rule through the globals.
        try:
            self.grad_hamiltonian = sp.Matrix(
                [coordinate_derivative(self.hamiltonian, b) for b in self.blocks]
            )
        except TypeError as exc:
            raise StructureError(f"H = {self.hamiltonian}: {exc}") from exc
        self.y = self.G.T * self.grad_hamiltonian
        m = self.G.shape[1]
        if u is None:
            self.u = sp.zeros(m, 1)
        else:
            if callable(u):
                try:
                    raw = u(self.y)
                except Exception as exc:  # the user's function: name it and what it was given
                    raise StructureError(
                        f"u(y) raised {type(exc).__name__}: {exc}; u is called with the output "
                        f"y = Gᵀ∇H, a sympy column of {m} entr{'y' if m == 1 else 'ies'}: "
                        f"{list(self.y)}"
                    ) from exc
            else:
                raw = u
            self.u = _as_matrix(raw, "u")
            if self.u.shape == (1, m) and m != 1:
                self.u = self.u.T
            if self.u.shape != (m, 1):
                raise StructureError(
                    f"u has shape {self.u.shape[0]}×{self.u.shape[1]}, but G has {m} column(s)"
                )
        self.aux = BlockMap(
            [(b, self._sympify(e, f"aux[{b.name}]")) for b, e in (aux or {}).items()]
        )
        self.loss = self._find_loss()  # after u and aux: the loss may appear only there
        self._check_block_names()
        # after H, J, R, G, u and aux: a parameter given by name is found among their symbols
        self.parameters = self._check_parameters(parameters, aliases, energy_level, switches)

        self._check_symbols()
        self._check_structure(self.J, self.R, "")
        self.r_psd, self.r_psd_reason = self._psd_status(self.R, "")
        self._kinetic = self._kinetic_terms()
        self._check_parameter_values()

        rhs = ((self.J - self.R) * self.grad_hamiltonian + self.G * self.u).applyfunc(sp.simplify)
        # the port-Hamiltonian form (J − R)∇H + Gu: what the energy balance is proved for
        self.structural_field = BlockMap([(b, rhs[i]) for i, b in enumerate(self.blocks)])
        self.level_set: LevelSet | None = None
        if energy_level is not None:
            rhs = self._use_level_set(energy_level, rhs)
        self.vector_field = BlockMap(
            [(b, rhs[i]) for i, b in enumerate(self.blocks)] + list(self.aux.items())
        )
        self.switches = self._check_switches(switches)
        self.metric = metric
        if metric is not None and not hasattr(metric, "apply"):
            raise StructureError(
                f"metric must have apply(problem, theta, g) (see odeopt.symbolic.metric), "
                f"got {metric!r}"
            )

    def _check_switches(self, switches: Sequence[Switch]) -> tuple[Switch, ...]:
        params = {p.symbol for p in self.parameters if not p.stored}
        for sw in switches:
            if not isinstance(sw, Switch):
                raise StructureError(f"switches are odeopt.symbolic.Switch objects, got {sw!r}")
            if self.loss is None:
                raise StructureError("a switch fires on the loss; this system has none")
            for what, e in [("goal", sw.goal), *(("set value", v) for v in sw.set.values())]:
                stray = e.free_symbols - params
                if stray:
                    raise StructureError(
                        f"switch {what} {e} uses {sorted(map(str, stray))}, which are not "
                        "parameters of the system"
                    )
            bad = [k for k in sw.set if k not in params]
            if bad or not sw.set:
                raise StructureError(
                    f"a switch sets parameters of the system; got {sorted(map(str, bad)) or 'none'}"
                )
        return tuple(switches)

    def _use_level_set(self, spec: EnergyLevel, rhs: sp.Matrix) -> sp.Matrix:
        if _nonzero_matrix(self.R) or _nonzero_matrix(self.G * self.u) or self.aux_blocks:
            raise StructureError(
                "energy_level needs a conservative system (R = 0, no port input, no auxiliary "
                "blocks): only then is the energy E constant along the flow"
            )
        ls = LevelSet(spec, self.hamiltonian, self.blocks)
        if any(p.name == spec.symbol or p.symbol.name == spec.symbol for p in self.parameters):
            raise StructureError(
                f"energy_level: the stored energy's name {spec.symbol!r} is already a parameter"
            )
        self.level_set = ls
        self.parameters = (*self.parameters, Parameter(spec.symbol, ls.E, None, stored=True))
        if spec.eliminate:
            rhs = rhs.applyfunc(ls.on_surface)
        return rhs

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_blocks(blocks: Sequence[Block], what: str) -> tuple[Block, ...]:
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

    @staticmethod
    def _check_hamiltonian(H: Any) -> sp.Expr:
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

    @staticmethod
    def _sympify(value: Any, where: str) -> sp.Expr:
        try:
            e = sp.sympify(value)
        except (sp.SympifyError, TypeError, SyntaxError) as exc:
            raise StructureError(f"{where} must be a sympy expression, got {value!r}") from exc
        if not isinstance(e, sp.Expr):
            raise StructureError(f"{where} must be a scalar expression, got {value!r}")
        return e

    def _check_block_names(self) -> None:
        """A block may not take the name of the loss or of its gradient."""
        if self.loss is None:
            return
        for b in self.all_blocks:
            for what, nm in (("loss", self.loss.name), ("gradient", self.loss.grad.name)):
                if b.name == nm:
                    raise StructureError(
                        f"block {b.name!r}: the name {nm!r} is the {what}'s; rename the block"
                    )

    def _named_symbols(
        self, energy_level: EnergyLevel | None, switches: Sequence[Any]
    ) -> dict[str, set[sp.Symbol]]:
        """The plain symbols (candidate parameters) of the system's expressions, by name."""
        exprs: list[Any] = [e for _, e in self._entries()]
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

    def _check_parameters(
        self,
        parameters: Mapping[Any, Any] | Sequence[Any] | None,
        aliases: Mapping[str, Any] | None,
        energy_level: EnergyLevel | None = None,
        switches: Sequence[Any] = (),
    ) -> tuple[Parameter, ...]:
        """Parameters keyed by their sympy symbols or by the symbols' names (a string names the
        one symbol of that name in H, J, R, G, u, aux, the energy level or the switches)."""
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
                    named = self._named_symbols(energy_level, switches)
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
        blocks = {b.name for b in self.all_blocks}
        for p in out:
            if p.name in blocks or p.symbol.name in blocks:
                raise StructureError(
                    f"parameter {p.name!r} has the name of a block; rename one of them"
                )
        return tuple(out)

    def _entries(self) -> Iterator[tuple[str, sp.Expr]]:
        yield "H", self.hamiltonian
        k = len(self.blocks)
        for M, label in ((self.J, "J"), (self.R, "R")):
            for i, j in itertools.product(range(k), range(k)):
                yield f"{label}[{i},{j}]", M[i, j]
        for i, j in itertools.product(range(self.G.shape[0]), range(self.G.shape[1])):
            yield f"G[{i},{j}]", self.G[i, j]
        for i in range(self.u.shape[0]):
            yield f"u[{i}]", self.u[i]
        for b, e in self.aux.items():
            yield f"aux[{b.name}]", e

    def _find_loss(self) -> Loss | None:
        losses: set[Loss] = set()
        for _, e in self._entries():
            losses |= {s for s in sp.sympify(e).free_symbols if isinstance(s, Loss)}
        if len(losses) > 1:
            raise StructureError(f"a system has one loss; found {sorted(map(str, losses))}")
        loss = next(iter(losses), None)
        if loss is not None and loss.block not in self.blocks:
            raise StructureError(
                f"the loss {loss} depends on block {loss.block}, not an energy block"
            )
        return loss

    def _check_symbols(self) -> None:
        declared_blocks = set(self.blocks) | set(self.aux_blocks)
        declared_params = {p.symbol for p in self.parameters}
        for where, expr in self._entries():
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
                    if self.loss is None or s != self.loss.grad:
                        raise StructureError(
                            f"gradient symbol {s.name!r} in {where} belongs to no loss of "
                            "this system"
                        )
                elif s not in declared_params:
                    raise StructureError(
                        f"undeclared symbol {s.name!r} in {where}; declare it in parameters="
                    )

    def _check_structure(self, J: sp.Matrix, R: sp.Matrix, context: str) -> None:
        """J skew and R symmetric: exactly on exact entries, to FLOAT_RTOL on float ones."""
        for label, M in (("J", J), ("R", R)):
            for i, j in itertools.product(range(M.shape[0]), range(M.shape[1])):
                if sp.sympify(M[i, j]).has(*_NON_FINITE):
                    raise StructureError(f"{label}[{i},{j}] = {M[i, j]} is not finite{context}")
        k = J.shape[0]
        Jc, jtol, _ = _prepare(J)
        Rc, rtol, _ = _prepare(R)
        for i in range(k):
            for j in range(i, k):
                if not _is_zero(Jc[i, j] + Jc[j, i], jtol):
                    what = (
                        f"J[{i},{i}] = {_show(J[i, i])} (the diagonal must be 0)"
                        if i == j
                        else f"J[{i},{j}] = {_show(J[i, j])} but J[{j},{i}] = {_show(J[j, i])}"
                    )
                    raise StructureError(f"J is not skew-symmetric{context}: {what}")
                if j > i and not _is_zero(Rc[i, j] - Rc[j, i], rtol):
                    raise StructureError(
                        f"R is not symmetric{context}: R[{i},{j}] = {_show(R[i, j])} but "
                        f"R[{j},{i}] = {_show(R[j, i])}"
                    )
        psd, reason = self._psd_status(R, context)
        if psd is False:
            raise StructureError(f"R is not positive semidefinite{context}: {reason}")

    @staticmethod
    def _psd_status(R: sp.Matrix, context: str) -> tuple[bool | None, str]:
        """Whether R (symmetric) is PSD: (True/False/None, reason).

        Exact entries: all principal minors ≥ 0, decided from the symbols' assumptions.
        Float entries only: the eigenvalues of (R + Rᵀ)/2, each λ ≥ −FLOAT_RTOL·k·max|λ|
        counting as ≥ 0 (round-off). Floats among symbols: read as decimals, then exact.
        Non-finite entries: False, "R[i,j] = inf is not finite".
        """
        k = R.shape[0]
        for i, j in itertools.product(range(k), range(k)):
            if sp.sympify(R[i, j]).has(*_NON_FINITE):
                return False, f"R[{i},{j}] = {R[i, j]} is not finite"
        R, tol, decimal = _prepare(R)
        if tol is not None:
            A = np.array(R.tolist(), dtype=float)
            lam = np.linalg.eigvalsh((A + A.T) / 2)
            bound = FLOAT_RTOL * k * float(np.abs(lam).max(initial=0.0))
            for i in range(k):
                if A[i, i] < -bound:
                    return False, f"R[{i},{i}] = {A[i, i]:g} < 0"
            if lam.min(initial=0.0) < -bound:
                return False, (
                    f"R has the eigenvalue {lam.min():.6g} < 0 (float entries: eigenvalues "
                    f"λ ≥ −{FLOAT_RTOL:g}·k·max|λ| = {-bound:.3g} count as ≥ 0)"
                )
            return True, (
                f"the eigenvalues of R are ≥ −{FLOAT_RTOL:g}·k·max|λ| (float entries, a "
                f"tolerance for round-off; the smallest is {lam.min(initial=0.0):.3g})"
            )
        undecided = []
        for size in range(1, k + 1):
            for rows in itertools.combinations(range(k), size):
                sub = R.extract(list(rows), list(rows))
                minor = sp.simplify(sub[0, 0] if size == 1 else sub.det())
                label = (
                    f"R[{rows[0]},{rows[0]}]" if size == 1 else f"det R[{list(rows)}, {list(rows)}]"
                )
                shown = f"{float(minor):g}" if minor.is_Number else str(minor)
                if minor.is_negative or minor.is_nonnegative is False:
                    return False, f"{label} = {shown} < 0"
                if minor.is_nonnegative is None:
                    undecided.append(f"{label} = {shown}")
        note = " (float entries read as decimals)" if decimal else ""
        if undecided:
            return None, (
                "the sign of " + "; ".join(undecided) + " could not be decided from the "
                "symbols' assumptions" + note
            )
        return True, "all principal minors of R are nonnegative" + note

    def _kinetic_terms(self) -> list[tuple[str, sp.Expr]]:
        """Terms κ·|x|² through which H is unbounded below when κ < 0: [(label, κ)].

        A block x (not the loss's) qualifies when H is linear in one reduction whose summand
        has the part a·x² (a of parameters only), with a coefficient c of parameters only,
        and x occurs nowhere else in H; then H → −∞ along x → ∞ if κ = c·a < 0.
        A κ < 0 from the symbols' assumptions is refused here; the others are returned.
        """
        H = self.hamiltonian
        reds = [s for s in H.free_symbols if isinstance(s, Reduction)]
        theta = self.loss.block if self.loss is not None else None
        plain = (Block, Gradient, Loss, Reduction, Time)
        out: list[tuple[str, sp.Expr]] = []
        for S in reds:
            if sp.diff(H, S, 2) != 0:
                continue
            c = sp.diff(H, S)
            if any(isinstance(s, plain) for s in c.free_symbols):
                continue
            terms = sp.Add.make_args(sp.expand(S.summand))
            for x in {a for a in S.summand.free_symbols if isinstance(a, Block)} - {theta}:
                part = [tm for tm in terms if tm.has(x)]
                if any(
                    any(isinstance(a, (Block, Gradient)) and a != x for a in tm.free_symbols)
                    for tm in part
                ) or any(o != S and o.summand.has(x) for o in reds):
                    continue
                a = sp.simplify(sp.Add(*part) / x**2)
                if any(isinstance(s, plain) for s in a.free_symbols):
                    continue
                kappa = sp.simplify(c * a)
                label = f"|{x.name}|^2"
                if kappa.is_negative:
                    raise StructureError(
                        f"H = {H} is unbounded below: the coefficient of {label} is {kappa} "
                        "< 0 for every value its symbols' assumptions allow (H → −∞ as "
                        f"|{x.name}| → ∞, so a decreasing H would prove nothing)"
                    )
                if not kappa.is_nonnegative:
                    out.append((label, kappa))
        return out

    def _check_kinetic_values(self, values: Mapping[str, Any], error: type[Exception]) -> None:
        """Refuse parameter values (scalars or per-row arrays, by keyword) that make a
        kinetic coefficient κ negative (H unbounded below); see :meth:`_kinetic_terms`."""
        by_symbol = {p.symbol: p for p in self.parameters}
        for label, kappa in self._kinetic:
            syms = sorted(kappa.free_symbols, key=lambda s: s.name)
            if any(s not in by_symbol or values.get(by_symbol[s].name) is None for s in syms):
                continue
            vals = []
            for s in syms:
                v = values[by_symbol[s].name]
                v = v.detach().cpu().numpy() if hasattr(v, "detach") else v
                vals.append(np.asarray(v, dtype=float))
            with np.errstate(all="ignore"):
                got = np.asarray(sp.lambdify(syms, kappa, "numpy")(*vals), dtype=float)
            bad = ~np.isfinite(got) | (got < 0)
            if bad.any():
                shown = ", ".join(
                    f"{by_symbol[s].name} = {values[by_symbol[s].name]}" for s in syms
                )
                worst = float(got[bad].flat[0]) if got.ndim else float(got)
                why = "is not finite" if not np.isfinite(worst) else "< 0"
                raise error(
                    f"H is unbounded below with {shown}: the coefficient of {label} in H is "
                    f"{kappa} = {worst:g} {why} (a kinetic term needs a coefficient ≥ 0; H → −∞ "
                    f"as |{label[1:-3]}| → ∞, so a decreasing H would prove nothing)"
                )

    @property
    def bounded_below_conditions(self) -> tuple[tuple[str, sp.Expr], ...]:
        """(term, κ) whose sign the symbols' assumptions leave open: H is bounded below only
        if κ ≥ 0 (values are checked where given; the energy balance mentions these)."""
        return tuple(self._kinetic)

    def _check_parameter_values(self) -> None:
        """Defaults: real finite scalars first, then J, R with them substituted, then the
        symbols' assumptions and the kinetic coefficients (H bounded below)."""
        for p in self.parameters:
            if p.default is None:
                continue
            if isinstance(p.default, (str, bytes)) or np.ndim(p.default) != 0:
                raise StructureError(
                    f"parameter {p.name!r} must be a real number (a scalar default), "
                    f"got {p.default!r}"
                )
            try:
                v = complex(p.default)
            except (TypeError, ValueError) as exc:
                raise StructureError(
                    f"parameter {p.name!r} must be a real number, got {p.default!r}"
                ) from exc
            if v.imag != 0:
                raise StructureError(
                    f"parameter {p.name!r} must be a real number, got {p.default!r}"
                )
            if not np.isfinite(v.real):
                raise StructureError(
                    f"parameter {p.name!r} must be finite, got {p.name} = {p.default!r}"
                )
        values = {p.symbol: p.default for p in self.parameters if p.default is not None}
        if not values:
            return
        shown = ", ".join(
            f"{p.name} = {p.default}" for p in self.parameters if p.default is not None
        )
        context = f" with {shown}"
        self._check_structure(self.J.subs(values), self.R.subs(values), context)
        for p in self.parameters:
            if p.default is None:
                continue
            check_value(p, p.default, StructureError)
        self._check_kinetic_values(self.defaults, StructureError)

    # ------------------------------------------------------------------ accessors
    @property
    def all_blocks(self) -> tuple[Block, ...]:
        return self.blocks + self.aux_blocks

    def block(self, name: str) -> Block:
        for b in self.all_blocks:
            if b.name == name:
                return b
        raise KeyError(f"no block named {name!r}; blocks are {[b.name for b in self.all_blocks]}")

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name or p.symbol.name == name:
                return p
        raise KeyError(f"no parameter {name!r}; parameters are {[p.name for p in self.parameters]}")

    @property
    def defaults(self) -> dict[str, Any]:
        """Default parameter values by keyword name (None where no default was given)."""
        return {p.name: p.default for p in self.parameters}

    def with_parameters(self, **values: Any) -> dict[str, Any]:
        """Default values updated by ``values``; errors name unknown or missing parameters."""
        names = {p.name for p in self.parameters}
        unknown = set(values) - names
        if unknown:
            raise TypeError(
                f"{self.name} has no parameter(s) {sorted(unknown)}; it has {sorted(names)}"
            )
        for p in self.parameters:
            if p.name in values:
                check_value(p, values[p.name], ValueError)
        merged = {**self.defaults, **values}
        if self._kinetic and values:
            self._check_kinetic_values(merged, ValueError)
        stored = {p.name for p in self.parameters if p.stored}
        missing = sorted(k for k, v in merged.items() if v is None and k not in stored)
        if missing:
            raise TypeError(f"{self.name} needs value(s) for parameter(s) {missing}")
        return merged

    # ------------------------------------------------------------------ energy
    def energy_balance(self, samples: int = 2000, seed: int = 0) -> Any:
        """The symbolic energy balance dH/dt = −∇HᵀR∇H + yᵀu (+ ∂H/∂t), with a verdict.

        See :class:`odeopt.symbolic.energy.EnergyBalance`.
        """
        from .energy import energy_balance

        return energy_balance(self, samples=samples, seed=seed)

    # ------------------------------------------------------------------ numerics
    def compile(self, backend: str = "numpy") -> CompiledSystem:
        """The vector field and H as batched numpy or torch functions (float64 or float32)."""
        return CompiledSystem(self, backend)

    def explicit(self, loss: Any, coordinates: Sequence[sp.Symbol]) -> Any:
        """The same system for a concrete F(θ₁, …, θ_d): see :class:`ExplicitSystem`."""
        from .explicit import ExplicitSystem

        return ExplicitSystem(self, loss, coordinates)

    # ------------------------------------------------------------------ display
    def equations(self) -> list[tuple[str, sp.Expr]]:
        """(label, expression) pairs: H and each block's ODE."""
        out = [("H", self.hamiltonian)]
        out += [(f"d{b.name}/dt", e) for b, e in self.vector_field.items()]
        return out

    def __str__(self) -> str:
        lines = [f"{self.name}: {self.description}".rstrip(": ")]
        lines.append(f"  blocks: {', '.join(b.name for b in self.blocks)}")
        if self.aux_blocks:
            lines.append(f"  auxiliary blocks: {', '.join(b.name for b in self.aux_blocks)}")
        if self.parameters:
            lines.append(
                "  parameters: "
                + ", ".join(
                    f"{p.name}"
                    + (f" ({p.symbol})" if p.name != p.symbol.name else "")
                    + (f" = {p.default}" if p.default is not None else "")
                    for p in self.parameters
                )
            )
        lines.append(f"  H = {self.hamiltonian}")
        lines.append(f"  J = {self.J.tolist()}")
        lines.append(f"  R = {self.R.tolist()}")
        if self.G.shape[1]:
            lines.append(f"  G = {self.G.tolist()},  u = {list(self.u)},  y = {list(self.y)}")
        ls = self.level_set
        if ls is not None:
            how = [
                "E stored (state, not a hyper-parameter)",
                f"|{ls.spec.momentum}|² = {ls.surface} on H = E",
            ]
            if ls.spec.eliminate:
                how.append("the ODE below is written on that level set")
            if ls.spec.project:
                how.append(f"{ls.spec.momentum} is rescaled onto H = E before each step")
            lines.append("  level set: " + "; ".join(how))
        lines.append("  ODE (per coordinate i):")
        for b, e in self.vector_field.items():
            lines.append(f"    d{b.name}/dt = {e}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<PortHamiltonian {self.name}: blocks={[b.name for b in self.all_blocks]}>"

    def _repr_latex_(self) -> str:
        rows = [rf"H &= {sp.latex(self.hamiltonian)}"]
        rows.append(rf"J &= {sp.latex(self.J)},\quad R = {sp.latex(self.R)}")
        for b, e in self.vector_field.items():
            rows.append(rf"\dot{{{sp.latex(b)}}}_i &= {sp.latex(e)}")
        return r"$\begin{aligned}" + r"\\".join(rows) + r"\end{aligned}$"


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
