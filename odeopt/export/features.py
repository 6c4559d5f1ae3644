"""The module-level functions an exported optimizer carries only when its system has the
feature: kinetic-coefficient checks, switches, a domain, a stored energy level.

Each returns the lines of one function of the generated file (empty when the system lacks
the feature); :mod:`odeopt.export.render` places them.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from .plan import Plan

__all__ = ["ScalarPrinter", "domain_function", "kinetic_function", "start_function"]
__all__ += ["switch_function"]


class ScalarPrinter(PythonCodePrinter):
    """Prints coordinate-free expressions as Python, each symbol by the name in ``names``."""

    def __init__(self, names: dict[sp.Basic, str]) -> None:
        super().__init__({"fully_qualified_modules": True})
        self.names = names

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return self.names[expr]

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if expr.exp == 2:
            b = self.parenthesize(expr.base, sp.printing.precedence.PRECEDENCE["Mul"])
            return f"({b}*{b})"
        return super()._print_Pow(expr, rational=rational)


def _keys(plan: Plan, fmt: str) -> dict[sp.Basic, str]:
    """Each system parameter printed as ``fmt`` of its keyword (e.g. ``G0[{kw!r}]``)."""
    return {s: fmt.format(kw=kw) for s, kw in plan.keywords.items()}


def kinetic_function(plan: Plan) -> list[str]:
    """``_check_kinetic``: H = … + κ·|x|² is bounded below only if κ ≥ 0 (κ of parameters
    whose sign the symbols' assumptions leave open, e.g. 1/(2·m) with m merely real)."""
    if not plan.kinetic:
        return []
    printer = ScalarPrinter(_keys(plan, "V[{kw!r}]"))
    lines = [
        "def _check_kinetic(V, where):",
        '    """H is bounded below only if each kinetic coefficient is ≥ 0 (a negative',
        '    mass makes H → −∞ and the step anti-dissipative): ValueError otherwise."""',
    ]
    for label, kappa in plan.kinetic:
        shown = ", ".join(
            f"{plan.keywords[s]}={{V[{plan.keywords[s]!r}]!r}}"
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


def switch_function(plan: Plan) -> list[str]:
    """``_switch``: each switch fires once, the first time the (smoothed) loss ≤ its goal."""
    sys_ = plan.rule.system
    if not sys_.switches:
        return []
    goals = ScalarPrinter(_keys(plan, "G0[{kw!r}]"))
    values = ScalarPrinter(_keys(plan, "group[{kw!r}]"))
    lines = [
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
        goal = goals.doprint(sw.goal)
        if sw.relative:
            goal = f'({goal}) * glob["loss_start"]'
        new = [(plan.keywords[k], values.doprint(v)) for k, v in sw.set.items()]
        lines += [
            f"    if not fired[{i}] and avg <= {goal}:",
            "        for group in param_groups:",
            "            "
            + ", ".join(f"group[{kw!r}]" for kw, _ in new)
            + " = "
            + ", ".join(v for _, v in new),
            f"        fired[{i}] = True",
        ]
    return [*lines, "    return avg"]


def domain_function(plan: Plan) -> list[str]:
    """``_domain``: V (BBI: F − ΔV) when a step may run (V > 1e-40), else None, counted in
    glob['domain_skips'] (and the shift lowered by 5|V| with adaptive_shift)."""
    ls = plan.rule.system.level_set
    if ls is None or ls.domain is None:
        return []
    names = _keys(plan, "G0[{kw!r}]")
    assert plan.rule.system.loss is not None
    names[plan.rule.system.loss] = "F"
    shift = plan.keywords.get(ls.shift) if ls.shift is not None else None
    lines = [
        "def _domain(param_groups, F, glob" + (", adaptive_shift):" if shift else "):"),
        f'    """V = {ls.domain} when the step may run (V > 1e-40); otherwise None: no step',
        "    (counted in glob['domain_skips'])"
        + (f", and with adaptive_shift {shift} is lowered by 5|value|." if shift else ".")
        + '"""',
        "    G0 = param_groups[0]",
    ]
    for kw in sorted(plan.keywords[s] for s in ls.domain.free_symbols if s in plan.keywords):
        lines += [
            f"    if any(G[{kw!r}] != G0[{kw!r}] for G in param_groups):",
            f'        raise ValueError("the domain V = {ls.domain} is global: "',
            f'                         "all param groups need the same {kw}")',
        ]
    lines += [
        f"    value = {ScalarPrinter(names).doprint(ls.domain)}",
        "    if value > 1e-40:",
        "        return value",
        '    glob["domain_skips"] = glob.get("domain_skips", 0) + 1',
    ]
    if shift:
        lines += [
            "    if adaptive_shift:",
            "        for group in param_groups:",
            f"            group[{shift!r}] -= 5.0 * abs(value)",
        ]
    return [*lines, "    return None"]


def start_function(plan: Plan) -> list[str]:
    """``_start``: the first step of a stored-energy rule sets E and the momentum."""
    sys_ = plan.rule.system
    ls = sys_.level_set
    if ls is None:
        return []
    assert sys_.loss is not None
    gsq = sp.Symbol("_gsq")
    E0 = ls.initial
    c = ls.start_coefficient(gsq, ls.E)
    kws = plan.keywords
    used = sorted({kws[s] for s in (E0.free_symbols | c.free_symbols) if s in kws})
    names = _keys(plan, "P_{kw}")
    names.update({sys_.loss: "F", gsq: "_gsq", ls.E: "E"})
    printer = ScalarPrinter(names)
    p = ls.spec.momentum.name
    lines = [
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
    positive = ls.spec.positive
    lines += [
        "    _gsq = 0.0",
        "    for G in groups:",
        '        _gsq += _total([g * g for g in G["g"]])',
        "    _gsq = _reduce_global(_gsq, process_group)",
        f"    E = {printer.doprint(E0)}",
        f"    if not (math.isfinite(E) and {'E > 0' if positive else 'True'}):",
        "        raise FloatingPointError(",
        '            f"the stored energy E = {E} must be '
        + ("positive and " if positive else "")
        + 'finite "',
        f'            f"({E0} at the start)")',
        f"    _c = {printer.doprint(c)}",
        "    for G in groups:",
        f'        for m, g in zip(G[{p!r}], G["g"]):',
        "            m.copy_(g).mul_(-_c)",
        f"    glob[{ls.spec.symbol!r}] = E",
    ]
    return lines
