"""Write an update rule as a self-contained optax transformation (a .py file needing jax and
optax only): the second renderer of the plan (:mod:`.plan`), beside :mod:`.torch_source`.

The plan's stages are printed by :func:`odeopt.export.render.jax_step` (the ``jax`` column of
:data:`~odeopt.export.render.OPS`) on lists of arrays, the leaves of the parameter pytree, and
put into a factory function returning an ``optax.GradientTransformationExtraArgs``:

- ``update(grads, state, params, value=loss, value_fn=f, **extra)`` follows optax's
  conventions for extra arguments: ``value`` is F at ``params`` (rules that read the loss),
  ``value_fn(params, **extra)`` the objective, for rules that evaluate F and ∇F at moved
  parameters (Runge–Kutta stages, a step controller's trial point), as optax's line searches
  take it. The updates are θ' − θ (``optax.apply_updates`` adds them).
- The state is a NamedTuple pytree (``count``, each state block as a pytree shaped like the
  parameters, ``glob``: the scalars all parameters share), so ``jax.jit(tx.update)`` works.
  Reductions (|p|², …) run over the whole pytree.
- Nothing branches on a traced value: what the torch optimizer does with an early ``return``
  (a step outside the domain, a bounce, a rejected step) is a flag ``_live`` selecting the
  values written (``jnp.where``). Random bounces draw from a ``jax.random`` key kept in the
  state, seeded by ``seed``. Non-finite values are not checked (``jax.jit`` cannot raise on a
  value): ``optax.apply_if_finite`` skips such steps.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy as sp

from .features import Parametrization, hint, kinetic_function, ode_return
from .features import parametrization as parametrization_of
from .plan import Plan, plan
from .render import JaxScalarPrinter, jax_step, replaced_blocks, wrap
from .runtime import definitions, parse_helpers, select_helpers
from .torch_source import class_name, features

if TYPE_CHECKING:
    from .rule import UpdateRule

__all__ = ["OptaxSGD", "function_name", "optax_sgd", "to_optax", "to_source"]

#: names the generated ``update`` function uses itself: a system parameter's local may not be one
_OWN = frozenset(
    {"updates", "state", "params", "value", "value_fn", "extra", "jax", "jnp", "optax", "math"}
    | {"hp", "schedule", "init_fn", "update_fn", "G", "F", "V", "t", "lr", "glob", "treedef"}
)


def function_name(rule: UpdateRule, parametrization: str = "ode") -> str:
    """The generated factory's default name: the system's and the scheme's, in snake_case
    (then ``_sgd`` for ``parametrization="sgd"``)."""
    words = re.split(r"[^0-9a-zA-Z]+", f"{rule.system.name} {rule.scheme.name}")
    if parametrization != "ode":
        words.append(parametrization)
    name = "_".join(w.lower() for w in words if w) or "rule"
    return name if name.isidentifier() else f"rule_{name}"


#: the runtime helpers of a generated file that differ from the torch ones (traced values,
#: jnp.where instead of early returns, other messages): each top-level definition is copied
#: into a file whose code names it (and what it names in turn); the pure-Python ones shared
#: with torch (``_SIGNS``) come from :mod:`.runtime`, see :func:`_definitions`
_RUNTIME = '''
def _check_number(name, value, signs, label=None):
    """A hyper-parameter: a real finite number with the given signs; TypeError or
    ValueError naming it, and its value."""
    label = label or name
    if value is None:
        raise TypeError(f"{label} has no value (the system gives it no default): pass {name}=...")
    try:
        v = None if isinstance(value, (bool, str, bytes, complex)) else float(value)
    except (TypeError, ValueError):
        v = None
    if v is None:
        raise TypeError(f"{label} must be a real number, got {name}={value!r}")
    if not math.isfinite(v):
        raise ValueError(f"{label} must be finite, got {name}={value!r}")
    for sign in signs:
        if not _SIGNS[sign](v):
            raise ValueError(f"{label} must be {sign}, got {name}={value!r}")


def _check_fixed(name, value, want, rule, hint):
    """A hyper-parameter the rule has at one value only (None counts as 0.0, as optax.sgd's
    momentum=None): ValueError naming it otherwise; a traced value is not checked."""
    if _traced(value):
        return
    if isinstance(want, bool):
        same = value is want
    else:
        try:
            same = value is None and want == 0.0 or float(value) == want
        except (TypeError, ValueError):
            same = False
    if not same:
        raise ValueError(
            f"{name} must be {want!r}, got {name}={value!r}: {rule} {name}={want!r}"
            + (f" ({hint})" if hint else "")
        )


def _traced(*values):
    """Whether a value is traced (optax.inject_hyperparams builds the transformation inside
    the jitted update): such values are not checked."""
    return any(isinstance(v, jax.core.Tracer) for v in values)


def _check_count(name, value):
    """An integer ≥ 0 (0: off); ValueError naming it otherwise."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        raise ValueError(f"{name} must be an integer ≥ 0 (0: off), got {name}={value!r}")


def _float(v):
    """A scalar of the default float type (float64 with jax_enable_x64)."""
    return jnp.asarray(v, dtype=jnp.result_type(float))


def _total(xs):
    """Σ over the arrays and their elements."""
    return sum([jnp.sum(x) for x in xs], 0.0)


def _total_sq(xs):
    """Σ x² over the arrays (a dot product each)."""
    return sum([jnp.vdot(x, x) for x in xs], 0.0)


