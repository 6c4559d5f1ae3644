"""Write an update rule as a self-contained torch.optim.Optimizer (a .py file needing torch only).

Every per-coordinate expression of the rule is linearised into one sequence of elementwise
operations (multiply by a scalar, add with ``alpha``, …). That one sequence is printed twice:
as ``torch._foreach_*`` calls on lists of tensors (the foreach path) and as a loop of the same
tensor operations per parameter (the per-parameter path), so both paths compute the same
operations in the same order and agree exactly. Coordinate-free subexpressions (the step h,
the system's parameters, the loss, reductions) are Python floats, computed per param group.
"""

from __future__ import annotations

import itertools
import keyword
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from ..schemes.program import Assignment, Evaluation
from ..symbolic.language import Reduction, Time

if TYPE_CHECKING:
    from .rule import UpdateRule

__all__ = ["class_name", "to_source"]

#: sign assumptions of a parameter symbol that an exported optimizer checks on its values
_ASSUMPTIONS = ("positive", "nonnegative", "negative", "nonpositive", "nonzero")


def _signs(symbol: sp.Symbol) -> tuple[str, ...]:
    """The sign assumptions of ``symbol`` an exported optimizer checks, the implied ones
    dropped (positive implies nonnegative and nonzero)."""
    held = [a for a in _ASSUMPTIONS if symbol.assumptions0.get(a)]
    implied = {"positive": {"nonnegative", "nonzero"}, "negative": {"nonpositive", "nonzero"}}
    drop = set().union(*(implied.get(a, set()) for a in held))
    return tuple(a for a in held if a not in drop)


_FUNCS = {
    sp.exp: "exp",
    sp.log: "log",
    sp.Abs: "abs",
    sp.sign: "sign",
    sp.tanh: "tanh",
    sp.sin: "sin",
    sp.cos: "cos",
}


def class_name(rule: UpdateRule) -> str:
    words = re.split(r"[^0-9a-zA-Z]+", f"{rule.system.name} {rule.scheme.name}")
    return "".join(w[:1].upper() + w[1:] for w in words if w) or "Rule"


@dataclass
class _Lin:
    """Linearises per-coordinate expressions into elementwise ops on tensor lists."""

    lists: dict[sp.Symbol, str]  # coordinate symbol -> expression giving its list
    scalar_name: Any  # callable: coordinate-free expr -> scalar variable name
    ops: list[tuple[Any, ...]] = field(default_factory=list)
    counter: int = 0

    def fresh(self) -> str:
        self.counter += 1
        return f'G["_t{self.counter}"]'

    def coordinate(self, e: sp.Expr) -> bool:
        """Whether e is per-coordinate (reductions are scalars)."""
        return any(s in self.lists for s in e.free_symbols)

    def lin(self, e: sp.Expr) -> tuple[str, bool]:
        """(list expression, fresh) for a per-coordinate expression."""
        if e in self.lists:
            return self.lists[e], False
        if isinstance(e, sp.Add):
            tensor = [a for a in e.args if self.coordinate(a)]
            # a bare list first: x + c·y is one op (add with alpha), not a scaled copy + add
            tensor.sort(key=lambda a: a not in self.lists)
            scalar = [a for a in e.args if not self.coordinate(a)]
            acc, fresh = None, False
            for term in tensor:
                c, rest = term.as_independent(*self.lists, as_Add=False)
                y, _ = self.lin(rest)
                if acc is None:
                    if c == 1:
                        acc, fresh = y, False
                    else:
                        out = self.fresh()
                        self.ops.append(("mul_s", out, y, self.scalar_name(c)))
                        acc, fresh = out, True
                    continue
                alpha = None if c == 1 else self.scalar_name(c)
                out = acc if fresh else self.fresh()
                self.ops.append(("add", out, acc, y, alpha, fresh))
                acc, fresh = out, True
            if scalar:
                s = self.scalar_name(sp.Add(*scalar))
                out = acc if fresh else self.fresh()
                self.ops.append(("add_s", out, acc, s, fresh))
                acc, fresh = out, True
            assert acc is not None
            return acc, fresh
        if isinstance(e, sp.Mul):
            c, rest = e.as_independent(*self.lists, as_Add=False)
            factors = list(sp.Mul.make_args(rest))
            acc, fresh = self.lin(factors[0])
            for f in factors[1:]:
                if isinstance(f, sp.Pow) and f.exp == -1:
                    y, _ = self.lin(f.base)
                    kind = "div"
                else:
                    y, _ = self.lin(f)
                    kind = "mul"
                out = acc if fresh else self.fresh()
                self.ops.append((kind, out, acc, y, fresh))
                acc, fresh = out, True
            if c != 1:
                out = acc if fresh else self.fresh()
                self.ops.append(("mul_s", out, acc, self.scalar_name(c), fresh))
                acc, fresh = out, True
            return acc, fresh
        if isinstance(e, sp.Pow):
            x, _ = self.lin(e.base)
            out = self.fresh()
            if e.exp == 2:
                self.ops.append(("mul", out, x, x, False))
            elif e.exp == sp.Rational(1, 2):
                self.ops.append(("func", out, "sqrt", x))
            elif e.exp == -1:
                self.ops.append(("func", out, "reciprocal", x))
            else:
                self.ops.append(("pow_s", out, x, self.scalar_name(e.exp)))
            return out, True
        if isinstance(e, sp.Function) and e.func in _FUNCS and len(e.args) == 1:
            x, _ = self.lin(e.args[0])
            out = self.fresh()
            self.ops.append(("func", out, _FUNCS[e.func], x))
            return out, True
        raise NotImplementedError(f"odeopt cannot export the per-coordinate expression {e}")


def _print_ops(ops: list[tuple[Any, ...]], foreach: bool, indent: str) -> list[str]:
    out = []
    for op in ops:
        kind = op[0]
        if foreach:
            if kind == "mul_s":
                o, x, s = op[1:4]
                inplace = len(op) > 4 and op[4]
                out.append(
                    f"torch._foreach_mul_({x}, {s})"
                    if inplace
                    else f"{o} = torch._foreach_mul({x}, {s})"
                )
            elif kind == "add":
                o, x, y, alpha, inplace = op[1:]
                a = f", alpha={alpha}" if alpha else ""
                out.append(
                    f"torch._foreach_add_({x}, {y}{a})"
                    if inplace
                    else f"{o} = torch._foreach_add({x}, {y}{a})"
                )
            elif kind == "add_s":
                o, x, s, inplace = op[1:]
                out.append(
                    f"torch._foreach_add_({x}, {s})"
                    if inplace
                    else f"{o} = torch._foreach_add({x}, {s})"
                )
            elif kind in ("mul", "div"):
                o, x, y, inplace = op[1:]
                out.append(
                    f"torch._foreach_{kind}_({x}, {y})"
                    if inplace
                    else f"{o} = torch._foreach_{kind}({x}, {y})"
                )
            elif kind == "func":
                o, name, x = op[1:]
                out.append(f"{o} = torch._foreach_{name}({x})")
            elif kind == "pow_s":
                o, x, s = op[1:]
                out.append(f"{o} = torch._foreach_pow({x}, {s})")
        else:
            if kind == "mul_s":
                o, x, s = op[1:4]
                inplace = len(op) > 4 and op[4]
                out.append(
                    f"for a in {x}: a.mul_({s})" if inplace else f"{o} = [a.mul({s}) for a in {x}]"
                )
            elif kind == "add":
                o, x, y, alpha, inplace = op[1:]
                a = f", alpha={alpha}" if alpha else ""
                out.append(
                    f"for a, b in zip({x}, {y}): a.add_(b{a})"
                    if inplace
                    else f"{o} = [a.add(b{a}) for a, b in zip({x}, {y})]"
                )
            elif kind == "add_s":
                o, x, s, inplace = op[1:]
                out.append(
                    f"for a in {x}: a.add_({s})" if inplace else f"{o} = [a.add({s}) for a in {x}]"
                )
            elif kind in ("mul", "div"):
                o, x, y, inplace = op[1:]
                out.append(
                    f"for a, b in zip({x}, {y}): a.{kind}_(b)"
                    if inplace
                    else f"{o} = [a.{kind}(b) for a, b in zip({x}, {y})]"
                )
            elif kind == "func":
                o, name, x = op[1:]
                out.append(f"{o} = [torch.{name}(a) for a in {x}]")
            elif kind == "pow_s":
                o, x, s = op[1:]
                out.append(f"{o} = [torch.pow(a, {s}) for a in {x}]")
    return [indent + line for line in out]


