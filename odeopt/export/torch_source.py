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
    checks = []
    for p in params:
        kw = keywords[p.symbol]
        a = p.symbol.assumptions0
        if a.get("positive"):
            checks.append((kw, f"{kw} > 0", "positive"))
        elif a.get("nonnegative"):
            checks.append((kw, f"{kw} >= 0", "nonnegative"))

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
    src.append(_RUNTIME)
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
            checks="".join(
                f'        if not ({cond}):\n            raise ValueError(f"{kw} must be {what}, '
                f'got {{{kw}}}")\n'
                for kw, cond, what in checks
            ),
            group_checks="".join(
                f"            if not ({cond.replace(kw, 'group[' + repr(kw) + ']')}):\n"
                f'                raise ValueError(f"{kw} must be {what}, got {{group[{kw!r}]}}")\n'
                for kw, cond, what in checks
            ),
        )
    )
    return "\n".join(src) + "\n"


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
    F = float(loss)
    if not math.isfinite(F):
        raise _NonFinite(f"the loss is not finite ({F}) at the stage {theta_key}")
    for G, gs in zip(groups, grads):
        if G["check_finite"] and gs and not bool(
            torch.isfinite(torch.stack([g.sum() for g in gs])).all()
        ):
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
    Non-finite gradients or loss raise FloatingPointError naming the parameter, unless
    ``skip_nonfinite=True`` (then the step is skipped and counted in ``skipped_steps``).
    Reductions (|p|², the loss) are global over all groups, and over the ranks of
    ``process_group`` when given (each rank holding a shard of the parameters).
    """

    def __init__(self, params, lr=1e-3{signature}, *, maximize=False, foreach=None,
                 check_finite=True, skip_nonfinite=False, process_group=None, compiled=False,
                 switch_smoothing=0.0, adaptive_shift=False{bounce_signature}):
        if not (isinstance(lr, (int, float, torch.Tensor)) and float(lr) > 0):
            raise ValueError(f"lr (the step h) must be a positive number, got {{lr}}")
{checks}        defaults = dict(lr=lr{keys}, maximize=maximize, foreach=foreach,
                        check_finite=check_finite, skip_nonfinite=skip_nonfinite)
        super().__init__(params, defaults)
        self.process_group = process_group
        self.skipped_steps = 0
        if not 0.0 <= switch_smoothing < 1.0:
            raise ValueError(f"switch_smoothing must be in [0, 1), got {{switch_smoothing}}")
        self.switch_smoothing = float(switch_smoothing)
        self.adaptive_shift = bool(adaptive_shift)
        if BOUNCE == "uniform":
            for name, v in (("bounce_every", bounce_every), ("bounces", bounces),
                            ("bounce_patience", bounce_patience)):
                if not (isinstance(v, int) and v >= 0):
                    raise ValueError(f"{{name}} must be an integer ≥ 0 (0: off), got {{v}}")
            self.bounce_every, self.bounces = bounce_every, bounces
            self.bounce_patience, self.seed = bounce_patience, int(seed)
        elif BOUNCE == "gaussian":
            if not noise >= 0:
                raise ValueError(f"noise must be ≥ 0 (0: off), got {{noise}}")
            self.noise, self.seed = float(noise), int(seed)
        self.compiled = bool(compiled)  # run the foreach step through torch.compile
        self._compiled_step = None

    def _groups(self):
        groups = []
        for gi, group in enumerate(self.param_groups):
{group_checks}            G = {{k: v for k, v in group.items() if k != "params"}}
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

    def _finite(self, groups, loss):
        if loss is not None and not math.isfinite(float(loss)):
            return f"the loss is not finite ({{float(loss)}})"
        for G in groups:
            if not G["check_finite"]:
                continue
            # a sum is non-finite iff an element is (±inf, NaN propagate; inf − inf is NaN),
            # barring a finite sum that overflows: one cheap read of each gradient
            sums = torch.stack([g.sum() for g in G["g"]]) if G["g"] else None
            if sums is not None and not bool(torch.isfinite(sums).all()):
                k = int((~torch.isfinite(sums)).nonzero()[0])
                gi = G["_group"]
                p_k = G["theta"][k]
                pi = next(i for i, p in enumerate(self.param_groups[gi]["params"]) if p is p_k)
                return (f"the gradient of parameter {{pi}} of group {{gi}} (shape "
                        f"{{tuple(G['theta'][k].shape)}}) is not finite")
        return None

    @torch.no_grad()
    def step(self, closure=None):
        """One step of the rule. ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if (NEEDS_CLOSURE or NEEDS_LOSS) and closure is None:
            raise RuntimeError(
                "{cls} needs a closure that re-evaluates the model and returns the loss "
                "(its rule uses " + ("several gradient evaluations" if NEEDS_CLOSURE
                                      else "the loss value") + ")")
        groups = self._groups()
        if not groups:
            return loss
        problem = self._finite(groups, loss if NEEDS_LOSS else None)
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
        F = 0.0 if loss is None else float(loss)
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