def _evaluate(value_fn, treedef, leaves, extra, maximize, grad):
    """F (and ∇F's leaves when ``grad``) at the parameters with these leaves."""
    params = jax.tree_util.tree_unflatten(treedef, leaves)
    if grad:
        F, g = jax.value_and_grad(value_fn)(params, **extra)
        g = jax.tree_util.tree_leaves(g)
    else:
        F, g = value_fn(params, **extra), None
    if maximize:
        F, g = -F, None if g is None else [-x for x in g]
    return F, g


def _select(flag, new, old):
    """``new`` where ``flag`` holds, else ``old`` (lists of arrays)."""
    return [jnp.where(flag, a, b) for a, b in zip(new, old)]


def _bounce_uniform(moms, key):
    """p ← uniform noise in [−½, ½] per element, rescaled to the same global |p|."""
    keys = jax.random.split(key, len(moms))
    old = _total_sq(moms)
    noise = [jax.random.uniform(k, m.shape, m.dtype, -0.5, 0.5) for k, m in zip(keys, moms)]
    new = _total_sq(noise)
    c = jnp.where(new > 0, jnp.sqrt(old / jnp.where(new > 0, new, 1.0)), 0.0)
    return [z * c for z in noise]


def _bounce_gaussian(moms, key, nu):
    """p ← |p|·normalize(p/|p| + ν z), z ~ N(0, I): the direction jitters, |p| is kept."""
    keys = jax.random.split(key, len(moms))
    z = [jax.random.normal(k, m.shape, m.dtype) for k, m in zip(keys, moms)]
    old = _total_sq(moms)
    r = jnp.sqrt(old)
    moved = [m + zi * (nu * r) for m, zi in zip(moms, z)]
    n = jnp.sqrt(_total_sq(moved))
    return _select(old > 0, [m * (r / n) for m in moved], moms)


def _bounce_due(glob, live, every, bounces, patience):
    """ECD's bounce schedule: a bounce replaces the update after every ``every`` updates
    (``bounces`` in all), and after ``patience`` updates whose V was no new minimum;
    (whether one is due, the counters after it)."""
    n = glob["updates"]
    due = jnp.zeros([], bool)
    if every > 0:
        due = (n > 0) & (n % every == 0) & (glob["fixed_bounces"] < bounces)
        due = due & (glob["bounced_at"] != n)
    stuck = jnp.zeros([], bool)
    if patience > 0:
        stuck = glob["since_best"] >= patience
    bounce = live & (due | stuck)
    glob = dict(glob)
    glob["fixed_bounces"] = glob["fixed_bounces"] + (bounce & due)
    glob["bounced_at"] = jnp.where(bounce & due, n, glob["bounced_at"])
    glob["since_best"] = jnp.where(bounce, 0, glob["since_best"])
    glob["bounces_made"] = glob["bounces_made"] + bounce
    return bounce, glob


def _after_update(glob, V, live):
    """Progress for the bounce schedule, judged on updates only: the best V and the number
    of updates since."""
    better = V < glob["best_V"]
    glob = dict(glob)
    glob["best_V"] = jnp.where(live & better, V, glob["best_V"])
    glob["since_best"] = jnp.where(live, jnp.where(better, 0, glob["since_best"] + 1),
                                   glob["since_best"])
    return glob