class _ScalarPrinter(PythonCodePrinter):
    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return self._names[expr]

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if expr.exp == 2:
            b = self.parenthesize(expr.base, sp.printing.precedence.PRECEDENCE["Mul"])
            return f"({b}*{b})"
        return super()._print_Pow(expr, rational=rational)


def _identifier(name: str) -> str:
    name = re.sub(r"\W", "_", name)
    return name + "_" if keyword.iskeyword(name) or not name.isidentifier() else name


def to_source(rule: UpdateRule, name: str | None = None) -> str:
    """The text of a Python module defining a torch.optim.Optimizer for ``rule``."""
    program = rule.program
    sys_ = rule.system
    if program.unknowns:
        raise NotImplementedError(
            f"{rule.scheme.name} is implicit (a nonlinear solve per step); odeopt exports "
            "explicit rules"
        )
    from ..schemes.adaptive import EnergyDecrease, StepController

    controlled = program.error is not None
    from ..schemes.base import Projected

    base = rule.scheme.inner if isinstance(rule.scheme, Projected) else rule.scheme
    energy_test = isinstance(base, EnergyDecrease)
    ctrl = getattr(rule.scheme, "controller", None)
    if (
        controlled
        and not energy_test
        and not (isinstance(ctrl, StepController) and ctrl.norm == "l2" and ctrl.rtol == 0)
    ):
        raise NotImplementedError(
            f"{rule.scheme.name} is adaptive with an error estimate; to export it give the scheme "
            "an absolute-tolerance controller, e.g. EulerRichardson('reference', "
            "controller=StepController(norm='l2', rtol=0, atol=tol)), or export its fixed-step "
            "rule or an energy-controlled one (schemes.EnergyDecrease)"
        )
    if sys_.loss is None:
        raise ValueError(f"{sys_.name} has no loss; an optimizer needs one")
    cls = name or class_name(rule)
    theta = sys_.loss.block
    state_blocks = [b for b in sys_.all_blocks if b != theta]
    keywords = {p.symbol: _identifier(p.name) for p in sys_.parameters if not p.stored}
    stored = {p.symbol: p.name for p in sys_.parameters if p.stored}
    reserved = {
        "params",
        "lr",
        "maximize",
        "foreach",
        "check_finite",
        "skip_nonfinite",
        "process_group",
        "self",
    }
    clash = sorted(set(keywords.values()) & reserved)
    if clash:
        raise ValueError(
            f"system parameter(s) {clash} clash with the optimizer's own keywords "
            f"{sorted(reserved)}; rename them (aliases=...)"
        )

    # symbols → code
    lists: dict[sp.Symbol, str] = {theta: 'G["theta"]', sys_.loss.grad: 'G["g"]'}
    for b in state_blocks:
        lists[b] = f'G["{b.name}"]'
    scalars: dict[sp.Symbol, str] = {rule.h: "lr"}
    for sym, kw in keywords.items():
        scalars[sym] = f"P_{kw}"  # locals cannot clash with generated names
    for sym, nm in stored.items():
        scalars[sym] = f"glob[{nm!r}]"  # stored state (the energy E), global over groups
    scalars[sys_.loss] = "F"
    counter = itertools.count()
    uses_time = False
    hoisted: dict[sp.Expr, str] = {}
    stage_scalars: list[tuple[str, sp.Expr]] = []
    printer = _ScalarPrinter({"fully_qualified_modules": True})

    def scalar_name(e: sp.Expr) -> str:
        e = sp.sympify(e)
        if e.is_Number:
            return repr(float(e))
        if e in scalars:
            return scalars[e]
        if e not in hoisted:
            hoisted[e] = f"_s{next(counter)}"
            stage_scalars.append((hoisted[e], e))
        return hoisted[e]

    lin = _Lin(lists, scalar_name)
    stages: list[tuple[Any, ...]] = []  # ("group", ops, scalars) | ("reduce", …) | ("evaluate", …)

    def emit_group(ops_before: int, scal_before: int) -> None:
        stages.append(("group", lin.ops[ops_before:], stage_scalars[scal_before:]))
        hoisted.clear()  # scalars are per group and per stage: the next stage recomputes them

    def reductions_in(e: sp.Expr) -> list[Reduction]:
        return sorted(
            (s for s in e.free_symbols if isinstance(s, Reduction) and s not in scalars),
            key=sp.default_sort_key,
        )

    def prepare(e: sp.Expr) -> sp.Expr:
        nonlocal uses_time
        e = sp.sympify(e)
        if any(isinstance(s, Time) for s in e.free_symbols):
            uses_time = True
            for s in e.free_symbols:
                if isinstance(s, Time):
                    scalars[s] = "t"
        for r in reductions_in(e):
            rname = f"_r{next(counter)}"
            o0, s0 = len(lin.ops), len(stage_scalars)
            summand = prepare(r.summand)
            base = summand.base if isinstance(summand, sp.Pow) and summand.exp == 2 else None
            if base is not None and base in lists:  # Σ x²: a dot product, one read of x
                stages.append(("reduce", rname, lists[base], "sq"))
            elif base is not None:  # Σ e²: e first (never expanded: no cancellation), then Σ e²
                lst, _ = lin.lin(_collect(base, lists))
                emit_group(o0, s0)
                stages.append(("reduce", rname, lst, "sq"))
            else:
                lst, _ = lin.lin(_collect(summand, lists))
                emit_group(o0, s0)
                stages.append(("reduce", rname, lst))
            scalars[r] = rname
        unknown = [
            s
            for s in e.free_symbols
            if s not in scalars and s not in lists and not isinstance(s, Reduction)
        ]
        if unknown:
            raise NotImplementedError(f"cannot export symbol(s) {unknown} of {e}")
        return e

    for ins in program.instructions:
        if isinstance(ins, Evaluation):
            if ins.theta == theta:
                continue
            k = len([s for s in stages if s[0] == "evaluate"]) + 1
            gname, fname = f'G["g_{k}"]', f"F_{k}"
            lists[ins.loss.grad] = gname
            scalars[ins.loss] = fname
            stages.append(("evaluate", ins.theta.name, f"g_{k}", fname))
            continue
        assert isinstance(ins, Assignment)
        expr = prepare(ins.expr)
        o0, s0 = len(lin.ops), len(stage_scalars)
        lst, fresh = lin.lin(_collect(expr, lists))
        target = f'G["{ins.target.name}"]'
        if fresh:
            lin.ops.append(("rename", target, lst))
        else:
            lin.ops.append(("alias", target, lst))
        lists[ins.target] = target
        emit_group(o0, s0)

    # outputs: states first (they may read θ), then θ in place; reductions they need are
    # computed (in their own stages) before this stage starts
    if controlled:  # the test comes before the outputs: a rejected step writes nothing
        assert program.error is not None
        if energy_test:
            stages.append(("accept", prepare(program.error["H"]), None))
        else:  # err = ‖e‖₂ / atol, e computed first (never expanded: no cancellation)
            sq: sp.Expr = sp.Integer(0)
            for e in program.error.values():
                pe = prepare(e)
                o0, s0 = len(lin.ops), len(stage_scalars)
                lst, _ = lin.lin(_collect(pe, lists))
                emit_group(o0, s0)
                rname = f"_r{next(counter)}"
                stages.append(("reduce", rname, lst, "sq"))
                sym = sp.Symbol(rname)
                scalars[sym] = rname
                sq += sym
            err = sp.sqrt(sq) / sp.Float(ctrl.atol)
            stages.append(("accept", err, base.error_order))
    prepared = {b: prepare(e) for b, e in program.outputs.items()}
    o0, s0 = len(lin.ops), len(stage_scalars)
    for b in state_blocks:
        e = prepared[b.name]
        if e == b:
            continue
        lst, fresh = lin.lin(_collect(e, lists))
        if not fresh and lst in [lists[x] for x in state_blocks] + ['G["theta"]', 'G["g"]']:
            out = f'G["new_{b.name}"]'
            lin.ops.append(("clone", out, lst))
            lst = out
        lin.ops.append(("alias", f'G["new_{b.name}"]', lst))
    e_theta = prepared[theta.name]
    step_expr = _collect(e_theta - theta, lists)
    theta_inplace = not step_expr.has(theta)
    if theta_inplace and not lin.coordinate(step_expr):
        if step_expr != 0:
            lin.ops.append(("theta_add_s", scalar_name(step_expr)))
    elif theta_inplace:
        c, rest = (sp.Integer(1), step_expr)
        if isinstance(step_expr, sp.Mul):
            c, rest = step_expr.as_independent(*lists, as_Add=False)
        lst, _ = lin.lin(_collect(rest, lists))
        alpha = None if c == 1 else scalar_name(c)
        lin.ops.append(("theta_add", lst, alpha))
    else:
        lst, _ = lin.lin(_collect(e_theta, lists))
        lin.ops.append(("theta_copy", lst))
    emit_group(o0, s0)

    needs_closure = any(s[0] == "evaluate" for s in stages)
    needs_loss = rule.needs_loss
    params = [p for p in sys_.parameters if not p.stored]
    defaults = {kw: p.default for p, kw in zip(params, keywords.values(), strict=True)}
    # what each hyper-parameter must satisfy (checked at construction and whenever a param
    # group's value changes): finite, and its symbol's sign assumptions
    rules = {keywords[p.symbol]: _signs(p.symbol) for p in params}
    # H bounded below: a kinetic coefficient κ of parameters the assumptions leave open, ≥ 0
    kinetic = [
        (label, kappa)
        for label, kappa in getattr(sys_, "bounded_below_conditions", ())
        if kappa.free_symbols and kappa.free_symbols <= set(keywords)
    ]
    # lr = 0 (a scheduler's end, a warm-up's start) is a step that changes nothing, unless the
    # rule divides by h or bounds a step-size ratio by it
    lr_divides = controlled or any(
        isinstance(a, sp.Pow) and a.base == rule.h and a.exp.is_negative
        for st in stages
        if st[0] == "group"
        for _, e in st[2]
        for a in sp.preorder_traversal(e)
    )

    stages = _update_state_in_place(stages, [f'G["{b.name}"]' for b in state_blocks])

    def path(foreach: bool) -> list[str]:
        lines: list[str] = []
        ind = "        "
        for stage in stages:
            kind = stage[0]
            if kind == "group":
                ops, scal = stage[1], stage[2]
                if not ops and not scal:
                    continue
                lines.append("    for G in groups:")
                for kw in keywords.values():
                    lines.append(f'{ind}P_{kw} = G["{kw}"]')
                lines.append(f'{ind}lr = G["lr"]' + (' * glob["h_scale"]' if controlled else ""))
                if uses_time:
                    lines.append(f'{ind}t = G["t"]')
                for nm, e in scal:
                    printer._names = scalars
                    lines.append(f"{ind}{nm} = {printer.doprint(e)}")
                lines += _print_special(ops, foreach, ind)
            elif kind == "reduce":
                rname, lst = stage[1], stage[2]
                total = "_total_sq" if stage[3:] == ("sq",) else "_total"
                lines.append(f"    {rname} = 0.0")
                lines.append("    for G in groups:")
                lines.append(f"        {rname} += {total}({lst})")
                lines.append(f"    {rname} = _reduce_global({rname}, process_group)")
            elif kind == "evaluate":
                _, th_key, gkey, fname = stage
                lines.append(f"    {fname}, _g = _evaluate(groups, {th_key!r}, closure, maximize)")
                lines.append(f"    for G, gs in zip(groups, _g): G[{gkey!r}] = gs")
            elif kind == "accept":
                lines.append("    G = groups[0]  # one step size for all groups (checked)")
                for kw in keywords.values():
                    lines.append(f'    P_{kw} = G["{kw}"]')
                lines.append('    lr = G["lr"] * glob["h_scale"]')
                printer._names = scalars
                lines.append(f"    _err = {printer.doprint(stage[1])}")
                if stage[2] is None:  # the energy test: accept iff it dropped enough
                    lines.append("    accepted = _err <= 0.0")
                    lines.append("    _fac = GROW if accepted else SHRINK")
                else:  # the error test: accept iff err ≤ 1; h·clip(safety·err^(−1/(q+1)))
                    q1 = stage[2] + 1
                    lines.append("    accepted = _err <= 1.0")
                    lines.append(
                        f"    _fac = SAFETY * _err ** (-1.0 / {q1}) if _err > 0 else math.inf"
                    )
                    lines.append(
                        "    _fac = min(max(_fac, SHRINK), GROW) if _fac == _fac else SHRINK"
                    )
                lines.append("    if not accepted:")
                lines.append("        return False, _fac")
        if controlled:
            lines.append("    return True, _fac")
        return lines

    foreach_lines = path(True)
    single_lines = path(False)

    doc = str(rule).replace('"""', "'''")
    src: list[str] = []
    src.append(f'"""{cls}: {sys_.name} discretized by {rule.scheme.name}, exported by odeopt.')
    src.append("")
    src.append("The update rule (h is the learning rate lr):")
    src.append("")
    src += ["    " + line for line in doc.splitlines()]
    src.append("")
    src.append(
        "Needs only torch. Group keys: lr (the step h), "
        + ", ".join(keywords.values())
        + (", " if keywords else "")
        + "maximize, foreach, check_finite, skip_nonfinite."
    )
    src.append('"""')
    src.append("")
    src.append("import math")
    src.append("")
    src.append("import torch")
    src.append("from torch.optim import Optimizer")
    src.append("")
    src.append(f"__all__ = [{cls!r}]")
    src.append("")
    src.append(f"NEEDS_CLOSURE = {needs_closure}")
    src.append(f"NEEDS_LOSS = {needs_loss}")
    src.append(f"STATE_BLOCKS = {[b.name for b in state_blocks]!r}")
    src.append(f"USES_TIME = {uses_time}")
    src.append(f"LEVEL_SET = {sys_.level_set is not None}")
    src.append(f"SWITCHES = {bool(sys_.switches)}")
    ls = sys_.level_set
    src.append(f"DOMAIN = {ls is not None and ls.domain is not None}")
    if ls is not None and ls.spec.bounce == "uniform":
        bounce_sig = ", bounce_every=1000, bounces=1, bounce_patience=3000, seed=0"
    elif ls is not None and ls.spec.bounce == "gaussian":
        bounce_sig = ", noise=5e-5, seed=0"
    else:
        bounce_sig = ""
    src.append(f"STORED = {ls.spec.symbol if ls is not None else None!r}")
    src.append(f"CONTROLLED = {controlled}")
    if controlled:
        src.append(f"SHRINK, GROW = {float(ctrl.shrink)!r}, {min(float(ctrl.grow), 1e300)!r}")
        src.append(f"SAFETY = {float(getattr(ctrl, 'safety', 1.0))!r}")
        h_max = min(float(getattr(ctrl, "h_max", float("inf"))), 1e300)
        src.append(f"H_MIN, H_MAX = {float(getattr(ctrl, 'h_min', 0.0))!r}, {h_max!r}")
    src.append(f"PARAMETER_KEYS = {list(keywords.values())!r}")
    src.append(f"CLASS = {cls!r}")
    src.append(f"PARAMETER_RULES = {rules!r}")
    src.append(f"LR_MIN = {'positive' if lr_divides else 'nonnegative'!r}")
    src.append(
        "GROUP_KEYS = ['lr', *PARAMETER_KEYS, 'maximize', 'foreach', 'check_finite', "
        "'skip_nonfinite']"
    )
    src.append(_RUNTIME)
    src += _kinetic_function(kinetic, keywords, printer)
    if sys_.switches:
        src += _switch_function(sys_, keywords, printer)
    if ls is not None and ls.domain is not None:
        printer._names = {**{s: f"G0[{kw!r}]" for s, kw in keywords.items()}, sys_.loss: "F"}
        dom = printer.doprint(ls.domain)
        shift = keywords.get(ls.shift) if ls.shift is not None else None
        src += [
            "",
            "",
            "def _domain(param_groups, F, glob, adaptive_shift):",
            f'    """V = {ls.domain} when the step may run (V > 1e-40); otherwise None: no step',
            "    (counted in glob['domain_skips'])"
            + (f", and with adaptive_shift {shift} is lowered by 5|value|." if shift else ".")
            + '"""',
            "    G0 = param_groups[0]",
        ]
        for kw in sorted(keywords[s] for s in ls.domain.free_symbols if s in keywords):
            src += [
                f"    if any(G[{kw!r}] != G0[{kw!r}] for G in param_groups):",
                f'        raise ValueError("the domain V = {ls.domain} is global: all param '
                f'groups need the same {kw}")',
            ]
        src += [
            f"    value = {dom}",
            "    if value > 1e-40:",
            "        return value",
            '    glob["domain_skips"] = glob.get("domain_skips", 0) + 1',
        ]
        if shift:
            src += [
                "    if adaptive_shift:",
                "        for group in param_groups:",
                f"            group[{shift!r}] -= 5.0 * abs(value)",
            ]
        src += ["    return None"]
    bounce = ls.spec.bounce if ls is not None else None
    src.append(f"BOUNCE = {bounce!r}")
    src.append(f"MOMENTUM = {ls.spec.momentum.name if ls is not None else None!r}")
    if bounce is not None:
        src.append(_BOUNCE_RUNTIME)
    if sys_.level_set is not None:
        src += _level_set_start(sys_, rule, keywords, printer)
    for label, lines in (("foreach", foreach_lines), ("single", single_lines)):
        src.append("")
        src.append("")
        src.append(f"def _step_{label}(groups, F, closure, maximize, process_group, glob):")
        how = "torch._foreach_* ops" if label == "foreach" else "a loop per parameter"
        src.append(f'    """One step on all groups ({how})."""')
        src += lines or ["    pass"]
    src.append("")
    src.append("")
    src.append(
        _CLASS_TEMPLATE.format(
            cls=cls,
            system=sys_.name,
            scheme=rule.scheme.name,
            signature="".join(f", {kw}={defaults[kw]!r}" for kw in keywords.values()),
            bounce_signature=bounce_sig,
            keys="".join(f", {kw}={kw}" for kw in keywords.values()),
        )
    )
    return "\n".join(src) + "\n"


