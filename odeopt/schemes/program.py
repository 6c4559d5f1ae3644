"""Running a scheme on sympy symbols: the update program.

:class:`SymbolicField` is the :class:`~odeopt.schemes.base.Field` of a
:class:`~odeopt.symbolic.PortHamiltonian` over sympy expressions. When a scheme evaluates the
field at a new state, the field names that state (an :class:`Assignment` θ₁ := θ + h·…) and,
where the loss is needed there, records an :class:`Evaluation` (F₁, g₁ := F(θ₁), ∇F(θ₁)).
Reductions are rebuilt on the named symbols (|p₁|² = Σᵢ p₁ᵢ²), so every expression stays in
the per-coordinate language. The result, a :class:`Program`, is a straight-line program:
evaluations and assignments, then the new state (and, for adaptive schemes, the error
estimate; for implicit ones, the fixed-point map of the unknown next state).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sympy as sp

from ..symbolic.codegen import Compiled, compile_expressions
from ..symbolic.energy import canonical_reduction, to_globals
from ..symbolic.language import Block, Gradient, Loss, Reduction, t
from .base import for_system

if TYPE_CHECKING:
    from ..symbolic.system import PortHamiltonian
    from .base import Scheme

__all__ = ["Assignment", "Evaluation", "Program", "SymbolicField", "run_symbolic"]

State = dict[str, Any]


@dataclass(frozen=True)
class Assignment:
    """target := expr, a per-coordinate intermediate."""

    target: Block
    expr: sp.Expr

    def __str__(self) -> str:
        return f"{self.target} := {self.expr}"


@dataclass(frozen=True)
class Evaluation:
    """F_k, g_k := F(θ_k), ∇F(θ_k): one evaluation of the objective."""

    theta: Block
    loss: Loss

    def __str__(self) -> str:
        return f"{self.loss}, {self.loss.grad} := F({self.theta}), ∇F({self.theta})"


def _uses(expr: sp.Expr, symbols: set[sp.Symbol]) -> bool:
    for s in expr.free_symbols:
        if s in symbols:
            return True
        if isinstance(s, Reduction) and s.summand.free_symbols & symbols:
            return True
    return False


class SymbolicField:
    """The field of a system on sympy expressions; it records the program a scheme makes."""

    symbolic = True

    def __init__(self, system: PortHamiltonian) -> None:
        self.system = system
        names = [b.name for b in system.all_blocks]
        if system.loss is not None:
            self.position: tuple[str, ...] = (system.loss.block.name,)
        else:
            self.position = (system.blocks[0].name,)
        self.momentum = tuple(n for n in names if n not in self.position)
        self.energy_blocks = tuple(b.name for b in system.blocks)
        self._blocks = {b.name: b for b in system.all_blocks}
        self.instructions: list[Assignment | Evaluation] = []
        self._names: dict[tuple[str, sp.Expr], Block] = {}
        self._losses: dict[Block, Loss] = {}
        self._counter: dict[str, int] = {}
        self._loss_symbols: set[sp.Symbol] = set()
        if system.loss is not None:
            self._loss_symbols = {system.loss, system.loss.grad}

    # -- naming states and evaluating the objective
    def _fresh(self, base: str, suffix: str | None = None) -> Block:
        if suffix is None:
            k = self._counter.get(base, 0) + 1
            self._counter[base] = k
            suffix = str(k)
        name = f"{base}_{suffix}"
        if name in self._blocks:
            raise ValueError(f"the intermediate name {name} clashes with a block of the system")
        return Block(name)

    def _name_state(self, x: State) -> dict[str, Block]:
        named = {}
        for b, value in x.items():
            value = sp.sympify(value)
            if isinstance(value, Block):
                named[b] = value
            elif (b, value) in self._names:  # the same value again: the same name
                named[b] = self._names[(b, value)]
            else:
                target = self._fresh(b)
                self.instructions.append(Assignment(target, value))
                self._names[(b, value)] = target
                named[b] = target
        return named

    def _loss_at(self, theta: Block) -> Loss:
        if theta not in self._losses:
            original = self.system.loss
            assert original is not None
            if theta == original.block:
                made = original
            else:
                k = len(self._losses)
                made = Loss(theta, f"{original.name}_{k}", f"{original.grad.name}_{k}")
            self._losses[theta] = made
            self.instructions.append(Evaluation(theta, made))
        return self._losses[theta]

    def _substitution(self, x: State, tt: Any, exprs: Sequence[sp.Expr]) -> dict[sp.Symbol, Any]:
        named = self._name_state(x)
        sub: dict[sp.Symbol, Any] = {self._blocks[b]: v for b, v in named.items()}
        if any(_uses(e, self._loss_symbols) for e in exprs):
            loss = self.system.loss
            assert loss is not None
            here = self._loss_at(named[loss.block.name])
            sub[loss] = here
            sub[loss.grad] = here.grad
        tt = sp.sympify(tt)
        if tt != t:
            sub[t] = tt
        return sub

    @staticmethod
    def _apply(expr: sp.Expr, sub: Mapping[sp.Symbol, Any]) -> sp.Expr:
        expr = sp.sympify(expr)
        rsub = {
            r: canonical_reduction(r.summand.xreplace(sub))
            for r in expr.free_symbols
            if isinstance(r, Reduction)
        }
        return expr.xreplace({**sub, **rsub})

    # -- the Field protocol
    def __call__(self, x: State, tt: Any, blocks: Sequence[str] | None = None) -> State:
        vf = self.system.vector_field
        names = list(blocks) if blocks is not None else list(x)
        exprs = [vf[b] for b in names]
        sub = self._substitution(x, tt, exprs)
        return {b: self._apply(e, sub) for b, e in zip(names, exprs, strict=True)}

    def advance(self, x: State, tt: Any, h: Any, blocks: Sequence[str]) -> State:
        x = {**x, **self._name_state(x)}  # intermediates get a name once
        out = dict(x)
        for b, v in self(x, tt, blocks).items():
            out[b] = x[b] + h * v
        return out

    def energy(self, x: State, tt: Any) -> sp.Expr:
        H = self.system.hamiltonian
        return self._apply(H, self._substitution(x, tt, [H]))

    def grad_energy(self, x: State, tt: Any) -> State:
        exprs = list(self.system.grad_hamiltonian)
        sub = self._substitution(x, tt, exprs)
        return {b: self._apply(e, sub) for b, e in zip(self.energy_blocks, exprs, strict=True)}

    def structure(self, x: State, tt: Any, v: State) -> State:
        M = self.system.J - self.system.R
        sub = self._substitution(x, tt, list(M))
        E = self.energy_blocks
        return {
            bi: sum((self._apply(M[i, j], sub) * v[bj] for j, bj in enumerate(E)), sp.Integer(0))
            for i, bi in enumerate(E)
        }

    def total(self, v: State) -> sp.Expr:
        return to_globals(sum(v.values(), sp.Integer(0)))

    @staticmethod
    def safe_divide(a: Any, b: Any) -> Any:
        return a / b

    @staticmethod
    def constant(value: Any) -> Any:
        return sp.sympify(value)

    def unknowns(self, x: State) -> State:
        return {b: self._fresh(b, "next") for b in x}

    def project(self, x: State, tt: Any) -> State:
        ls = self.system.level_set
        if ls is None:
            return dict(x)
        p = ls.spec.momentum.name
        r = ls.factor
        sub = self._substitution(x, tt, [r])
        out = dict(x)
        out.update(self._name_state({p: sub[ls.spec.momentum] * self._apply(r, sub)}))
        return out

    def distance(self, a: State, b: State) -> Any:
        raise TypeError(
            "a symbolic field has no numeric distance; implicit schemes record "
            "their fixed-point map instead"
        )


@dataclass
class Program:
    """The update program a scheme makes of a system.

    ``instructions`` run in order; ``outputs`` give the new value of each block; ``error`` the
    error estimate per block (adaptive schemes); ``unknowns`` the symbols of the next state for
    implicit schemes (whose ``outputs`` then define the fixed-point map x_{k+1} = Φ(x_{k+1})).
    """

    system: PortHamiltonian
    scheme: Scheme
    h: sp.Symbol
    instructions: list[Assignment | Evaluation]
    outputs: dict[str, sp.Expr]
    error: dict[str, sp.Expr] | None = None
    unknowns: dict[str, Block] | None = None
    _compiled: dict[Any, Compiled] = field(default_factory=dict, repr=False)

    @property
    def evaluations(self) -> list[Evaluation]:
        return [i for i in self.instructions if isinstance(i, Evaluation)]

    def __str__(self) -> str:
        lines = [f"{self.system.name} with {self.scheme.name}, step {self.h}:"]
        lines += [f"  {i}" for i in self.instructions]
        lines += [f"  {b} ← {e}" for b, e in self.outputs.items()]
        if self.error:
            lines += [f"  error[{b}] = {e}" for b, e in self.error.items()]
        if self.unknowns:
            lines.append(
                "  (implicit: solve for " + ", ".join(str(s) for s in self.unknowns.values()) + ")"
            )
        return "\n".join(lines)

    # -- numeric evaluation (the program run on numpy or torch values)
    def _compile(self, key: Any, coordinate: Sequence[sp.Expr], backend: str) -> Compiled:
        ck = (key, backend)
        if ck not in self._compiled:
            symbols: set[sp.Symbol] = set()
            for e in coordinate:
                for s in sp.sympify(e).free_symbols:
                    symbols.add(s)
                    if isinstance(s, Reduction):
                        symbols |= s.summand.free_symbols
            # a loss value is passed as a scalar argument under a name that cannot clash
            losses = {s: sp.Symbol(_loss_key(s)) for s in symbols if isinstance(s, Loss)}
            coordinate = [sp.sympify(e).xreplace(losses) for e in coordinate]
            symbols = (symbols - set(losses)) | set(losses.values())
            coords = sorted(
                (s for s in symbols if isinstance(s, (Block, Gradient))), key=lambda s: s.name
            )
            scalars = sorted(
                (s for s in symbols if not isinstance(s, (Block, Gradient, Reduction)) and s != t),
                key=lambda s: s.name,
            )
            self._compiled[ck] = compile_expressions(coordinate, [], coords, scalars, backend)
        return self._compiled[ck]

    def evaluate(
        self,
        objective: Any,
        x: Mapping[str, Any],
        t: Any = 0.0,
        h: Any = 0.1,
        backend: str = "numpy",
        unknowns: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Run the program on arrays: returns (new state, error estimate or None).

        ``objective.value_and_grad(theta)`` gives F (batch,) and ∇F (batch, n); parameters are
        given by keyword (defaults from the system); for implicit schemes ``unknowns`` gives
        the values at which the fixed-point map is evaluated. A stored energy E (level-set
        systems) not given is E = H(x), the energy of the state stepped from.
        """
        values = self.system.with_parameters(**params)
        ls = self.system.level_set
        if ls is not None and values.get(ls.spec.symbol) is None:
            assert self.system.loss is not None
            F0, _ = objective.value_and_grad(x[self.system.loss.block.name])
            rest = {k: v for k, v in values.items() if k != ls.spec.symbol}
            values[ls.spec.symbol] = self.system.compile(backend).energy(x, F0, t, **rest)
        env: dict[str, Any] = {b: v for b, v in x.items()}
        for p in self.system.parameters:
            env[p.symbol.name] = values[p.name]
        env[self.h.name] = h
        if self.unknowns:
            if unknowns is None:
                raise ValueError("an implicit scheme's program needs the unknowns' values")
            for b, sym in self.unknowns.items():
                env[sym.name] = unknowns[b]

        def run(key: Any, exprs: Sequence[sp.Expr]) -> tuple[Any, ...]:
            fn = self._compile(key, exprs, backend)
            blocks = {n: env[n] for n in fn.block_names}
            return fn(blocks, None, None, t, **{n: env[n] for n in fn.parameter_names})

        for k, ins in enumerate(self.instructions):
            if isinstance(ins, Assignment):
                (env[ins.target.name],) = run(k, [ins.expr])
            else:
                F, g = objective.value_and_grad(env[ins.theta.name])
                env[_loss_key(ins.loss)], env[ins.loss.grad.name] = F, g
        names = list(self.outputs)
        out = dict(zip(names, run("out", [self.outputs[b] for b in names]), strict=True))
        err = None
        if self.error:
            enames = list(self.error)
            err = dict(zip(enames, run("err", [self.error[b] for b in enames]), strict=True))
        return out, err


