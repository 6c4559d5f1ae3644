"""An update rule as a plan: typed stages of elementwise operations on lists of tensors.

Every per-coordinate expression of the rule's update program is linearised into one sequence
of elementwise operations (:class:`Op`: multiply by a scalar, add with ``alpha``, …) on lists
of tensors, one tensor per parameter. Coordinate-free subexpressions (the step h, the
system's parameters, the loss, reductions) become scalars, computed per param group.
:mod:`odeopt.export.render` prints one plan twice (``torch._foreach_*`` calls, and a loop
per parameter), so both paths run the same operations in the same order and agree exactly.
"""

from __future__ import annotations

import builtins
import itertools
import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import sympy as sp

from ..schemes.program import Assignment, Evaluation
from ..symbolic.language import Reduction, Time

if TYPE_CHECKING:
    from .rule import UpdateRule

__all__ = ["AcceptStage", "EvaluateStage", "GroupStage", "Op", "Plan", "ReduceStage", "plan"]

#: sign assumptions of a parameter symbol that an exported optimizer checks on its values
_ASSUMPTIONS = ("positive", "nonnegative", "negative", "nonpositive", "nonzero")
#: keywords of the generated optimizer that a system parameter may not take
RESERVED = frozenset(
    {"params", "lr", "maximize", "foreach", "check_finite", "skip_nonfinite", "process_group"}
    | {"self", "compiled", "switch_smoothing", "adaptive_shift"}
)
_FUNCS = {
    sp.exp: "exp",
    sp.log: "log",
    sp.Abs: "abs",
    sp.sign: "sign",
    sp.tanh: "tanh",
    sp.sin: "sin",
    sp.cos: "cos",
}
THETA, GRAD = 'G["theta"]', 'G["g"]'


@dataclass(frozen=True)
class Op:
    """One elementwise operation on lists of tensors; ``kind`` is a row of
    :data:`odeopt.export.render.OPS`.

    ``out = x ∘ y`` (or ``x ∘ scalar``); with ``inplace`` ``out`` is ``x``, updated in place.
    ``scalar`` is the scalar operand, the ``alpha`` of an add, or a function's name."""

    kind: str
    out: str
    x: str
    y: str | None = None
    scalar: str | None = None
    inplace: bool = False

    def reads(self) -> tuple[str, ...]:
        """The lists this operation reads."""
        return (self.x,) if self.y is None else (self.x, self.y)

    def renamed(self, old: str, new: str) -> Op:
        """This operation with list ``old`` read and written as ``new``."""

        def sub(v: str | None) -> str | None:
            return new if v == old else v

        return replace(self, out=sub(self.out), x=sub(self.x), y=sub(self.y))


@dataclass
class GroupStage:
    """Operations run per param group, after computing the scalars ``(name, expression)``."""

    ops: list[Op]
    scalars: list[tuple[str, sp.Expr]]


@dataclass(frozen=True)
class ReduceStage:
    """``name`` = Σ over all groups, tensors and elements of ``source`` (of its squares when
    ``square``), summed over the ranks of the process group."""

    name: str
    source: str
    square: bool = False


@dataclass(frozen=True)
class EvaluateStage:
    """F and ∇F at the parameter values ``G[theta_key]``, through the closure: the gradients
    go to ``G[grad_key]``, the loss to ``loss_name``."""

    theta_key: str
    grad_key: str
    loss_name: str


@dataclass(frozen=True)
class AcceptStage:
    """A step controller's test: accept iff ``err`` ≤ 1 (``order`` q: the next step is scaled
    by safety·err^(−1/(q+1))), or, for an energy test (``order`` None), iff ``err`` ≤ 0."""

    err: sp.Expr
    order: int | None


Stage = GroupStage | ReduceStage | EvaluateStage | AcceptStage