def _kinetic_function(
    kinetic: list[tuple[str, sp.Expr]], keywords: dict[sp.Symbol, str], printer: _ScalarPrinter
) -> list[str]:
    """``_check_kinetic``: H = … + κ·|x|² is bounded below only if κ ≥ 0 (κ of parameters
    whose sign the symbols' assumptions leave open, e.g. 1/(2·m) with m merely real)."""
    lines = ["", "", "def _check_kinetic(V, where):"]
    lines.append('    """H is bounded below only if each kinetic coefficient is ≥ 0 (a negative')
    lines.append('    mass makes H → −∞ and the step anti-dissipative): ValueError otherwise."""')
    if not kinetic:
        return [*lines, "    return"]
    printer._names = {s: f"V[{kw!r}]" for s, kw in keywords.items()}
    for label, kappa in kinetic:
        shown = ", ".join(
            f"{keywords[s]}={{V[{keywords[s]!r}]!r}}"
            for s in sorted(kappa.free_symbols, key=sp.default_sort_key)
        )
        lines += [
            "    try:",
            f"        value = float({printer.doprint(kappa)})",
            "    except ZeroDivisionError:",
            "        value = math.nan",
            "    if not value >= 0:",
            "        raise ValueError(",
            f'            f"H is unbounded below with {shown}{{where}}: the coefficient "',
            f'            f"of {label} in H is {kappa} = {{value:g}}, but a kinetic term "',
            '            "needs one ≥ 0 (finite)")',
        ]
    return lines


