"""Port-Hamiltonian systems over n-dimensional blocks.

A system is ẋ = (J(x) − R(x)) ∇H(x) + G(x) u,  y = G(x)ᵀ ∇H(x), where x stacks the *energy
blocks* coordinate by coordinate: for coordinate i, xᵢ = (θᵢ, pᵢ, …) ∈ Rᵏ, J and R are k×k,
G is k×m, u and y have m entries. H is a global scalar (a function of the loss, reductions,
time and parameters), so ∇H at coordinate i is (∂H/∂θᵢ, ∂H/∂pᵢ, …), computed by the chain
rule through the globals (:func:`~odeopt.symbolic.language.coordinate_derivative`).
*Auxiliary blocks* (Adam's second moment, …) carry their own explicit per-coordinate ODE.

This module holds the system itself (construction, accessors, display); the checks of its
definition are in :mod:`.validation`, those of J, R and H's boundedness in :mod:`.structure`,
and its numeric form in :mod:`.compiled`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sympy as sp

from ..errors import StructureError
from .compiled import CompiledSystem, compiled_expression
from .language import Block, coordinate_derivative
from .level_set import EnergyLevel, LevelSet
from .structure import (
    check_kinetic_values,
    check_structure,
    kinetic_terms,
    nonzero_matrix,
    psd_status,
)
from .switch import Switch
from .validation import (
    Parameter,
    as_matrix,
    check_block_names,
    check_blocks,
    check_defaults,
    check_hamiltonian,
    check_parameters,
    check_symbols,
    check_value,
    find_loss,
    named_symbols,
    sympify_entry,
)

__all__ = ["BlockMap", "Parameter", "PortHamiltonian", "CompiledSystem", "compiled_expression"]


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
        the assumptions or the defaults, e.g. a negative mass; see
        :func:`~odeopt.symbolic.structure.kinetic_terms`).
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
        self.blocks = check_blocks(blocks, "blocks")
        self.aux_blocks = check_blocks(list(aux or {}), "aux")
        clash = {b.name for b in self.blocks} & {b.name for b in self.aux_blocks}
        if clash:
            raise StructureError(f"block(s) {sorted(clash)} are both energy and auxiliary blocks")
        k = len(self.blocks)
        self.hamiltonian = check_hamiltonian(hamiltonian)
        self.J = as_matrix(J, "J", (k, k))
        self.R = sp.zeros(k, k) if R is None else as_matrix(R, "R", (k, k))
        if G is None:
            if u is not None:
                raise StructureError("an input u was given without a port matrix G")
            self.G = sp.zeros(k, 0)
        else:
            self.G = as_matrix(G, "G")
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
            self.u = as_matrix(raw, "u")
            if self.u.shape == (1, m) and m != 1:
                self.u = self.u.T
            if self.u.shape != (m, 1):
                raise StructureError(
                    f"u has shape {self.u.shape[0]}×{self.u.shape[1]}, but G has {m} column(s)"
                )
        self.aux = BlockMap(
            [(b, sympify_entry(e, f"aux[{b.name}]")) for b, e in (aux or {}).items()]
        )
        entries = list(self._entries())
        # after u and aux: the loss may appear only there
        self.loss = find_loss(entries, self.blocks)
        check_block_names(self.all_blocks, self.loss)
        # after H, J, R, G, u and aux: a parameter given by name is found among their symbols
        self.parameters = check_parameters(
            parameters,
            aliases,
            lambda: named_symbols(entries, energy_level, switches),
            {b.name for b in self.all_blocks},
        )

        check_symbols(entries, self.all_blocks, self.parameters, self.loss)
        check_structure(self.J, self.R, "")
        self.r_psd, self.r_psd_reason = psd_status(self.R, "")
        self._kinetic = kinetic_terms(self.hamiltonian, self.loss)
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
        if nonzero_matrix(self.R) or nonzero_matrix(self.G * self.u) or self.aux_blocks:
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
    def _entries(self) -> Iterator[tuple[str, sp.Expr]]:
        """(label, expression) of H, J, R, G, u and aux, e.g. ("J[0,1]", -1)."""
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

    @property
    def bounded_below_conditions(self) -> tuple[tuple[str, sp.Expr], ...]:
        """(term, κ) whose sign the symbols' assumptions leave open: H is bounded below only
        if κ ≥ 0 (values are checked where given; the energy balance mentions these)."""
        return tuple(self._kinetic)

    def _check_parameter_values(self) -> None:
        """Defaults: real finite scalars first, then J, R with them substituted, then the
        symbols' assumptions and the kinetic coefficients (H bounded below)."""
        check_defaults(self.parameters)
        values = {p.symbol: p.default for p in self.parameters if p.default is not None}
        if not values:
            return
        shown = ", ".join(
            f"{p.name} = {p.default}" for p in self.parameters if p.default is not None
        )
        context = f" with {shown}"
        check_structure(self.J.subs(values), self.R.subs(values), context)
        for p in self.parameters:
            if p.default is None:
                continue
            check_value(p, p.default, StructureError)
        check_kinetic_values(self._kinetic, self.parameters, self.defaults, StructureError)

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
            check_kinetic_values(self._kinetic, self.parameters, merged, ValueError)
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