@dataclass
class Plan:
    """What an exported optimizer does, before any of it is printed."""

    rule: UpdateRule
    cls: str
    state_blocks: list[str]
    keywords: dict[sp.Symbol, str]  # system parameter → its keyword (and param-group key)
    locals: dict[str, str]  # keyword → its local variable in the step functions
    scalars: dict[sp.Basic, str]  # coordinate-free symbol → its name in the generated code
    stages: list[Stage]
    needs_loss: bool
    uses_time: bool
    controlled: bool
    energy_test: bool
    defaults: dict[str, Any]
    rules: dict[str, tuple[str, ...]]  # keyword → the signs its values must have
    kinetic: list[tuple[str, sp.Expr]]  # (label, κ): H bounded below needs κ ≥ 0
    lr_divides: bool  # lr = 0 is refused after construction (the rule divides by h)

    @property
    def needs_closure(self) -> bool:
        """The rule evaluates F and ∇F at other points than θ."""
        return any(isinstance(s, EvaluateStage) for s in self.stages)

    @property
    def reduces(self) -> bool:
        """The rule sums over all coordinates (over the ranks of a process group too)."""
        ls = self.rule.system.level_set
        return ls is not None or any(isinstance(s, ReduceStage) for s in self.stages)

    @property
    def shared(self) -> bool:
        """The optimizer keeps state shared by all param groups (state["odeopt"])."""
        sys_ = self.rule.system
        return sys_.level_set is not None or bool(sys_.switches) or self.controlled


def class_name(rule: UpdateRule) -> str:
    """The generated class's default name: the system's and the scheme's, in CamelCase."""
    words = re.split(r"[^0-9a-zA-Z]+", f"{rule.system.name} {rule.scheme.name}")
    return "".join(w[:1].upper() + w[1:] for w in words if w) or "Rule"


def _signs(symbol: sp.Symbol) -> tuple[str, ...]:
    """The sign assumptions of ``symbol`` an exported optimizer checks, the implied ones
    dropped (positive implies nonnegative and nonzero)."""
    held = [a for a in _ASSUMPTIONS if symbol.assumptions0.get(a)]
    implied = {"positive": {"nonnegative", "nonzero"}, "negative": {"nonpositive", "nonzero"}}
    drop = set().union(*(implied.get(a, set()) for a in held))
    return tuple(a for a in held if a not in drop)


def _identifier(name: str) -> str:
    name = re.sub(r"\W", "_", name)
    return name + "_" if keyword.iskeyword(name) or not name.isidentifier() else name


#: names the step functions use themselves: a system parameter so named gets a "P_" prefix
_TAKEN = {"G", "F", "t", "lr", "x", "y", "groups", "closure", "maximize", "process_group"}
_TAKEN |= {"glob", "torch", "math", "accepted"}


def _local_names(keywords: list[str]) -> dict[str, str]:
    """Each keyword's local variable in the step functions (the keyword itself, unless it
    would shadow a name the functions use)."""
    out = {}
    for kw in keywords:
        clash = kw in _TAKEN or hasattr(builtins, kw) or kw.startswith("_") or kw.isupper()
        out[kw] = f"P_{kw}" if clash or re.fullmatch(r"F_\d+", kw) else kw
    return out


def _collect(e: sp.Expr, lists: dict[sp.Symbol, str]) -> sp.Expr:
    coords = sorted((s for s in e.free_symbols if s in lists), key=lambda s: str(s))
    return sp.collect(sp.expand(e), coords, evaluate=True) if coords else e