def _update_state_in_place(stages: list[tuple[Any, ...]], states: list[str]) -> list[Any]:
    """Update state lists in place where nothing reads their old values afterwards.

    An op ``out = x·s`` or ``out = x + α·y`` whose x is a state list becomes ``x·= s`` or
    ``x += α·y`` (and ``out`` is x from then on) when no later op, reduction or alias reads
    the old x. Heavy ball becomes ``p·= s; p += c·g`` (torch SGD's memory traffic), BBI's
    rescale-and-kick ``p·= r; p += c·g``. Only for rules without extra evaluations, whose
    stages cannot fail after the state is written."""
    if any(st[0] == "evaluate" for st in stages):
        return stages
    stages = [(st[0], list(st[1]), st[2]) if st[0] == "group" else st for st in stages]
    where = [
        (si, oi)
        for si, st in enumerate(stages)
        for oi in (range(len(st[1])) if st[0] == "group" else [None])
    ]

    def item(pos: tuple[int, int | None]) -> tuple[Any, ...]:
        si, oi = pos
        return stages[si] if oi is None else stages[si][1][oi]

    def reads(pos: tuple[int, int | None]) -> list[str]:
        x = item(pos)
        if pos[1] is None:
            return [x[2]] if x[0] == "reduce" else []
        args = x[1:] if x[0] in ("theta_add", "theta_add_s", "theta_copy") else x[2:]
        return [a for a in args if isinstance(a, str)]

    def put(pos: tuple[int, int | None], value: tuple[Any, ...]) -> None:
        si, oi = pos
        if oi is None:
            stages[si] = value
        else:
            stages[si][1][oi] = value

    def resolve_aliases() -> None:
        # a later read of an alias of a state list reads the list itself
        for k, pos in enumerate(where):
            a = item(pos)
            if pos[1] is not None and a[0] in ("rename", "alias") and a[2] in states:
                for q in where[k + 1 :]:
                    x = item(q)
                    if q[1] is not None and a[1] in x[2:]:
                        put(q, x[:2] + tuple(a[2] if v == a[1] else v for v in x[2:]))
                    elif q[1] is not None and x[0].startswith("theta") and a[1] in x[1:]:
                        put(q, (x[0], *(a[2] if v == a[1] else v for v in x[1:])))

    changed = True
    while changed:
        changed = False
        resolve_aliases()
        for src in states:
            for k, pos in enumerate(where):
                op = item(pos)
                if pos[1] is None or op[2:3] != (src,):
                    continue
                if op[0] == "mul_s" and not (len(op) > 4 and op[4]):
                    rewritten: tuple[Any, ...] = ("mul_s", src, src, op[3], True)
                elif op[0] == "add" and not op[5]:
                    rewritten = ("add", src, src, op[3], op[4], True)
                else:
                    continue
                old = {src}  # names of the old value: src and its aliases made before
                for q in where[:k]:
                    a = item(q)
                    if q[1] is not None and a[0] in ("rename", "alias") and a[2] in old:
                        old.add(a[1])
                if any(r in old for q in where[k + 1 :] for r in reads(q)):
                    continue
                tmp = op[1]
                put(pos, rewritten)
                for q in where[k + 1 :]:
                    put(q, tuple(src if a == tmp else a for a in item(q)))
                changed = True
                break
    return stages


