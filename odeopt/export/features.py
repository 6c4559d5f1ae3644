"""The module-level functions an exported optimizer carries only when its system has the
feature: kinetic-coefficient checks, switches, a domain, a stored energy level.

Each returns the lines of one function of the generated file (empty when the system lacks
the feature); :mod:`odeopt.export.render` places them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from ..symbolic.language import Block
from .plan import Plan

__all__ = ["Parametrization", "ScalarPrinter", "domain_function", "kinetic_function"]
__all__ += ["hint", "parametrization", "start_function", "switch_function", "to_ode_function"]


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


#: torch.optim's constructor arguments (name, default), in their order
TORCH_ARGUMENTS: dict[str, tuple[tuple[str, Any], ...]] = {
    "SGD": (
        ("lr", 1e-3),
        ("momentum", 0.0),
        ("dampening", 0.0),
        ("weight_decay", 0.0),
        ("nesterov", False),
    ),
    "RMSprop": (
        ("lr", 1e-2),
        ("alpha", 0.99),
        ("eps", 1e-8),
        ("weight_decay", 0.0),
        ("momentum", 0.0),
        ("centered", False),
    ),
    "Adagrad": (
        ("lr", 1e-2),
        ("lr_decay", 0.0),
        ("weight_decay", 0.0),
        ("initial_accumulator_value", 0.0),
        ("eps", 1e-10),
    ),
}
#: arguments whose torch default switches a feature off: a rule identify() recognises without
#: naming them is the optimizer with that default (SGD without weight decay, …)
_OFF = frozenset(
    {"momentum", "dampening", "weight_decay", "nesterov", "centered", "lr_decay"}
    | {"initial_accumulator_value", "amsgrad"}
)
#: the signs torch.optim requires of an argument (lr > 0 unless :func:`zero_lr_function` knows
#: the optimizer's state recurrence at lr = 0: the state scale divides by h)
_HYPER_SIGNS = {
    "lr": ("positive",),
    "momentum": ("nonnegative",),
    "dampening": ("nonnegative",),
    "weight_decay": ("nonnegative",),
    "alpha": ("nonnegative",),
    "eps": ("nonnegative",),
    "lr_decay": ("nonnegative",),
}
#: how to get another value of an argument the rule fixes
_HINTS = {
    "nesterov": "symplectic_euler_nesterov gives nesterov=True, symplectic_euler False",
    "weight_decay": "add a weight-decay term to the system",
}


@dataclass
class Parametrization:
    """A rule's hyper-parameters exposed as those of the torch optimizer identify() finds.

    ``variable``: the optimizer's arguments that map to the ODE's (their defaults), converted
    at every step by ``ode`` (the ODE's keywords, ``"lr"`` the step h, as expressions of
    ``symbols``); ``fixed``: the arguments the rule has at one value only (``dampening=0``).
    ``states``: each state block → (the optimizer's state name, s) with block = s·state, s an
    expression of ``symbols`` too: the state is kept in the optimizer's variables (SGD's
    momentum_buffer = −p/h), so that a change of lr changes no state, as in torch."""

    optimizer: str
    variable: dict[str, Any]
    fixed: dict[str, Any]
    signs: dict[str, tuple[str, ...]]
    symbols: dict[str, sp.Symbol]
    ode: dict[str, sp.Expr]
    states: dict[str, tuple[str, sp.Expr]]
    solved: list[str]  # the ODE keywords computed from the optimizer's (the rest: defaults)
    first: dict[str, sp.Expr] = field(default_factory=dict)  # state block → c: state₀ = c·g
    #: intermediate values (name → expression of ``symbols``) the other expressions use
    aux: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        """The optimizer's arguments in torch's order (lr first)."""
        order = [k for k, _ in TORCH_ARGUMENTS.get(self.optimizer, ())]
        keys = [*self.variable, *self.fixed]
        return sorted(keys, key=lambda k: (order.index(k) if k in order else len(order), k))


def _value(e: sp.Basic) -> Any:
    """A fixed hyper-parameter as a Python value (sympy's True → True, 0 → 0.0)."""
    if e in (sp.true, sp.false):
        return bool(e)
    return float(e)


def parametrization(plan: Plan, name: str) -> Parametrization | None:
    """The hyper-parameters of ``name`` ("ode": the system's own, None; or the lower-case name
    of the torch optimizer identify() recognises, "sgd") and their conversion to the ODE's.

    With k of the optimizer's hyper-parameters expressions of h and the system's parameters,
    h and k − 1 of those parameters (tried from the last one: friction before mass) are
    solved for, the others kept at their defaults. ValueError when the rule is not that
    optimizer (naming identify()'s reason) or the conversion has no unique solution."""
    if name == "ode":
        return None
    rule = plan.rule
    sys_ = rule.system
    what = f"{sys_.name} with {rule.scheme.name}"
    if sys_.switches:
        raise ValueError(
            f"parametrization={name!r}: {sys_.name} switches its parameters when the loss "
            "reaches a goal, which a torch optimizer's fixed hyper-parameters cannot follow; "
            "use parametrization='ode'"
        )
    found = rule.identify()
    if not isinstance(name, str) or not found or found.name is None:
        why = found.reason if not found else f"it is torch.optim.{found.name}"
        raise ValueError(
            f"parametrization={name!r}: {what} is not a torch.optim optimizer that odeopt "
            f"recognises ({why}); use parametrization='ode' (lr is the step h)"
        )
    if found.name.lower() != name.lower():
        raise ValueError(
            f"parametrization={name!r}: {what} is torch.optim.{found.name}, not "
            f"{name}; pass parametrization={found.name.lower()!r} (or 'ode')"
        )
    h = rule.h
    params = [p for p in sys_.parameters if not p.stored]
    variable_exprs = {k: sp.sympify(e) for k, e in found.hyperparameters.items()}
    fixed = {k: _value(e) for k, e in variable_exprs.items() if not e.free_symbols}
    variable_exprs = {k: e for k, e in variable_exprs.items() if e.free_symbols}
    defaults = dict(TORCH_ARGUMENTS.get(found.name, ()))
    for k, v in defaults.items():
        if k in _OFF and k not in fixed and k not in variable_exprs:
            fixed[k] = v
    if "lr" not in variable_exprs or h not in variable_exprs["lr"].free_symbols:
        raise ValueError(
            f"parametrization={name!r}: {what} is {found}, whose lr does not depend on the "
            "step h; use parametrization='ode'"
        )
    symbols = {
        k: sp.Symbol(k, positive=True) if k == "lr" else sp.Symbol(k, real=True)
        for k in variable_exprs
    }
    by_symbol = {p.symbol: p for p in params}
    used = [p for p in params if any(p.symbol in e.free_symbols for e in variable_exprs.values())]
    solution, chosen = None, ()
    for chosen in itertools.combinations(reversed(used), len(variable_exprs) - 1):
        kept = {
            p.symbol: sp.nsimplify(p.default)
            for p in params
            if p not in chosen and p.default is not None
        }
        unknowns = [h, *(p.symbol for p in chosen)]
        eqs = [sp.Eq(symbols[k], e.xreplace(kept)) for k, e in variable_exprs.items()]
        if any(set(eq.free_symbols) & (set(by_symbol) - set(kept) - set(unknowns)) for eq in eqs):
            continue  # a parameter with no default would stay unknown
        try:
            sols = sp.solve(eqs, unknowns, dict=True)
        except (NotImplementedError, ValueError):
            continue
        sols = [s for s in sols if set(s) == set(unknowns)]
        if len(sols) == 1:
            solution = {**kept, **sols[0]}
            break
    if solution is None:
        raise ValueError(
            f"parametrization={name!r}: cannot express h and the parameters of {what} "
            f"through {found} uniquely; use parametrization='ode'"
        )
    kw = plan.keywords
    ode = {"lr": sp.simplify(solution[h])}
    ode.update({kw[p.symbol]: sp.simplify(solution[p.symbol]) for p in params})
    states: dict[str, tuple[str, sp.Expr]] = {}
    for block in plan.state_blocks:
        match = [
            (k, e)
            for k, e in found.state.items()
            if {s.name for s in e.free_symbols if isinstance(s, Block)} == {block}
        ]
        if len(match) != 1:
            raise ValueError(
                f"parametrization={name!r}: {found} says no torch state for the block {block} "
                f"of {what}; use parametrization='ode'"
            )
        key, e = match[0]
        b = next(s for s in e.free_symbols if isinstance(s, Block))
        scale = sp.simplify(b / e)  # block = scale·state
        if scale.has(b):
            raise ValueError(
                f"parametrization={name!r}: the torch state {key} = {e} is not a multiple of "
                f"{block}; use parametrization='ode'"
            )
        states[block] = (key, sp.simplify(scale.xreplace(solution)))
    system_defaults = {p.symbol: p.default for p in params}

    def default(k: str, e: sp.Expr) -> float:
        """torch's default, but a weight_decay of the system's parameters only (massaroli's
        2c/a) takes the system's value: torch's 0 could be no value of theirs (c > 0)."""
        own = e.subs(system_defaults)
        if k == "weight_decay" and h not in e.free_symbols and not own.free_symbols:
            return float(own)
        return defaults.get(k, float(own.subs(h, 1e-3)))

    variable = {k: default(k, e) for k, e in variable_exprs.items()}
    par = Parametrization(
        optimizer=found.name,
        variable=variable,
        fixed=fixed,
        signs={k: _HYPER_SIGNS.get(k, ()) for k in variable},
        symbols=symbols,
        ode=ode,
        states=states,
        solved=[kw[p.symbol] for p in chosen],
    )
    if _ZERO_LR_STATES.get(found.name, frozenset()) >= {key for key, _ in states.values()}:
        par.signs["lr"] = ("nonnegative",)  # lr = 0: torch's recurrence (zero_lr_function)
    if found.name == "SGD" and fixed.get("dampening") == 0.0:
        if "momentum" in symbols and fixed.get("nesterov") is not True:
            _dampening(par)
        elif fixed.get("momentum") == 0.0:  # torch uses no buffer, so no dampening
            par.fixed.pop("dampening")
            par.symbols["dampening"] = sp.Symbol("dampening", real=True)
            par.variable["dampening"], par.signs["dampening"] = 0.0, ("nonnegative",)
    return par


def _dampening(par: Parametrization) -> None:
    """SGD's dampening d on a rule that is SGD(lr, μ) without it: torch's buffer b' = μb +
    (1 − d)g, θ' = θ − lr·b' is that rule in b̃ = b/(1 − d) with lr(1 − d), so the conversion
    takes lr(1 − d) for lr and the state scale divided by (1 − d). torch fills a new buffer
    with d_p = g + weight_decay·θ, not (1 − d)·d_p: a new buffer starts at (d/μ)·d_p (b' =
    μ(d/μ)d_p + (1 − d)d_p = d_p; :func:`decay_text` gives weight_decay). With μ = 0 torch
    uses no buffer, so no dampening: d counts only when μ ≠ 0."""
    lr, mu = par.symbols["lr"], par.symbols["momentum"]
    d = sp.Symbol("dampening", real=True)
    on = sp.Ne(mu, 0)
    d_eff = sp.Symbol("damp", real=True)
    par.aux[d_eff] = sp.Piecewise((d, on), (0.0, True))
    sub = {lr: lr * (1 - d_eff)}
    par.ode = {k: e.xreplace(sub) for k, e in par.ode.items()}
    par.states = {b: (key, s.xreplace(sub) / (1 - d_eff)) for b, (key, s) in par.states.items()}
    par.first = {b: sp.Piecewise((d / mu, on), (0, True)) for b in par.states}
    par.fixed.pop("dampening")
    par.symbols["dampening"] = d
    par.variable["dampening"] = 0.0
    par.signs["dampening"] = ("nonnegative",)


def decay_text(par: Parametrization, group: str = "G") -> str | None:
    """torch's weight_decay of a param group (the dict ``group``) as Python source, or None
    when the rule has none (torch's gradient is then d_p = g, else g + weight_decay·θ)."""
    if "weight_decay" in par.variable:
        return f'float({group}["weight_decay"])'
    value = par.fixed.get("weight_decay", 0.0)
    return None if value == 0.0 else repr(float(value))


#: the torch states whose recurrence at lr = 0 :func:`zero_lr_function` writes, per optimizer
_ZERO_LR_STATES = {
    "SGD": frozenset({"momentum_buffer"}),
    "RMSprop": frozenset({"square_avg", "momentum_buffer", "grad_avg"}),
    "Adagrad": frozenset({"sum"}),
}


def zero_lr_function(par: Parametrization | None) -> list[str]:
    """``_lr_zero(G)``: torch's step at lr = 0 on a param group — no update, the state's
    recurrence as torch.optim runs it (the ODE has no step h = 0 to convert: SGD's state
    scale is −√lr). With d_p = g + weight_decay·θ: SGD b ← μb + (1 − d)·d_p (b ← d_p at the
    first step); RMSprop v ← αv + (1 − α)d_p² (centered: a ← αa + (1 − α)d_p), then with
    momentum b ← μb + d_p/(√(v − a²) + ε); Adagrad s ← s + d_p². [] when the rule keeps no
    state or the optimizer's recurrence is not known here (lr > 0 is required then)."""
    if par is None or not par.states:
        return []
    keys = {key for key, _ in par.states.values()}
    if not _ZERO_LR_STATES.get(par.optimizer, frozenset()) >= keys:
        return []

    def hyper(k: str, default: float | bool = 0.0) -> str:
        if k in par.variable:
            return f'float(G["{k}"])' if not isinstance(default, bool) else f'G["{k}"]'
        return repr(par.fixed.get(k, default))

    wd = decay_text(par)
    lines = [
        "def _lr_zero(G):",
        f'    """torch.optim.{par.optimizer} at lr = 0: no update, its state recurrence."""',
    ]
    if wd is not None:
        lines.append(f"    wd = {wd}")
    loop = ['    for theta, g, s in zip(G["theta"], G["g"], G["_states"]):']
    loop.append("        d_p = g.add(theta, alpha=wd)" if wd is not None else "        d_p = g")
    if par.optimizer == "SGD":
        lines.append(f"    mu, d = {hyper('momentum')}, {hyper('dampening')}")
        loop += [
            '        b = s["momentum_buffer"]',
            '        if s["step"] == 0:',
            "            b.copy_(d_p)",
            "        else:",
            "            b.mul_(mu).add_(d_p, alpha=1.0 - d)",
        ]
    elif par.optimizer == "RMSprop":
        lines.append(f"    alpha = {hyper('alpha')}")
        loop += [
            '        v = s["square_avg"]',
            "        v.mul_(alpha).addcmul_(d_p, d_p, value=1.0 - alpha)",
        ]
        if "momentum_buffer" in keys:
            avg = "v.sqrt()"
            if "grad_avg" in keys:
                loop.append('        a = s["grad_avg"].mul_(alpha).add_(d_p, alpha=1.0 - alpha)')
                avg = "v.addcmul(a, a, value=-1).sqrt_()"
            loop += [
                f"        avg = {avg}.add_({hyper('eps')})",
                f'        s["momentum_buffer"].mul_({hyper("momentum")}).addcdiv_(d_p, avg)',
            ]
    else:  # Adagrad
        loop.append('        s["sum"].addcmul_(d_p, d_p, value=1.0)')
    return lines + loop


def hint(key: str) -> str:
    """How to get another value of a hyper-parameter the rule fixes ("" if none is known)."""
    return _HINTS.get(key, "")


def to_ode_function(plan: Plan, par: Parametrization | None) -> list[str]:
    """``_to_ode``: a param group's hyper-parameters (the torch optimizer's) as the ODE's:
    "lr" the step h, each system parameter, and "_scale_b" per state block b (b = s·state)."""
    if par is None:
        return []
    local = {k: f"P_{k}" if k in ("V", "math") else k for k in par.variable}
    names = {par.symbols[k]: local[k] for k in par.variable}
    names.update({s: s.name for s in par.aux})
    printer = ScalarPrinter(names)
    exprs = [*par.ode.values(), *(s for _, s in par.states.values()), *par.first.values()]
    exprs += list(par.aux.values())
    used = set().union(*(e.free_symbols for e in exprs))
    lines = [
        "def _to_ode(V):",
        f'    """{par.optimizer}\'s hyper-parameters of a group as the ODE\'s ("lr": the step h),',
        '    and the scale s of each state block b = s·state."""',
        *(f"    {local[k]} = float(V[{k!r}])" for k in par.variable if par.symbols[k] in used),
        *(f"    {s.name} = {printer.doprint(e)}" for s, e in par.aux.items()),
    ]
    return lines + ode_return(printer, par.ode, par.states, par.first)


def ode_return(
    printer: Any,
    ode: dict[str, sp.Expr],
    states: dict[str, tuple[str, sp.Expr]],
    first: dict[str, sp.Expr] | None = None,
) -> list[str]:
    """The ``return {...}`` of a ``_to_ode`` function, printed by ``printer`` (the torch
    renderer's :class:`ScalarPrinter` or the JAX one's): the ODE's values ("lr" the step h,
    the system's keywords), "_scale_b" per state block b = s·state and "_first_b" per block
    whose new state starts at c·g."""
    lines = ["    return {"]
    for k, e in ode.items():
        lines.append(f"        {k!r}: {repr(float(e)) if e.is_Number else printer.doprint(e)},")
    for b, (_, s) in states.items():
        lines.append(f"        {'_scale_' + b!r}: {printer.doprint(s)},")
    for b, c in (first or {}).items():
        lines.append(f"        {'_first_' + b!r}: {printer.doprint(c)},")
    return [*lines, "    }"]