def _loss_key(loss: Loss) -> str:
    return f"loss_{loss.name}_"


def run_symbolic(system: PortHamiltonian, scheme: Scheme | str) -> Program:
    """The program of one step of ``scheme`` on ``system``, with step symbol h."""
    from . import get

    if not getattr(system, "port_hamiltonian", True):
        raise NotImplementedError(
            f"{system.name} is a modified equation (its field holds derivatives of F such as "
            "∇²F·v, computed from the problem at run time): integrate it with "
            "odeopt.integrate(..., params={'eta': η}); it is not discretized or exported"
        )
    if system.metric is not None:
        raise NotImplementedError(
            f"{system.name} has a metric that is not coordinate-wise "
            f"({system.metric.description}); it is integrated numerically, not extracted or "
            "exported"
        )
    scheme = for_system(get(scheme), system)
    f = SymbolicField(system)
    h = sp.Symbol("h", positive=True)
    x = {b.name: b for b in system.all_blocks}
    step = scheme.step(f, x, t, h)
    named = {a.expr: a.target for a in f.instructions if isinstance(a, Assignment)}
    outputs = {b: named.get(sp.sympify(v), sp.sympify(v)) for b, v in step.x.items()}
    error = None if step.error is None else {b: sp.sympify(v) for b, v in step.error.items()}
    return Program(system, scheme, h, f.instructions, outputs, error, step.info.get("unknowns"))