def _switch_function(
    sys_: Any, keywords: dict[sp.Symbol, str], printer: _ScalarPrinter
) -> list[str]:
    """``_switch``: each switch fires once, the first time the (smoothed) loss ≤ its goal."""
    names: dict[sp.Symbol, str] = {s: f"G0[{kw!r}]" for s, kw in keywords.items()}
    printer._names = names
    lines = [
        "",
        "",
        "def _switch(param_groups, F, glob, smoothing):",
        '    """Fire each switch once, when the loss (an exponential moving average with factor',
        '    ``smoothing`` of the closure\'s losses) reaches its goal; returns the average."""',
        '    avg = glob.get("loss_avg")',
        "    avg = F if avg is None else smoothing * avg + (1.0 - smoothing) * F",
        '    glob["loss_avg"] = avg',
        '    glob.setdefault("loss_start", F)',
        f'    fired = glob.setdefault("switched", [False] * {len(sys_.switches)})',
        "    G0 = param_groups[0]",
    ]
    for i, sw in enumerate(sys_.switches):
        goal = printer.doprint(sw.goal)
        if sw.relative:
            goal = f'({goal}) * glob["loss_start"]'
        lines += [f"    if not fired[{i}] and avg <= {goal}:"]
        printer._names = {s: f"group[{kw!r}]" for s, kw in keywords.items()}
        lines += ["        for group in param_groups:"]
        values = [(keywords[k], printer.doprint(v)) for k, v in sw.set.items()]
        lines += [
            "            "
            + ", ".join(f"group[{kw!r}]" for kw, _ in values)
            + " = "
            + ", ".join(v for _, v in values)
        ]
        lines += [f"        fired[{i}] = True"]
        printer._names = names
    lines += ["    return avg"]
    return lines


def _level_set_start(
    sys_: Any, rule: UpdateRule, keywords: dict[sp.Symbol, str], printer: _ScalarPrinter
) -> list[str]:
    """``_start``: the first step of a stored-energy rule sets E and the momentum."""
    ls = sys_.level_set
    assert sys_.loss is not None
    gsq = sp.Symbol("_gsq")
    E0 = ls.initial
    c = ls.start_coefficient(gsq, ls.E)
    used = sorted({keywords[s] for s in (E0.free_symbols | c.free_symbols) if s in keywords})
    names: dict[sp.Symbol, str] = {s: f"P_{kw}" for s, kw in keywords.items()}
    names.update({sys_.loss: "F", gsq: "_gsq", ls.E: "E"})
    printer._names = names
    p = ls.spec.momentum.name
    lines = [
        "",
        "",
        "def _start(groups, F, glob, process_group):",
        f'    """The first step: E = {E0}; {p} = −c·∇F with c = {c}',
        '    (along −∇F, on the level set H = E)."""',
        "    G = groups[0]",
    ]
    for kw in used:
        lines += [
            f"    if any(H[{kw!r}] != G[{kw!r}] for H in groups):",
            f'        raise ValueError("the stored energy is global: all param groups need the '
            f'same {kw}")',
            f"    P_{kw} = G[{kw!r}]",
        ]
    lines += [
        "    _gsq = 0.0",
        "    for G in groups:",
        '        _gsq += _total([g * g for g in G["g"]])',
        "    _gsq = _reduce_global(_gsq, process_group)",
        f"    E = {printer.doprint(E0)}",
        f"    if not (math.isfinite(E) and {'E > 0' if ls.spec.positive else 'True'}):",
        "        raise FloatingPointError(",
        '            f"the stored energy E = {E} must be '
        + ("positive and " if ls.spec.positive else "")
        + 'finite "',
        f'            f"({E0} at the start)")',
        f"    _c = {printer.doprint(c)}",
        "    for G in groups:",
        f'        for m, g in zip(G[{p!r}], G["g"]):',
        "            m.copy_(g).mul_(-_c)",
        f"    glob[{ls.spec.symbol!r}] = E",
    ]
    return lines


def _collect(e: sp.Expr, lists: dict[sp.Symbol, str]) -> sp.Expr:
    coords = sorted((s for s in e.free_symbols if s in lists), key=lambda s: str(s))
    return sp.collect(sp.expand(e), coords, evaluate=True) if coords else e


def _print_special(ops: list[tuple[Any, ...]], foreach: bool, ind: str) -> list[str]:
    lines: list[str] = []
    plain: list[tuple[Any, ...]] = []

    def flush() -> None:
        lines.extend(_print_ops(plain, foreach, ind))
        plain.clear()

    for op in ops:
        kind = op[0]
        if kind in ("rename", "alias"):
            flush()
            lines.append(f"{ind}{op[1]} = {op[2]}")
        elif kind == "clone":
            flush()
            lines.append(f"{ind}{op[1]} = [a.clone() for a in {op[2]}]")
        elif kind == "theta_add":
            flush()
            lst, alpha = op[1], op[2]
            a = f", alpha={alpha}" if alpha else ""
            if foreach:
                lines.append(f'{ind}torch._foreach_add_(G["theta"], {lst}{a})')
            else:
                lines.append(f'{ind}for a, b in zip(G["theta"], {lst}): a.add_(b{a})')
        elif kind == "theta_add_s":
            flush()
            if foreach:
                lines.append(f'{ind}torch._foreach_add_(G["theta"], {op[1]})')
            else:
                lines.append(f'{ind}for a in G["theta"]: a.add_({op[1]})')
        elif kind == "theta_copy":
            flush()
            lines.append(f'{ind}for a, b in zip(G["theta"], {op[1]}): a.copy_(b)')
        else:
            plain.append(op)
    flush()
    return lines