@dataclass
class _Lin:
    """Linearises per-coordinate expressions into :class:`Op` s on tensor lists."""

    lists: dict[sp.Symbol, str]  # coordinate symbol → expression giving its list
    scalar_name: Callable[[sp.Expr], str]  # coordinate-free expression → scalar name
    ops: list[Op] = field(default_factory=list)
    counter: int = 0

    def fresh(self) -> str:
        self.counter += 1
        return f'G["_t{self.counter}"]'

    def coordinate(self, e: sp.Expr) -> bool:
        """Whether e is per-coordinate (reductions are scalars)."""
        return any(s in self.lists for s in e.free_symbols)

    def _emit(self, kind: str, acc: str, fresh: bool, y: str | None, s: str | None) -> str:
        """acc ∘ (y or s), in place when acc is a fresh temporary."""
        out = acc if fresh else self.fresh()
        self.ops.append(Op(kind, out, acc, y, s, fresh))
        return out

    def lin(self, e: sp.Expr) -> tuple[str, bool]:
        """(list expression, fresh) for a per-coordinate expression."""
        if e in self.lists:
            return self.lists[e], False
        if isinstance(e, sp.Add):
            tensor = [a for a in e.args if self.coordinate(a)]
            # a bare list first: x + c·y is one op (add with alpha), not a scaled copy + add
            tensor.sort(key=lambda a: a not in self.lists)
            scalar = [a for a in e.args if not self.coordinate(a)]
            acc, fresh = "", False
            for term in tensor:
                c, rest = term.as_independent(*self.lists, as_Add=False)
                y, _ = self.lin(rest)
                if not acc:
                    if c == 1:
                        acc, fresh = y, False
                    else:
                        acc, fresh = self._emit("mul_s", y, False, None, self.scalar_name(c)), True
                    continue
                alpha = None if c == 1 else self.scalar_name(c)
                acc, fresh = self._emit("add", acc, fresh, y, alpha), True
            if scalar:
                s = self.scalar_name(sp.Add(*scalar))
                acc, fresh = self._emit("add_s", acc, fresh, None, s), True
            return acc, fresh
        if isinstance(e, sp.Mul):
            c, rest = e.as_independent(*self.lists, as_Add=False)
            factors = list(sp.Mul.make_args(rest))
            acc, fresh = self.lin(factors[0])
            for f in factors[1:]:
                divide = isinstance(f, sp.Pow) and f.exp == -1
                y, _ = self.lin(f.base if divide else f)
                acc, fresh = self._emit("div" if divide else "mul", acc, fresh, y, None), True
            if c != 1:
                acc, fresh = self._emit("mul_s", acc, fresh, None, self.scalar_name(c)), True
            return acc, fresh
        if isinstance(e, sp.Pow):
            x, _ = self.lin(e.base)
            out = self.fresh()
            if e.exp == 2:
                self.ops.append(Op("mul", out, x, x))
            elif e.exp == sp.Rational(1, 2):
                self.ops.append(Op("func", out, x, scalar="sqrt"))
            elif e.exp == -1:
                self.ops.append(Op("func", out, x, scalar="reciprocal"))
            else:
                self.ops.append(Op("pow_s", out, x, scalar=self.scalar_name(e.exp)))
            return out, True
        if isinstance(e, sp.Function) and e.func in _FUNCS and len(e.args) == 1:
            x, _ = self.lin(e.args[0])
            out = self.fresh()
            self.ops.append(Op("func", out, x, scalar=_FUNCS[e.func]))
            return out, True
        raise NotImplementedError(f"odeopt cannot export the per-coordinate expression {e}")


def _check_exportable(rule: UpdateRule) -> tuple[bool, bool, Any, Any]:
    """(controlled, energy test, controller, the scheme inside a projection);
    NotImplementedError/ValueError for rules that cannot be exported, naming what to do
    instead."""
    from ..schemes.adaptive import EnergyDecrease, StepController
    from ..schemes.base import Projected

    program, sys_ = rule.program, rule.system
    if program.unknowns:
        raise NotImplementedError(
            f"{rule.scheme.name} is implicit (a nonlinear solve per step); odeopt exports "
            "explicit rules"
        )
    controlled = program.error is not None
    base = rule.scheme.inner if isinstance(rule.scheme, Projected) else rule.scheme
    energy_test = isinstance(base, EnergyDecrease)
    ctrl = getattr(rule.scheme, "controller", None)
    l2_atol = isinstance(ctrl, StepController) and ctrl.norm == "l2" and ctrl.rtol == 0
    if controlled and not energy_test and not l2_atol:
        raise NotImplementedError(
            f"{rule.scheme.name} is adaptive with an error estimate; to export it give the scheme "
            "an absolute-tolerance controller, e.g. EulerRichardson('reference', "
            "controller=StepController(norm='l2', rtol=0, atol=tol)), or export its fixed-step "
            "rule or an energy-controlled one (schemes.EnergyDecrease)"
        )
    if sys_.loss is None:
        raise ValueError(f"{sys_.name} has no loss; an optimizer needs one")
    return controlled, energy_test, ctrl, base