'''


#: the helpers of :mod:`.runtime` (the torch side's) that the JAX files share: pure Python
_SHARED = ("_SIGNS",)


@functools.cache
def _definitions() -> dict[str, tuple[str, frozenset[str]]]:
    """Each helper of a JAX file: those of :data:`_SHARED` from :mod:`.runtime`, then those of
    :data:`_RUNTIME` (with their docstrings); its source and the other helpers it names."""
    shared = definitions()
    own = parse_helpers(_RUNTIME, docstrings=True, others=frozenset(_SHARED))
    return {**{k: shared[k] for k in _SHARED}, **own}


def _helpers(code: str) -> list[str]:
    """The source of the helpers ``code`` names, and of those they name, in order."""
    return select_helpers(code, _definitions())


def _used(name: str, text: str) -> bool:
    return re.search(rf"(?<![\"'\w.]){name}\b", text) is not None


#: optax.sgd's name of a torch.optim state (optax.trace's accumulator)
_OPTAX_STATE = {"momentum_buffer": "trace"}


@dataclass
class OptaxSGD:
    """A rule's hyper-parameters exposed as optax.sgd's (``learning_rate``, ``momentum``,
    ``nesterov``; ``weight_decay`` where the rule has one: optax.add_decayed_weights chained
    before optax.sgd), from the torch.optim.SGD :class:`~odeopt.export.features.Parametrization`
    with dampening 0 (optax.sgd has none).

    ``variable``: the arguments ``_to_ode`` converts (``"lr"`` first, the value of the
    learning rate at the update count), ``ode`` the ODE's keywords as expressions of
    ``symbols`` (``"lr"`` the step h), ``states`` each state block b → (the optax state
    name, s) with b = s·state: optax.trace's recurrence t ← g + μ·t is torch's momentum
    buffer with dampening 0, so SGD's scale serves; ``fixed``: the arguments the rule has at
    one value only (``nesterov``; ``momentum`` 0 for a rule without state)."""

    par: Parametrization
    variable: list[str]
    symbols: dict[str, sp.Symbol]
    ode: dict[str, sp.Expr]
    states: dict[str, tuple[str, sp.Expr]]
    fixed: dict[str, object]

    @property
    def keys(self) -> list[str]:
        """The factory's arguments after ``learning_rate``, in optax.sgd's order."""
        order = ["momentum", "nesterov", "weight_decay"]
        keys = [k for k in order if k in self.variable or k in self.fixed]
        return keys + sorted(k for k in [*self.variable[1:], *self.fixed] if k not in order)


def optax_sgd(p: Plan, name: str) -> OptaxSGD:
    """optax.sgd's hyper-parameters for the rule of ``p`` (``name`` the parametrization,
    "sgd"): :func:`~odeopt.export.features.parametrization` (a ValueError giving identify()'s
    reason when the rule is not torch.optim.SGD), then dampening set to 0."""
    par = parametrization_of(p, name)
    assert par is not None
    if par.optimizer != "SGD":
        raise NotImplementedError(
            f"parametrization={name!r}: the JAX export takes optax.sgd's hyper-parameters "
            f"(parametrization='sgd') or the ODE's ('ode'); {p.rule.system.name} with "
            f"{p.rule.scheme.name} is torch.optim.{par.optimizer}: use "
            f"to_torch(parametrization={name!r}), or parametrization='ode' here"
        )
    sys_ = p.rule.system
    if sys_.level_set is not None or p.controlled or p.uses_time:
        raise NotImplementedError(
            f"parametrization={name!r}: the JAX export of {sys_.name} with "
            f"{p.rule.scheme.name} converts no stored energy, step control or time; use "
            "parametrization='ode'"
        )
    off: dict[sp.Basic, sp.Expr] = {}
    if "dampening" in par.symbols:
        off[par.symbols["dampening"]] = sp.Integer(0)
    for s, e in par.aux.items():
        off[s] = sp.piecewise_fold(e.xreplace(off))

    def zero(e: sp.Expr) -> sp.Expr:
        return sp.simplify(sp.piecewise_fold(e.xreplace(off)))

    for b, c in par.first.items():
        if zero(c) != 0:
            raise NotImplementedError(
                f"parametrization={name!r}: the state {b} starts at ({c})·g, which optax.sgd's "
                "trace (zero at start) does not; use parametrization='ode'"
            )
    fixed = {k: v for k, v in par.fixed.items() if k != "dampening"}
    if fixed.get("weight_decay", 0.0) != 0.0:
        raise NotImplementedError(
            f"parametrization={name!r}: the rule has weight_decay={fixed['weight_decay']!r} "
            "only, which optax.sgd cannot take; use parametrization='ode'"
        )
    variable = [k for k in par.keys if k in par.variable and k != "dampening"]
    states = {b: (_OPTAX_STATE.get(key, key), zero(s)) for b, (key, s) in par.states.items()}
    if states and "momentum" not in variable:
        raise NotImplementedError(
            f"parametrization={name!r}: a state without a momentum argument; use "
            "parametrization='ode'"
        )
    return OptaxSGD(
        par=par,
        variable=variable,
        symbols={k: par.symbols[k] for k in variable},
        ode={k: zero(e) for k, e in par.ode.items()},
        states=states,
        fixed=fixed,
    )


def _to_ode_function(sgd: OptaxSGD) -> list[str]:
    """``_to_ode``: optax.sgd's hyper-parameters (lr the learning rate's value now) as the
    ODE's: "lr" the step h, each system parameter, and "_scale_b" per state block b."""
    names = {sgd.symbols[k]: k for k in sgd.variable}
    printer = JaxScalarPrinter(names)
    lines = [
        f"def _to_ode({', '.join(sgd.variable)}):",
        '    """optax.sgd\'s hyper-parameters as the ODE\'s ("lr": the step h, from the',
        '    learning rate lr), and the scale s of each state block b = s·state."""',
    ]
    return lines + ode_return(printer, sgd.ode, sgd.states)


def _sgd_factory(p: Plan, sgd: OptaxSGD, fname: str, needs: list[str]) -> list[str]:
    """The factory's head (signature, docstring, checks) taking optax.sgd's arguments."""
    rule, sys_ = p.rule, p.rule.system
    signature = []
    for k in sgd.keys:
        default = sgd.fixed[k] if k in sgd.fixed and k != "momentum" else None
        if k == "weight_decay":  # the rule's own (massaroli's 2c/a), or 0.0 as torch's
            default = float(sgd.par.variable.get(k, 0.0))
        signature.append(f", {k}={default!r}")
    shown = ", ".join(f"{'h' if k == 'lr' else k} = {e}" for k, e in sgd.ode.items())
    states = ", ".join(f"{b} = ({e})·{key}" for b, (key, e) in sgd.states.items())
    hyper = ["learning_rate (a number, or an optax schedule of the update count)"]
    if "momentum" in sgd.variable:
        hyper.append("momentum (None: 0)")
    hyper.append("nesterov")
    head = [
        f"def {fname}(learning_rate{''.join(signature)}, *, maximize=False):",
        f'    """{sys_.name} with {rule.scheme.name}, as an optax.GradientTransformationExtraArgs',
        "    taking optax.sgd's hyper-parameters (generated by odeopt).",
        "",
        f"    {', '.join(hyper[:-1])}",
        f"    and {hyper[-1]} are optax.sgd's; each update converts them to the ODE's, lr the",
        "    learning rate at the state's count:",
        f"    {shown}.",
    ]
    if "weight_decay" in sgd.variable:
        head += [
            "    weight_decay: as optax.add_decayed_weights(weight_decay) chained before",
            "    optax.sgd (the gradient g + weight_decay·θ).",
        ]
    if sgd.states:
        head += [
            "    The state holds the update count and optax.sgd's variables",
            f"    ({states}), so a schedule acts exactly as on optax.sgd (a new",
            "    learning rate rescales no state). At learning_rate = 0 (h = 0) the update is",
            "    0 and trace ← g + momentum·trace, optax.sgd's recurrence.",
        ]
    else:
        head.append("    The state holds the update count only.")
    fixed = ", ".join(
        f"{k}={'None (or 0.0)' if k == 'momentum' else repr(v)}" for k, v in sgd.fixed.items()
    )
    if fixed:
        head.append(f"    Fixed by the rule (other values are refused): {fixed}.")
    head += [
        "    The values are checked here (a schedule's at count 0; its later values must stay",
        "    ≥ 0); optax.inject_hyperparams works (its traced values are not checked).",
        *needs,
        "    The updates are θ' − θ: apply them with ``optax.apply_updates``. Non-finite",
        "    values are not checked under jit: wrap it in ``optax.apply_if_finite``.",
        '    """',
    ]
    hyper = sgd.variable[1:]
    if "momentum" in sgd.variable:
        head.append("    momentum = 0.0 if momentum is None else momentum")
    for k, v in sgd.fixed.items():
        head.append(f"    _check_fixed({k!r}, {k}, {v!r}, RULE, {hint(k)!r})")
    if hyper:  # the values update reads
        head.append("    hp = dict(" + ", ".join(f"{k}={k}" for k in hyper) + ")")
    checks = [
        "if not callable(learning_rate):",
        '    _check_number("learning_rate", learning_rate, ("nonnegative",))',
    ]
    if hyper:
        checks += [
            f"for name, value in zip(HYPER_RULES, [{', '.join(hyper)}]):",
            "    _check_number(name, value, HYPER_RULES[name])",
        ]
    checks += [
        "# the ODE's parameters must be valid (at the first learning rate, or 1 when it is 0)",
        "_lr0 = float(learning_rate(0) if callable(learning_rate) else learning_rate)",
        "_shown = dict(learning_rate=_lr0" + "".join(f", {k}={k}" for k in hyper) + ")",
        '_where = " (from " + ", ".join(f"{k}={v!r}" for k, v in _shown.items()) + ")"',
        "_ode0 = _to_ode(_lr0 if _lr0 > 0 else 1.0" + "".join(f", {k}" for k in hyper) + ")",
        "_hp0 = {name: float(_ode0[name]) for name in PARAMETER_RULES}",
        "for name, signs in PARAMETER_RULES.items():",
        "    _check_number(name, _hp0[name], signs, name + _where)",
    ]
    if p.kinetic:
        checks.append("_check_kinetic(_hp0, _where)")
    traced = ", ".join(["learning_rate", *hyper])
    head.append(f"    if not _traced({traced}):  # traced: optax.inject_hyperparams under jit")
    return head + ["        " + c for c in checks]


def to_source(rule: UpdateRule, name: str | None = None, parametrization: str = "ode") -> str:
    """The text of a Python module (it imports only jax and optax) defining ``name`` (default
    :func:`function_name`): ``name(lr, <the system's keywords>, …)`` returns an
    ``optax.GradientTransformationExtraArgs`` applying ``rule``.

    ``parametrization="sgd"``: ``name(learning_rate, momentum=None, nesterov=…)`` takes
    optax.sgd's hyper-parameters (:func:`optax_sgd`), converts them to h and the system's
    parameters at every update (a schedule evaluated at the state's count) and keeps the
    state as optax.sgd's ``trace``, so that a schedule acts exactly as on optax.sgd."""
    if not isinstance(parametrization, str):
        raise TypeError(
            "parametrization must be 'ode' or 'sgd' (optax.sgd's hyper-parameters), got "
            f"parametrization={parametrization!r}"
        )
    sgd = None
    if parametrization == "ode":
        p = plan(rule)
        fname = name or function_name(rule)
    else:
        p = plan(rule, class_name(rule, parametrization))
        sgd = optax_sgd(p, parametrization)
        fname = name or function_name(rule, parametrization)
    if not fname.isidentifier():
        raise ValueError(f"name must be a Python identifier, got name={fname!r}")
    on = features(p)
    sys_ = rule.system
    ls = sys_.level_set
    clash = sorted(set(p.locals.values()) & (_OWN | ({"_ode", "_lr"} if sgd else set())))
    if clash:
        raise NotImplementedError(
            f"system parameter(s) {clash} clash with names of the JAX export's update "
            f"function ({sorted(_OWN)}); rename them (aliases=...)"
        )
    step = jax_step(p)
    gated = on["domain"] or on["uniform"] or p.controlled
    printer = JaxScalarPrinter(p.scalars)
    keys = list(p.keywords.values())
    blocks = p.state_blocks
    replaced = set(replaced_blocks(p))
    # each block's field in the state: the block, or optax.sgd's variable it is kept in
    field = {b: b if sgd is None else sgd.states[b][0] for b in blocks}
    # keywords whose value the state carries (a switch or the adaptive shift changes them)
    carried = [p.keywords[k] for sw in sys_.switches for k in sw.set]
    if on["shift"]:
        assert ls is not None and ls.shift is not None
        carried.append(p.keywords[ls.shift])
    carried = list(dict.fromkeys(carried))
    pre: list[str] = []  # before the step: switches, domain, start, bounce
    if on["switches"]:
        pre += [
            "first = state.count == 0",
            'avg = switch_smoothing * glob["loss_avg"] + (1.0 - switch_smoothing) * F',
            'avg = glob["loss_avg"] = jnp.where(first, F, avg)',
            'glob["loss_start"] = jnp.where(first, F, glob["loss_start"])',
            'fired = glob["switched"]',
        ]
        for i, sw in enumerate(sys_.switches):
            goal = printer.doprint(sw.goal)
            if sw.relative:
                goal = f'({goal}) * glob["loss_start"]'
            new = [(p.locals[p.keywords[k]], printer.doprint(v)) for k, v in sw.set.items()]
            pre += [
                f"fire = jnp.logical_and(jnp.logical_not(fired[{i}]), avg <= {goal})",
                ", ".join(n for n, _ in new)
                + " = "
                + ", ".join(f"jnp.where(fire, {v}, {n})" for n, v in new),
                f"fired = fired.at[{i}].set(fired[{i}] | fire)",
            ]
        pre.append('glob["switched"] = fired')
    if on["domain"]:
        assert ls is not None and ls.domain is not None
        pre += [
            f"V = {printer.doprint(ls.domain)}",
            "_live = V > 1e-40  # outside the domain (V ≤ 0): no step",
            'glob["domain_skips"] = glob["domain_skips"] + jnp.logical_not(_live)',
        ]
        if on["shift"]:
            assert ls.shift is not None
            kw = p.keywords[ls.shift]
            pre += [
                "if adaptive_shift:",
                f"    {p.locals[kw]} = jnp.where(_live, {p.locals[kw]}, "
                f"{p.locals[kw]} - 5.0 * abs(V))",
            ]
    elif on["V"]:
        pre += ["V = F", "_live = jnp.ones([], bool)"]
    elif gated:
        pre.append("_live = jnp.ones([], bool)")
    if on["levelset"]:
        assert ls is not None and sys_.loss is not None
        gsq = sp.Symbol("_gsq")
        names = dict(p.scalars)
        names.update({sys_.loss: "F", gsq: "_gsq", ls.E: "_E0"})
        sp_printer = JaxScalarPrinter(names)
        mom = ls.spec.momentum.name
        E = ls.spec.symbol
        live = "_live" if gated else "True"
        pre += [
            f"# the first step: E = {ls.initial}; {mom} = −c·∇F (along −∇F, on H = E)",
            '_gsq = _total_sq(G["g"])',
            f"_E0 = {sp_printer.doprint(ls.initial)}",
            f"_c = {sp_printer.doprint(ls.start_coefficient(gsq, ls.E))}",
            f'_new = jnp.logical_and({live}, jnp.logical_not(glob["started"]))',
            f'G["{mom}"] = _select(_new, [g * (-_c) for g in G["g"]], G["{mom}"])',
            f"glob[{E!r}] = jnp.where(_new, _E0, glob[{E!r}])",
            f'glob["started"] = jnp.logical_or(glob["started"], {live})',
        ]
    if on["uniform"]:
        assert ls is not None
        mom = ls.spec.momentum.name
        pre += [
            '_key, _sub = jax.random.split(glob["key"])',
            'glob["key"] = _key',
            "_bounce, glob = _bounce_due(glob, _live, bounce_every, bounces, bounce_patience)",
            f'G["{mom}"] = _select(_bounce, _bounce_uniform(G["{mom}"], _sub), G["{mom}"])',
            "_live = jnp.logical_and(_live, jnp.logical_not(_bounce))  # a bounce: no update",
        ]
    if p.controlled:
        pre += [
            "lr0 = lr  # the step h = lr·h_scale, h_scale within [H_MIN/lr, H_MAX/lr]",
            'h_used = jnp.minimum(jnp.maximum(glob["h_scale"], H_MIN / lr0), H_MAX / lr0)',
            "lr = lr0 * h_used",
        ]
    if gated and blocks:
        pre.append("_kept = {" + ", ".join(f'"{b}": G["{b}"]' for b in blocks) + "}")
    body = [line[4:] for line in step.lines]
    post: list[str] = []
    if p.controlled:
        post += [
            "scale = jnp.minimum(jnp.maximum(h_used * _fac, H_MIN / lr0), H_MAX / lr0)",
            "scale = jnp.where(jnp.isfinite(scale) & (scale > 0), scale, h_used)",
            'glob["h_scale"] = jnp.where(_live, scale, glob["h_scale"])',
            'glob["rejected"] = glob["rejected"] + (_live & jnp.logical_not(accepted))',
            "_live = jnp.logical_and(_live, accepted)  # a rejected step writes nothing",
        ]
    new_of = {b: f'G["new_{b}"]' if b in replaced else f'G["{b}"]' for b in blocks}
    for b in blocks:
        value = f'_select(_live, {new_of[b]}, _kept["{b}"])' if gated else new_of[b]
        post.append(f"_new_{b} = {value}")
    if not step.delta:
        post.append('_U = [a - b for a, b in zip(G["theta"], _theta)]')
    if gated:
        post.append("_U = _select(_live, _U, [jnp.zeros_like(u) for u in _U])")
    if p.uses_time:
        h = "lr0 * h_used" if p.controlled else "lr"
        post.append(
            f'glob["t"] = jnp.where(_live, t + {h}, t)' if gated else f'glob["t"] = t + {h}'
        )
    if on["levelset"]:
        live = "_live" if gated else "True"
        post.append(f'glob["updates"] = glob["updates"] + {live}')
    if on["uniform"]:
        post.append("glob = _after_update(glob, V, _live)")
    if on["gaussian"]:
        assert ls is not None
        mom = ls.spec.momentum.name
        live = "_live" if gated else "True"
        post += [
            "if noise > 0:  # the new momentum's direction jitters",
            '    _key, _sub = jax.random.split(glob["key"])',
            '    glob["key"] = _key',
            f"    _new_{mom} = _select({live}, _bounce_gaussian(_new_{mom}, _sub, noise), "
            f"_new_{mom})",
        ]
    for kw in carried:
        post.append(f'glob["{kw}"] = {p.locals[kw]}')
    if sgd is not None and blocks:
        post.append("# the state in optax.sgd's variables (state = b/s); at learning_rate 0")
        post.append("# (h = 0) optax.sgd's own recurrence: no update, t ← g + momentum·t")
        wd = " + hp['weight_decay'] * w" if "weight_decay" in sgd.variable else ""
        over = 'zip(G["g"], _t, _theta)' if wd else 'zip(G["g"], _t)'
        for b in blocks:
            post += [
                f"_t = jax.tree_util.tree_leaves(state.{field[b]})",
                f'_new_{b} = [x / _ode["_scale_{b}"] for x in _new_{b}]',
                f"_new_{b} = _select(_zero, [g{wd} + hp['momentum'] * m for g, m"
                f"{', w' if wd else ''} in {over}], _new_{b})",
            ]
        post.append("_U = _select(_zero, [jnp.zeros_like(u) for u in _U], _U)")
    code_text = "\n".join(pre + body + post)
    # what update reads: the parameters, F, the group values (only those its code names)
    needs_theta = step.reads_theta or not step.delta
    head = ["treedef = jax.tree_util.tree_structure(updates)"]
    if p.reduces or on["levelset"]:  # its global |x|² of no arrays would divide by 0
        head += [
            "if treedef.num_leaves == 0:  # no parameters: no step (as torch's without any)",
            "    return updates, state",
        ]
    for missing, why, call in (
        ("params", ["the rule reads θ"], "params"),
        ("value", ["the loss at params: the rule uses the loss value"], "params, value=loss"),
        (
            "value_fn",
            [
                "the loss as a function of the parameters: ",
                "the rule evaluates the gradient at other points",
            ],
            "params, value=loss, value_fn=loss_fn",
        ),
    ):
        if {"params": needs_theta, "value": p.needs_loss, "value_fn": p.needs_closure}[missing]:
            pieces = [
                f"{fname}: update needs {missing} (",
                *why,
                "): call tx.update(grads, ",
                f"state, {call})",
            ]
            head += [f"if {missing} is None:", "    raise ValueError("]
            head += [f"        {piece!r}" for piece in pieces]
            head.append("    )")
    head += [
        "glob = dict(state.glob)",
        "grads = jax.tree_util.tree_leaves(updates)",
        'G = {"g": [-g for g in grads] if maximize else grads}',
    ]
    if needs_theta:
        head.append('G["theta"] = _theta = jax.tree_util.tree_leaves(params)')
    if sgd is None:
        head += [f'G["{b}"] = jax.tree_util.tree_leaves(state.{b})' for b in blocks]
        if _used("lr", code_text):
            # a schedule of an int32 count gives float32: h in the default float type
            head.append("lr = _float(schedule(state.count))")
    else:  # optax.sgd's hyper-parameters now, as the ODE's; the blocks from optax's state
        args = ", ".join(f'hp["{k}"]' for k in sgd.variable[1:])
        # a schedule of an int32 count gives float32 values: the conversion runs in the
        # default float type (float64 with jax_enable_x64), as optax.sgd's product does
        head.append("_lr = _float(schedule(state.count))")
        if blocks:  # b = s·state: s = 0 at learning_rate 0 (see below)
            head += [
                "_zero = _lr == 0",
                f"_ode = _to_ode(jnp.where(_zero, 1.0, _lr){', ' + args if args else ''})",
            ]
        else:
            head.append(f"_ode = _to_ode(_lr{', ' + args if args else ''})")
        head += [
            f'G["{b}"] = [x * _ode["_scale_{b}"] for x in '
            f"jax.tree_util.tree_leaves(state.{field[b]})]"
            for b in blocks
        ]
        if _used("lr", code_text):
            head.append('lr = _ode["lr"]')
    loads = [
        (
            loc,
            f'glob["{kw}"]' if kw in carried else f'hp["{kw}"]' if sgd is None else f'_ode["{kw}"]',
        )
        for kw, loc in p.locals.items()
        if _used(loc, code_text)
    ]
    if loads:
        head.append(f"{', '.join(n for n, _ in loads)} = {', '.join(v for _, v in loads)}")
    if _used("F", code_text):
        if p.needs_closure and not p.needs_loss:  # F at θ from value_fn when not given
            head += ["if value is None:", "    value = value_fn(params, **extra)"]
        head.append("F = jnp.zeros([]) if value is None else jnp.asarray(value)")
        head.append("F = -F if maximize else F")
    if p.uses_time:
        head.append('t = glob["t"]')
    cast = [
        "dtypes = [g.dtype for g in grads]",
        "_U = [u.astype(d) for u, d in zip(_U, dtypes)]",
        "glob = {k: jnp.asarray(v, state.glob[k].dtype) for k, v in glob.items()}",
        "new_state = " + p.cls + "State(",
        "    count=state.count + 1,",
        *[
            f"    {field[b]}=jax.tree_util.tree_unflatten(treedef, "
            f"[a.astype(d) for a, d in zip(_new_{b}, dtypes)]),"
            for b in blocks
        ],
        "    glob=glob,",
        ")",
        "return jax.tree_util.tree_unflatten(treedef, _U), new_state",
    ]
    update_lines = head + pre + body + post + cast
    # the scalars all parameters share
    glob_init: list[tuple[str, str]] = []
    if p.uses_time:
        glob_init.append(("t", "_float(0.0)"))
    if p.controlled:
        glob_init += [("h_scale", "_float(1.0)"), ("rejected", "jnp.zeros([], jnp.int32)")]
    if on["switches"]:
        n_sw = len(sys_.switches)
        glob_init += [
            ("loss_avg", "_float(0.0)"),
            ("loss_start", "_float(0.0)"),
            ("switched", f"jnp.zeros([{n_sw}], bool)"),
        ]
    glob_init += [(kw, f'_float(hp["{kw}"])') for kw in carried]
    if on["domain"]:
        glob_init.append(("domain_skips", "jnp.zeros([], jnp.int32)"))
    if on["levelset"]:
        assert ls is not None
        glob_init += [
            (ls.spec.symbol, "_float(0.0)"),
            ("started", "jnp.zeros([], bool)"),
            ("updates", "jnp.zeros([], jnp.int32)"),
        ]
    if on["uniform"] or on["gaussian"]:
        glob_init.append(("key", "jax.random.PRNGKey(seed)"))
    if on["uniform"]:
        glob_init += [
            ("fixed_bounces", "jnp.zeros([], jnp.int32)"),
            ("bounced_at", "jnp.asarray(-1, jnp.int32)"),
            ("since_best", "jnp.zeros([], jnp.int32)"),
            ("bounces_made", "jnp.zeros([], jnp.int32)"),
            ("best_V", "_float(jnp.inf)"),
        ]
    # the factory
    extra = ""
    checks: list[str] = []
    if on["switches"]:
        extra += ", switch_smoothing=0.0"
        checks += [
            '_check_number("switch_smoothing", switch_smoothing, ("nonnegative",))',
            "if not switch_smoothing < 1.0:",
            "    raise ValueError(",
            '        "switch_smoothing must be in [0, 1), got "',
            '        f"switch_smoothing={switch_smoothing!r}"',
            "    )",
        ]
    if on["shift"]:
        extra += ", adaptive_shift=False"
    if on["uniform"]:
        extra += ", bounce_every=1000, bounces=1, bounce_patience=3000, seed=0"
        checks += [
            "for name, v in (('bounce_every', bounce_every), ('bounces', bounces),",
            "                ('bounce_patience', bounce_patience)):",
            "    _check_count(name, v)",
        ]
    if on["gaussian"]:
        extra += ", noise=5e-5, seed=0"
        checks.append('_check_number("noise", noise, ("nonnegative",))')
    if on["uniform"] or on["gaussian"]:
        checks += [
            "if not (isinstance(seed, int) and not isinstance(seed, bool)):",
            '    raise TypeError(f"seed must be an integer, got seed={seed!r}")',
        ]
    lr_sign = "positive" if p.lr_divides else "nonnegative"
    needs = ["    ``update(grads, state, params, **extra)`` needs the gradients"]
    if p.needs_loss:
        needs.append("    and ``value=``, the loss at ``params`` (the rule uses the loss value)")
    if p.needs_closure:
        needs += [
            "    and ``value_fn=``, the loss as a function of the parameters, called as",
            "    ``value_fn(params, **extra)`` (the rule evaluates F and ∇F at moved points)",
        ]
    needs[-1] += "."
    state_doc = ", ".join(blocks) or "no blocks"
    factory = [
        f"def {fname}(lr=1e-3"
        + "".join(f", {kw}={p.defaults[kw]!r}" for kw in keys)
        + f", *, maximize=False{extra}):",
        f'    """{sys_.name} with {rule.scheme.name}, as an optax.GradientTransformationExtraArgs',
        "    (generated by odeopt).",
        "",
        "    lr is the time step h (a number, or an optax schedule of the update count); the",
        "    system's parameters are keywords. The state holds the update count, the system's",
        f"    other blocks ({state_doc}) as pytrees shaped like the parameters (zero at start),",
        "    and the scalars all parameters share (``glob``).",
        *needs,
        "    The updates are θ' − θ: apply them with ``optax.apply_updates``. Reductions run",
        "    over the whole parameter pytree. Non-finite values are not checked under jit:",
        "    wrap the transformation in ``optax.apply_if_finite``.",
        '    """',
        "    if not callable(lr):",
        f'        _check_number("lr", lr, ("{lr_sign}",), "lr (the step h)")',
        "    hp = dict(" + ", ".join(f"{kw}={kw}" for kw in keys) + ")",
        "    for name, signs in PARAMETER_RULES.items():",
        "        _check_number(name, hp[name], signs)",
    ]
    if p.kinetic:
        factory.append('    _check_kinetic(hp, "")')
    if sgd is not None:
        factory = _sgd_factory(p, sgd, fname, needs)
    factory += ["    " + c for c in checks]
    factory += [
        "    schedule = lr if callable(lr) else (lambda count: lr)"
        if sgd is None
        else "    schedule = learning_rate if callable(learning_rate) else "
        "(lambda count: learning_rate)",
        "",
        "    def init_fn(params):",
        '        """The state at the start: the blocks zero, shaped like ``params``."""',
    ]
    if blocks:
        factory.append("        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)")
    factory += [
        f"        return {p.cls}State(",
        "            count=jnp.zeros([], jnp.int32),",
        *[f"            {field[b]}=zeros," for b in blocks],
        "            glob={" + ", ".join(f"{k!r}: {v}" for k, v in glob_init) + "},",
        "        )",
        "",
        "    def update_fn(updates, state, params=None, *, value=None, value_fn=None, **extra):",
        '        """One step: (the updates θ\' − θ, the new state)."""',
        *[("        " + line) if line else "" for line in update_lines],
        "",
        "    return optax.GradientTransformationExtraArgs(init_fn, update_fn)",
    ]
    state_cls = [
        f"class {p.cls}State(NamedTuple):",
        f'    """The state of {fname}:',
        '    the update count, the blocks, the shared scalars."""',
        "",
        "    count: Any",
        *[f"    {field[b]}: Any" for b in blocks],
        "    glob: Any",
    ]
    functions = [kinetic_function(p), _to_ode_function(sgd) if sgd else [], state_cls, factory]
    code = "\n\n\n".join("\n".join(f) for f in functions if f)
    constants = [f"PARAMETER_RULES = {p.rules!r}"]
    if p.controlled:
        ctrl = rule.scheme.controller  # type: ignore[attr-defined]

        def num(v: float) -> str:  # ∞ as math.inf (1e300 would overflow float32)
            return "math.inf" if math.isinf(v) else repr(v)

        h_max = num(float(getattr(ctrl, "h_max", math.inf)))
        constants += [
            f"SHRINK, GROW = {float(ctrl.shrink)!r}, {num(float(ctrl.grow))}",
            f"SAFETY = {float(getattr(ctrl, 'safety', 1.0))!r}",
            f"H_MIN, H_MAX = {float(getattr(ctrl, 'h_min', 0.0))!r}, {h_max}",
        ]
    helpers = _helpers(code)
    body_text = "\n\n\n".join([*helpers, code])
    doc = [
        f'"""{fname}: {sys_.name} discretized by {rule.scheme.name}, exported by odeopt.',
        "",
        "An optax transformation (JAX)"
        + (", taking optax.sgd's hyper-parameters." if sgd else "."),
        "",
        "The update rule (h is the learning rate lr):"
        if sgd is None
        else "The update rule (h and the parameters converted from optax.sgd's at each update):",
        "",
    ]
    doc += ["    " + line for line in str(rule).replace('"""', "'''").splitlines()]
    doc += [
        "",
        "Needs only jax and optax:",
        "",
        f"    tx = {fname}(lr=...)" if sgd is None else f"    tx = {fname}(learning_rate=...)",
        "    state = tx.init(params)",
        "    updates, state = tx.update(grads, state, params, value=loss"
        + (", value_fn=loss_fn)" if p.needs_closure else ")"),
        '    params = optax.apply_updates(params, updates)"""',
        "",
    ]
    if sgd is not None:
        found = rule.identify()
        constants += [
            f"RULE = {f'{sys_.name} with {rule.scheme.name} is optax.sgd with'!r}",
            f"HYPER_RULES = { {k: sgd.par.signs.get(k, ()) for k in sgd.variable[1:]}!r}",
        ]
        assert found.name == "SGD"
    imports = ["import math"] if re.search(r"\bmath\.", body_text + str(constants)) else []
    imports += ["from typing import Any, NamedTuple", ""]
    imports += ["import jax", "import jax.numpy as jnp", "import optax", ""]
    head_lines = [*doc, *imports, f"__all__ = [{fname!r}, {p.cls + 'State'!r}]", "", *constants]
    return wrap("\n".join(head_lines) + "\n\n\n" + body_text + "\n", nested=True)


def to_optax(
    rule: UpdateRule,
    *args: object,
    name: str | None = None,
    parametrization: str = "ode",
    **hyperparameters: object,
) -> object:
    """The ``optax.GradientTransformationExtraArgs`` of ``rule`` with ``hyperparameters``
    (``lr`` the step h, the system's keywords, ``maximize``, ``seed``, …; with
    ``parametrization="sgd"`` optax.sgd's ``learning_rate``, ``momentum``, ``nesterov``;
    ``args`` the factory's positional arguments): the factory of :func:`to_source`,
    executed and called (its source is the factory's ``source``)."""
    from ..symbolic.codegen import exec_module

    source = to_source(rule, name, parametrization)
    fname = name or function_name(rule, parametrization)
    module = exec_module(source, f"odeopt_generated_jax_{fname}", f"<odeopt jax {fname}>")
    factory = module.__dict__[fname]
    factory.source = source
    return factory(*args, **hyperparameters)