_RUNTIME = '''

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_SIGNS = {"positive": lambda v: v > 0, "nonnegative": lambda v: v >= 0,
          "negative": lambda v: v < 0, "nonpositive": lambda v: v <= 0,
          "nonzero": lambda v: v != 0}


def _real(value):
    """``value`` as a float if it is a real number (Python or numpy, or a one-element real
    tensor), else None."""
    if value is None or isinstance(value, (bool, str, bytes, complex)):
        return None
    if isinstance(value, torch.Tensor) and (value.numel() != 1 or value.is_complex()
                                            or value.dtype == torch.bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _check_number(name, value, signs, where, label=None):
    """A hyper-parameter: a real finite number with the given signs ("positive", …);
    TypeError or ValueError naming it (``label``), its value and ``where``."""
    label = label or name
    if value is None:
        raise TypeError(f"{label}{where} has no value (the system gives it no default): "
                        f"pass {name}=...")
    v = _real(value)
    if v is None:
        raise TypeError(f"{label}{where} must be a real number, got {value!r}")
    if not math.isfinite(v):
        raise ValueError(f"{label}{where} must be finite, got {name} = {value!r}")
    for sign in signs:
        if not _SIGNS[sign](v):
            raise ValueError(f"{label}{where} must be {sign}, got {value!r}")


def _unchanged(cached, values):
    """Whether a param group's checked values are still the same (NaN never is: a NaN is
    refused at every step; tensors are never cached: they may change in place)."""
    return cached is not None and all(
        a is b or (type(a) is type(b) and a == b) for a, b in zip(cached, values))


def _check_param(p, pi, gi):
    """A parameter the rule can update: a dense real floating-point tensor holding data."""
    what = f"parameter {pi} of group {gi} (shape {tuple(p.shape)})"
    if p.is_complex():
        raise TypeError(f"{what} is complex ({p.dtype}); {CLASS} optimizes real "
                        "floating-point parameters (its reductions |x|² assume real entries)")
    if p.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{what} has dtype {p.dtype}; {CLASS} optimizes floating-point "
                        "parameters (float16, bfloat16, float32 or float64)")
    if p.layout != torch.strided:
        raise TypeError(f"{what} has layout {p.layout}; {CLASS} optimizes dense parameters")
    if p.device.type == "meta":
        raise ValueError(f"{what} is on the meta device (it holds no data); materialize the "
                         "model on a real device (e.g. model.to_empty(device='cpu')) first")


def _nonfinite(tensors):
    """The index of the first tensor holding a NaN or ±inf, or None.

    One pass over the tensors, then one host synchronisation, with no sum that could
    overflow: on CUDA (and other accelerators) max |x| per tensor by the fused
    ``torch._foreach_norm(tensors, inf)``. On the CPU torch's inf-norm is a slow scalar loop,
    so: for many tensors, torch's fused non-finite test (the AMP gradient check at scale 1,
    which writes every value back unchanged; it has no per-tensor dispatch); for a few large
    ones, the read-only min and max of each (``aminmax``). Only when it finds something is
    each tensor tested exactly (``isfinite``), to name the first culprit.
    """
    if not tensors:
        return None
    try:
        n = len(tensors)
        if tensors[0].device.type != "cpu":
            norms = torch._foreach_norm(tensors, math.inf)
            suspect = not bool(torch.stack(norms).isfinite().all())
        elif n <= 64 and sum(a.numel() for a in tensors) >= n << 16:
            ends = [v for a in tensors if a.numel() for v in torch.aminmax(a)]
            suspect = bool(ends) and not bool(torch.stack(ends).isfinite().all())
        else:
            found = torch.zeros(1)
            torch._amp_foreach_non_finite_check_and_unscale_(tensors, found, torch.ones(1))
            suspect = bool(found)
    except (RuntimeError, TypeError, AttributeError, NotImplementedError):
        suspect = True  # mixed devices, an old torch, overlapping memory: test each tensor
    if suspect:
        for k, a in enumerate(tensors):
            if not bool(torch.isfinite(a).all()):
                return k
    return None


def _loss_value(loss, needed):
    """The closure's loss as a float (None when it returned None and the rule does not use
    the loss); TypeError/ValueError naming the loss and the closure otherwise."""
    if loss is None:
        if needed:
            raise TypeError(
                f"the closure returned None, but {CLASS}'s rule uses the loss value: return "
                "the loss from the closure (loss = ...; loss.backward(); return loss)")
        return None
    if isinstance(loss, torch.Tensor) and loss.numel() != 1:
        raise ValueError("the closure's loss must be a single number, got a tensor of shape "
                         f"{tuple(loss.shape)}")
    v = _real(loss)
    if v is None:
        raise TypeError("the closure must return the loss (a real number or a one-element "
                        f"tensor), got {loss!r}")
    return v


def _check_state_dict(opt, state_dict):
    """``state_dict`` must be a state of this optimizer (its group keys, its per-parameter
    state keys, tensors shaped like the parameters): ValueError saying what differs."""
    if not (isinstance(state_dict, dict) and "state" in state_dict
            and "param_groups" in state_dict):
        got = sorted(map(str, state_dict)) if isinstance(state_dict, dict) else state_dict
        raise ValueError("load_state_dict expects an optimizer state (a dict with 'state' and "
                         f"'param_groups', from {CLASS}.state_dict()), got {got!r}")
    saved, state = state_dict["param_groups"], state_dict["state"]
    if len(saved) != len(opt.param_groups):
        raise ValueError(f"the state has {len(saved)} param group(s), this {CLASS} has "
                         f"{len(opt.param_groups)}")
    foreign = sorted(str(k) for k in state if not isinstance(k, int) and k != "odeopt")
    if foreign or ("odeopt" in state and not (LEVEL_SET or SWITCHES or CONTROLLED)):
        raise ValueError(f"the state holds {foreign or ['odeopt']} beside the parameters' "
                         f"state, which a {CLASS} state does not: it is another optimizer's")
    want = {"step", *STATE_BLOCKS} | ({"t"} if USES_TIME else set())
    for gi, (g, ours) in enumerate(zip(saved, opt.param_groups)):
        missing = sorted(set(GROUP_KEYS) - set(g))
        if missing:
            raise ValueError(
                f"the state is not a {CLASS} state: its param group {gi} lacks {missing} "
                f"(it has {sorted(k for k in g if k != 'params')}); was it saved by another "
                "optimizer?")
        if len(g["params"]) != len(ours["params"]):
            raise ValueError(f"the state's param group {gi} has {len(g['params'])} "
                             f"parameter(s), this optimizer's has {len(ours['params'])}")
        for pi, (idx, p) in enumerate(zip(g["params"], ours["params"])):
            st = state.get(idx)
            if st is None:
                continue  # no step taken for this parameter yet
            if not isinstance(st, dict) or set(st) != want:
                keys = sorted(st) if isinstance(st, dict) else type(st).__name__
                raise ValueError(f"the state of parameter {pi} of group {gi} has {keys}, a "
                                 f"{CLASS} state has {sorted(want)}: it is another optimizer's")
            for b in STATE_BLOCKS:
                v = st[b]
                if not isinstance(v, torch.Tensor) or v.shape != p.shape:
                    shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                    raise ValueError(f"the state {b!r} of parameter {pi} of group {gi} has "
                                     f"shape {shape}, but the parameter has shape "
                                     f"{tuple(p.shape)}")


def _total(tensors):
    """Σ over the tensors and their elements, accumulated in float64."""
    return float(torch.stack([a.sum(dtype=torch.float64) for a in tensors]).sum())


def _sq(a):
    if a.dtype in (torch.float32, torch.float64):
        v = a.reshape(-1)
        return torch.dot(v, v)  # one read (BLAS), accumulated in the tensor's precision
    return a.float().square().sum()


def _total_sq(tensors):
    """Σ x² over the tensors: a dot product per tensor, summed in float64."""
    if not tensors:
        return 0.0
    return float(torch.stack([_sq(a).to(torch.float64) for a in tensors]).sum())


def _reduce_global(value, process_group):
    """Sum a reduction over the ranks of ``process_group`` when torch.distributed runs."""
    if (process_group is not None and torch.distributed.is_available()
            and torch.distributed.is_initialized()):
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(t, group=process_group)
        return float(t[0])
    return value


class _NonFinite(Exception):
    """A non-finite loss or gradient at an intermediate stage (parameters already restored)."""


def _evaluate(groups, theta_key, closure, maximize):
    """F and ∇F at the parameter values ``G[theta_key]`` (the parameters are restored)."""
    saved = [[p.detach().clone() for p in G["theta"]] for G in groups]
    for G in groups:
        for p, v in zip(G["theta"], G[theta_key]):
            p.copy_(v)
            p.grad = None
    try:
        with torch.enable_grad():
            loss = closure()
        grads = []
        for G in groups:
            gs = []
            for p in G["theta"]:
                g = torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                gs.append(g.neg_() if G["maximize"] else g)
            grads.append(gs)
    finally:
        for G, sv in zip(groups, saved):
            for p, v in zip(G["theta"], sv):
                p.copy_(v)
    F = _loss_value(loss, NEEDS_LOSS)
    F = 0.0 if F is None else F  # (unused: the rule does not read the loss)
    if not math.isfinite(F) and (NEEDS_LOSS or any(G["check_finite"] for G in groups)):
        raise _NonFinite(f"the loss is not finite ({F}) at the stage {theta_key}")
    for G, gs in zip(groups, grads):
        if G["check_finite"] and _nonfinite(gs) is not None:
            raise _NonFinite(f"a gradient is not finite at the stage {theta_key}")
    return (-F if maximize else F), grads
'''