class _Planner:
    """Walks a rule's update program once and records its stages."""

    def __init__(self, rule: UpdateRule) -> None:
        sys_ = rule.system
        assert sys_.loss is not None
        self.rule = rule
        self.theta = sys_.loss.block
        self.state = [b for b in sys_.all_blocks if b != self.theta]
        self.keywords = {p.symbol: _identifier(p.name) for p in sys_.parameters if not p.stored}
        clash = sorted(set(self.keywords.values()) & RESERVED)
        if clash:
            raise ValueError(
                f"system parameter(s) {clash} clash with the optimizer's own keywords "
                f"{sorted(RESERVED)}; rename them (aliases=...)"
            )
        self.lists: dict[sp.Symbol, str] = {self.theta: THETA, sys_.loss.grad: GRAD}
        self.lists.update({b: f'G["{b.name}"]' for b in self.state})
        self.scalars: dict[sp.Basic, str] = {rule.h: "lr", sys_.loss: "F"}
        self.locals = _local_names(list(self.keywords.values()))
        self.scalars.update({s: self.locals[kw] for s, kw in self.keywords.items()})
        for p in sys_.parameters:
            if p.stored:  # stored state (the energy E), global over groups
                self.scalars[p.symbol] = f"glob[{p.name!r}]"
        self.counter = itertools.count()
        self.uses_time = False
        self.hoisted: dict[sp.Expr, str] = {}
        self.stage_scalars: list[tuple[str, sp.Expr]] = []
        self.lin = _Lin(self.lists, self.scalar_name)
        self.stages: list[Stage] = []

    def scalar_name(self, e: sp.Expr) -> str:
        """A name (or literal) for the coordinate-free expression ``e`` in this stage."""
        e = sp.sympify(e)
        if e.is_Number:
            return repr(float(e))
        if e in self.scalars:
            return self.scalars[e]
        if e not in self.hoisted:
            self.hoisted[e] = f"_s{next(self.counter)}"
            self.stage_scalars.append((self.hoisted[e], e))
        return self.hoisted[e]

    def mark(self) -> tuple[int, int]:
        return len(self.lin.ops), len(self.stage_scalars)

    def group(self, mark: tuple[int, int]) -> None:
        """The ops and scalars since ``mark`` as one stage (scalars are per stage)."""
        self.stages.append(GroupStage(self.lin.ops[mark[0] :], self.stage_scalars[mark[1] :]))
        self.hoisted.clear()

    def linear(self, e: sp.Expr) -> tuple[str, bool]:
        return self.lin.lin(_collect(e, self.lists))

    def reduce(self, e: sp.Expr, square: bool) -> str:
        """A stage computing Σ e (Σ e² with ``square``; e first, never expanded)."""
        name = f"_r{next(self.counter)}"
        if e in self.lists:  # Σ x²: a dot product, one read of x
            self.stages.append(ReduceStage(name, self.lists[e], square))
            return name
        mark = self.mark()
        lst, _ = self.linear(e)
        self.group(mark)
        self.stages.append(ReduceStage(name, lst, square))
        return name

    def prepare(self, e: sp.Expr) -> sp.Expr:
        """``e`` with its time and reductions given names (reductions computed first)."""
        e = sp.sympify(e)
        for s in e.free_symbols:
            if isinstance(s, Time):
                self.uses_time = True
                self.scalars[s] = "t"
        reductions = sorted(
            (s for s in e.free_symbols if isinstance(s, Reduction) and s not in self.scalars),
            key=sp.default_sort_key,
        )
        for r in reductions:
            summand = self.prepare(r.summand)
            if isinstance(summand, sp.Pow) and summand.exp == 2:
                self.scalars[r] = self.reduce(summand.base, square=True)
            else:
                self.scalars[r] = self.reduce(summand, square=False)
        unknown = [
            s
            for s in e.free_symbols
            if s not in self.scalars and s not in self.lists and not isinstance(s, Reduction)
        ]
        if unknown:
            raise NotImplementedError(f"cannot export symbol(s) {unknown} of {e}")
        return e

    def instructions(self) -> None:
        """Evaluations and assignments of the program, in order."""
        for ins in self.rule.program.instructions:
            if isinstance(ins, Evaluation):
                if ins.theta == self.theta:
                    continue
                k = sum(isinstance(s, EvaluateStage) for s in self.stages) + 1
                self.lists[ins.loss.grad] = f'G["g_{k}"]'
                self.scalars[ins.loss] = f"F_{k}"
                self.stages.append(EvaluateStage(ins.theta.name, f"g_{k}", f"F_{k}"))
                continue
            assert isinstance(ins, Assignment)
            expr = self.prepare(ins.expr)
            mark = self.mark()
            lst, _ = self.linear(expr)
            target = f'G["{ins.target.name}"]'
            self.lin.ops.append(Op("alias", target, lst))
            self.lists[ins.target] = target
            self.group(mark)

    def accept(self, ctrl: Any, energy_test: bool, order: int | None) -> None:
        """The controller's test, before the outputs: a rejected step writes nothing."""
        error = self.rule.program.error
        assert error is not None
        if energy_test:
            self.stages.append(AcceptStage(self.prepare(error["H"]), None))
            return
        sq: sp.Expr = sp.Integer(0)  # err = ‖e‖₂ / atol
        for e in error.values():
            name = self.reduce(self.prepare(e), square=True)
            sym = sp.Symbol(name)
            self.scalars[sym] = name
            sq += sym
        self.stages.append(AcceptStage(sp.sqrt(sq) / sp.Float(ctrl.atol), order))

    def outputs(self) -> None:
        """The new state blocks (they may read θ), then θ in place when it can be."""
        prepared = {b: self.prepare(e) for b, e in self.rule.program.outputs.items()}
        mark = self.mark()
        inputs = [self.lists[x] for x in self.state] + [THETA, GRAD]
        for b in self.state:
            e = prepared[b.name]
            if e == b:
                continue
            lst, fresh = self.linear(e)
            new = f'G["new_{b.name}"]'
            if not fresh and lst in inputs:
                self.lin.ops.append(Op("clone", new, lst))
            else:
                self.lin.ops.append(Op("alias", new, lst))
        e_theta = prepared[self.theta.name]
        step = _collect(e_theta - self.theta, self.lists)
        if step.has(self.theta):
            lst, _ = self.linear(e_theta)
            self.lin.ops.append(Op("copy", THETA, THETA, lst, inplace=True))
        elif not self.lin.coordinate(step):
            if step != 0:
                self.lin.ops.append(Op("add_s", THETA, THETA, None, self.scalar_name(step), True))
        else:
            c, rest = step.as_independent(*self.lists, as_Add=False)
            if not isinstance(step, sp.Mul):
                c, rest = sp.Integer(1), step
            lst, _ = self.linear(rest)
            alpha = None if c == 1 else self.scalar_name(c)
            self.lin.ops.append(Op("add", THETA, THETA, lst, alpha, True))
        self.group(mark)


