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


RESERVED_NAMES = frozenset({"state", "F", "g", "t", "blocks", "backend", "n"})

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
        raise error(f"parameter {p.name!r} must be finite, got {value!r}")
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
        ``{symbol: default value or None}`` for every parameter symbol used.
    aliases:
        Keyword names for parameters, ``{"friction": gamma}``; the keyword defaults to the
        symbol's name.

    Raises
    ------
    StructureError
        Naming the entry: J not skew, R not symmetric or not PSD (also after substituting the
        default parameter values), H not a scalar of globals, shapes that disagree, undeclared
        symbols or blocks, parameter values that contradict their symbol's assumptions.
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
        self.parameters = self._check_parameters(parameters, aliases)

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
            raw = u(self.y) if callable(u) else u
            self.u = _as_matrix(raw, "u")
            if self.u.shape == (1, m) and m != 1:
                self.u = self.u.T
            if self.u.shape != (m, 1):
                raise StructureError(
                    f"u has shape {self.u.shape[0]}×{self.u.shape[1]}, but G has {m} column(s)"
                )
        self.aux = BlockMap([(b, sp.sympify(e)) for b, e in (aux or {}).items()])
        self.loss = self._find_loss()  # after u and aux: the loss may appear only there

        self._check_symbols()
        self._check_structure(self.J, self.R, "")
        self.r_psd, self.r_psd_reason = self._psd_status(self.R, "")
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

    def _check_parameters(
        self,
        parameters: Mapping[sp.Symbol, Any] | Sequence[sp.Symbol] | None,
        aliases: Mapping[str, sp.Symbol] | None,
    ) -> tuple[Parameter, ...]:
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, Mapping):
            parameters = {s: None for s in parameters}
        names = {s: s.name for s in parameters}
        for alias, sym in (aliases or {}).items():
            if sym not in parameters:
                raise StructureError(f"alias {alias!r} names {sym}, which is not a parameter")
            names[sym] = alias
        out = []
        for sym, value in parameters.items():
            if not isinstance(sym, sp.Symbol) or isinstance(
                sym, (Block, Gradient, Loss, Reduction, Time)
            ):
                raise StructureError(f"parameters must be plain sympy symbols, got {sym!r}")
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
        k = J.shape[0]
        for i in range(k):
            for j in range(i, k):
                if _nonzero(J[i, j] + J[j, i]):
                    what = (
                        f"J[{i},{i}] = {J[i, i]} (the diagonal must be 0)"
                        if i == j
                        else f"J[{i},{j}] = {J[i, j]} but J[{j},{i}] = {J[j, i]}"
                    )
                    raise StructureError(f"J is not skew-symmetric{context}: {what}")
                if j > i and _nonzero(R[i, j] - R[j, i]):
                    raise StructureError(
                        f"R is not symmetric{context}: R[{i},{j}] = {R[i, j]} but "
                        f"R[{j},{i}] = {R[j, i]}"
                    )
        psd, reason = self._psd_status(R, context)
        if psd is False:
            raise StructureError(f"R is not positive semidefinite{context}: {reason}")

    @staticmethod
    def _psd_status(R: sp.Matrix, context: str) -> tuple[bool | None, str]:
        """All principal minors ≥ 0 ⇔ R PSD (R symmetric). Returns (True/False/None, reason)."""
        k = R.shape[0]
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
        if undecided:
            return None, (
                "the sign of " + "; ".join(undecided) + " could not be decided from the "
                "symbols' assumptions"
            )
        return True, "all principal minors of R are nonnegative"

    def _check_parameter_values(self) -> None:
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