_BOUNCE_RUNTIME = '''

def _rng(glob, seed, device):
    """The bounce generator, its state kept in the optimizer state (exact resume)."""
    gen = torch.Generator(device=device)
    if "rng" in glob:
        gen.set_state(glob["rng"])
    else:
        gen.manual_seed(seed)
    return gen


def _sqnorm(tensors, process_group):
    return _reduce_global(_total([a * a for a in tensors]), process_group)


def _draw(kind, m, gen):
    dtype = m.dtype if m.dtype in (torch.float32, torch.float64) else torch.float32
    z = torch.empty(m.shape, dtype=dtype, device=m.device)
    if kind == "uniform":
        return z.uniform_(-0.5, 0.5, generator=gen)
    return z.normal_(generator=gen)


def _bounce_uniform(moms, glob, seed, process_group):
    """p ← uniform noise in [−½, ½] per element, rescaled to the same global |p|."""
    if not moms:
        return
    gen = _rng(glob, seed, moms[0].device)
    old = _sqnorm(moms, process_group)
    noise = [_draw("uniform", m, gen) for m in moms]
    glob["rng"] = gen.get_state()
    new = _sqnorm(noise, process_group)
    c = math.sqrt(old / new) if new > 0 else 0.0
    for m, z in zip(moms, noise):
        m.copy_(z.mul_(c))


def _bounce_gaussian(moms, glob, seed, nu, process_group):
    """p ← |p|·normalize(p/|p| + ν z), z ~ N(0, I): the direction jitters, |p| is kept."""
    if not moms:
        return
    gen = _rng(glob, seed, moms[0].device)
    z = [_draw("gaussian", m, gen) for m in moms]
    glob["rng"] = gen.get_state()
    old = _sqnorm(moms, process_group)
    if old <= 0:
        return
    r = math.sqrt(old)
    for m, zi in zip(moms, z):  # p/r + νz, scaled by r (normalised next: same direction)
        m.add_(zi.to(m.dtype), alpha=nu * r)
    n = math.sqrt(_sqnorm(moms, process_group))
    for m in moms:
        m.mul_(r / n)
'''