def plan(rule: UpdateRule, name: str | None = None) -> Plan:
    """The plan of ``rule``'s exported optimizer (class ``name``, default :func:`class_name`)."""
    from .inplace import update_state_in_place

    controlled, energy_test, ctrl, base = _check_exportable(rule)
    sys_ = rule.system
    planner = _Planner(rule)
    planner.instructions()
    if controlled:
        order = None if energy_test else base.error_order
        planner.accept(ctrl, energy_test, order)
    planner.outputs()
    keywords = planner.keywords
    params = [p for p in sys_.parameters if not p.stored]
    kinetic = [
        (label, kappa)
        for label, kappa in getattr(sys_, "bounded_below_conditions", ())
        if kappa.free_symbols and kappa.free_symbols <= set(keywords)
    ]
    # lr = 0 (a scheduler's end, a warm-up's start) is a step that changes nothing, unless the
    # rule divides by h or bounds a step-size ratio by it
    lr_divides = controlled or any(
        isinstance(a, sp.Pow) and a.base == rule.h and a.exp.is_negative
        for st in planner.stages
        if isinstance(st, GroupStage)
        for _, e in st.scalars
        for a in sp.preorder_traversal(e)
    )
    blocks = [f'G["{b.name}"]' for b in planner.state]
    return Plan(
        rule=rule,
        cls=name or class_name(rule),
        state_blocks=[b.name for b in planner.state],
        keywords=keywords,
        locals=planner.locals,
        scalars=planner.scalars,
        stages=update_state_in_place(planner.stages, blocks),
        needs_loss=rule.needs_loss,
        uses_time=planner.uses_time,
        controlled=controlled,
        energy_test=energy_test,
        defaults={kw: p.default for p, kw in zip(params, keywords.values(), strict=True)},
        rules={keywords[p.symbol]: _signs(p.symbol) for p in params},
        kinetic=kinetic,
        lr_divides=lr_divides,
    )