_CLASS_TEMPLATE = '''class {cls}(Optimizer):
    """{system} with {scheme}, as a torch.optim.Optimizer (generated by odeopt).

    lr is the time step h (schedulers scale it); the system's parameters are group keys.
    The state of each parameter holds the system's other blocks ({{STATE}}), zero at start.
    A closure is required when the rule needs the loss or several gradient evaluations.
    ``compiled=True`` runs the foreach step through ``torch.compile`` (compiled on the first
    step; a changed lr or group layout may recompile).
    Non-finite gradients or a non-finite loss raise FloatingPointError naming the parameter
    (or the loss), unless ``skip_nonfinite=True`` (then the step is skipped and counted in
    ``skipped_steps``). The gradient test is one fused pass; ``check_finite=False`` drops it
    (and the loss test, unless the rule uses the loss). A closure returning None where the
    rule uses the loss is a TypeError.
    Hyper-parameters are checked at construction and again at the first step after a param
    group's value changed (schedulers, users): lr finite and > 0 at construction, finite and
    ≥ 0 later (0: a step that changes nothing; > 0 where the rule divides by h), the system's
    parameters real, finite and as their symbols assume (positive, nonnegative, …).
    Parameters must be real floating-point tensors holding data (not int, complex or meta);
    ``load_state_dict`` accepts this optimizer's state only, shaped like the parameters.
    Reductions (|p|², the loss) are global over all groups, and over the ranks of
    ``process_group`` when given (each rank holding a shard of the parameters).
    """

    def __init__(self, params, lr=1e-3{signature}, *, maximize=False, foreach=None,
                 check_finite=True, skip_nonfinite=False, process_group=None, compiled=False,
                 switch_smoothing=0.0, adaptive_shift=False{bounce_signature}):
        _check_number("lr", lr, ("positive",), "", "lr (the step h)")
        values = dict(lr=lr{keys})
        for name, signs in PARAMETER_RULES.items():
            _check_number(name, values[name], signs, "")
        _check_kinetic(values, "")
        defaults = dict(values, maximize=maximize, foreach=foreach,
                        check_finite=check_finite, skip_nonfinite=skip_nonfinite)
        self._checked = {{}}  # param group index -> its hyper-parameters as last checked
        super().__init__(params, defaults)
        self.process_group = process_group
        self.skipped_steps = 0
        smoothing = _real(switch_smoothing)
        if smoothing is None or not 0.0 <= smoothing < 1.0:
            raise ValueError(f"switch_smoothing must be in [0, 1), got {{switch_smoothing!r}}")
        self.switch_smoothing = smoothing
        self.adaptive_shift = bool(adaptive_shift)
        if BOUNCE == "uniform":
            for name, v in (("bounce_every", bounce_every), ("bounces", bounces),
                            ("bounce_patience", bounce_patience)):
                if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                    raise ValueError(f"{{name}} must be an integer ≥ 0 (0: off), got {{v!r}}")
            self.bounce_every, self.bounces = bounce_every, bounces
            self.bounce_patience, self.seed = bounce_patience, int(seed)
        elif BOUNCE == "gaussian":
            nu = _real(noise)
            if nu is None or not (math.isfinite(nu) and nu >= 0):
                raise ValueError(f"noise must be finite and ≥ 0 (0: off), got {{noise!r}}")
            self.noise, self.seed = nu, int(seed)
        self.compiled = bool(compiled)  # run the foreach step through torch.compile
        self._compiled_step = None

    def add_param_group(self, param_group):
        """torch's ``add_param_group``, then the checks of ``__init__`` on the new group: its
        parameters (dense real floating-point tensors holding data) and its hyper-parameters.
        A group that fails is not added."""
        super().add_param_group(param_group)
        gi = len(self.param_groups) - 1
        group = self.param_groups[gi]
        try:
            for pi, p in enumerate(group["params"]):
                _check_param(p, pi, gi)
            self._check_group(gi, group)
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    def _check_group(self, gi, group):
        """The hyper-parameters of param group ``gi`` (lr, the system's parameters, flags)."""
        where = f" in param group {{gi}}"
        _check_number("lr", group.get("lr"), (LR_MIN,), where, "lr (the step h)")
        for name, signs in PARAMETER_RULES.items():
            _check_number(name, group.get(name), signs, where)
        _check_kinetic(group, where)
        for flag in ("maximize", "check_finite", "skip_nonfinite"):
            if not isinstance(group.get(flag), bool):
                raise TypeError(f"{{flag}}{{where}} must be True or False, got "
                                f"{{group.get(flag)!r}}")
        if not (group.get("foreach") is None or isinstance(group.get("foreach"), bool)):
            raise TypeError(f"foreach{{where}} must be None, True or False, got "
                            f"{{group.get('foreach')!r}}")

    def load_state_dict(self, state_dict):
        """torch's ``load_state_dict``, after checking that ``state_dict`` is a state of this
        optimizer (ValueError naming what differs: group keys, state keys, shapes)."""
        _check_state_dict(self, state_dict)
        super().load_state_dict(state_dict)
        self._checked = {{}}  # the loaded hyper-parameters are checked at the next step

    def _groups(self):
        groups = []
        for gi, group in enumerate(self.param_groups):
            values = [group.get(k) for k in GROUP_KEYS]
            if not _unchanged(self._checked.get(gi), values):  # checked when they change
                self._check_group(gi, group)
                tensors = any(isinstance(v, torch.Tensor) for v in values)
                self._checked[gi] = None if tensors else values
            G = {{k: v for k, v in group.items() if k != "params"}}
            G["theta"], G["g"] = [], []
            for b in STATE_BLOCKS:
                G[b] = []
            for pi, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(
                        f"{cls} does not support sparse gradients "
                        f"(parameter {{pi}} of group {{gi}}, shape {{tuple(p.shape)}})")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    if USES_TIME:
                        state["t"] = 0.0
                    for b in STATE_BLOCKS:
                        state[b] = torch.zeros_like(p, memory_format=torch.preserve_format)
                G["theta"].append(p)
                G["g"].append(p.grad.neg() if group["maximize"] else p.grad)
                for b in STATE_BLOCKS:
                    G[b].append(state[b])
            G["_group"] = gi
            if USES_TIME and G["theta"]:  # parameters that joined later start at 0
                G["t"] = max(self.state[p]["t"] for p in G["theta"])
            groups.append(G)
        return [G for G in groups if G["theta"]]

    def _finite(self, groups, F):
        """None, or what is not finite: the closure's loss F (when the rule uses it or a group
        checks), else the first gradient with a NaN or ±inf (one fused pass, ``_nonfinite``)."""
        checked = [G for G in groups if G["check_finite"]]
        if F is not None and not math.isfinite(F) and (NEEDS_LOSS or checked):
            return f"the loss returned by the closure is not finite ({{F}})"
        if not checked:
            return None
        grads = checked[0]["g"] if len(checked) == 1 else [g for G in checked for g in G["g"]]
        k = _nonfinite(grads)
        if k is None:
            return None
        for G in checked:
            if k < len(G["g"]):
                break
            k -= len(G["g"])
        gi, p_k = G["_group"], G["theta"][k]
        pi = next(i for i, p in enumerate(self.param_groups[gi]["params"]) if p is p_k)
        return (f"the gradient of parameter {{pi}} of group {{gi}} (shape "
                f"{{tuple(p_k.shape)}}) is not finite")

    @torch.no_grad()
    def step(self, closure=None):
        """One step of the rule. ``closure`` re-evaluates the model and returns the loss."""
        if (NEEDS_CLOSURE or NEEDS_LOSS) and closure is None:
            raise RuntimeError(
                "{cls} needs a closure that re-evaluates the model and returns the loss "
                "(its rule uses " + ("several gradient evaluations" if NEEDS_CLOSURE
                                      else "the loss value") + ")")
        loss = F = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
            F = _loss_value(loss, NEEDS_LOSS)
        groups = self._groups()
        if not groups:
            return loss
        problem = self._finite(groups, F)
        if problem is not None:
            if all(G["skip_nonfinite"] for G in groups):
                self.skipped_steps += 1
                return loss
            raise FloatingPointError(problem + "; pass skip_nonfinite=True to skip such steps")
        flags = {{G["maximize"] for G in groups}}
        if len(flags) > 1 and (NEEDS_LOSS or NEEDS_CLOSURE):
            raise ValueError(
                "param groups disagree on maximize, but this rule uses the loss value; "
                "give all groups the same maximize"
            )
        maximize = groups[0]["maximize"]
        F = 0.0 if F is None else F
        if maximize:
            F = -F
        if SWITCHES:  # before the step: it runs with the values after a switch
            _switch(self.param_groups, F, self.state["odeopt"], self.switch_smoothing)
            groups = self._groups()
        foreach = groups[0]["foreach"]
        if foreach is None:
            foreach = all(p.is_cuda for G in groups for p in G["theta"])
        # state shared by all groups (the stored energy, switches), kept in state_dict
        glob = self.state["odeopt"] if LEVEL_SET or SWITCHES or CONTROLLED else None
        if CONTROLLED:
            glob.setdefault("h_scale", min(1.0, H_MAX / float(groups[0]["lr"])))
            keys = ["lr", *PARAMETER_KEYS]
            if any(G[k] != groups[0][k] for G in groups for k in keys):
                raise ValueError(
                    "a step-controlled rule tests the whole step at once: all param groups need "
                    f"the same {{', '.join(keys)}}")
            lr0 = float(groups[0]["lr"])  # lr may have changed (a scheduler): bound h first
            h_used = glob["h_scale"] = min(max(glob["h_scale"], H_MIN / lr0), H_MAX / lr0)
        V = F
        if DOMAIN:
            V = _domain(self.param_groups, F, glob, self.adaptive_shift)
            if V is None:
                return loss  # outside the domain (V ≤ 0): no step, no division by zero
        if LEVEL_SET and STORED not in glob:
            _start(groups, F, glob, self.process_group)
        if BOUNCE == "uniform" and self._bounce_due(glob, V):
            _bounce_uniform([m for G in groups for m in G[MOMENTUM]], glob, self.seed,
                            self.process_group)
            return loss  # a bounce makes no update
        run = _step_foreach if foreach else _step_single
        if self.compiled:
            if self._compiled_step is None:
                self._compiled_step = torch.compile(_step_foreach)
            run = self._compiled_step
        try:
            result = run(groups, F, closure, maximize, self.process_group, glob)
            accepted, fac = result if CONTROLLED else (True, 1.0)
        except _NonFinite as exc:  # nothing was written: θ and the state change last
            if not CONTROLLED:
                if all(G["skip_nonfinite"] for G in groups):
                    self.skipped_steps += 1
                    return loss
                raise FloatingPointError(
                    str(exc) + "; pass skip_nonfinite=True to skip such steps")
            accepted, fac = False, SHRINK  # a trial step whose loss overflows is rejected
        if CONTROLLED:  # grow after an acceptance, shrink after a rejection, within bounds
            scale = min(max(h_used * fac, H_MIN / lr0), H_MAX / lr0)
            glob["h_scale"] = scale if math.isfinite(scale) and scale > 0 else h_used
            if not accepted:
                glob["rejected"] = glob.get("rejected", 0) + 1
                return loss

        for G in groups:
            new = [(b, G["new_" + b]) for b in STATE_BLOCKS if "new_" + b in G]
            for k, p in enumerate(G["theta"]):
                state = self.state[p]
                state["step"] += 1
                if USES_TIME:
                    state["t"] = G["t"] + G["lr"] * (h_used if CONTROLLED else 1.0)
                for b, values in new:
                    state[b] = values[k]
        if LEVEL_SET:
            glob["updates"] = glob.get("updates", 0) + 1
        if BOUNCE == "uniform":  # progress is judged on updates only (rejected steps: none)
            best = glob.get("best_V")
            if best is None or V < best:
                glob["best_V"], glob["since_best"] = V, 0
            else:
                glob["since_best"] = glob.get("since_best", 0) + 1
        if BOUNCE == "gaussian" and self.noise > 0:
            moms = [self.state[p][MOMENTUM] for G in groups for p in G["theta"]]
            _bounce_gaussian(moms, glob, self.seed, self.noise, self.process_group)
        return loss

    def _bounce_due(self, glob, V):
        """ECD's bounce schedule, as the authors' code counts it: a bounce replaces the update
        after every bounce_every updates (bounces in all), and after bounce_patience
        consecutive updates whose V was no new minimum (``step`` records V after an update)."""
        n = glob.get("updates", 0)
        due = (self.bounce_every > 0 and n > 0 and n % self.bounce_every == 0
               and glob.get("fixed_bounces", 0) < self.bounces and glob.get("bounced_at") != n)
        stuck = self.bounce_patience > 0 and glob.get("since_best", 0) >= self.bounce_patience
        if not (due or stuck):
            return False
        if due:
            glob["fixed_bounces"] = glob.get("fixed_bounces", 0) + 1
            glob["bounced_at"] = n
        glob["since_best"] = 0
        glob["bounces_made"] = glob.get("bounces_made", 0) + 1
        return True
'''
