"""Write an update rule as a self-contained torch.optim.Optimizer (a .py file needing torch only).

The rule becomes a plan (:mod:`.plan`), the plan two step functions (:mod:`.render`), and
they are put into a module here, with the optimizer class of :data:`_CLASS` and the runtime
helpers (:mod:`.runtime`) that the module's code names. Lines of :data:`_CLASS` tagged
``@feature`` are kept only when the rule has the feature (``@!feature``: only when it has
not; ``@a,b``: both), so a file carries the code of the features its rule uses.

``parametrization="sgd"`` (the lower-case name of the torch optimizer that
:meth:`~odeopt.export.rule.UpdateRule.identify` recognises) exposes that optimizer's
hyper-parameters instead of h and the system's: each step converts a group's current values
to the ODE's (:func:`~odeopt.export.features.parametrization`) and keeps the state in the
optimizer's variables (SGD's momentum_buffer = −p/h), so schedulers act as on torch's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .features import (
    Parametrization,
    decay_text,
    domain_function,
    hint,
    kinetic_function,
    start_function,
    switch_function,
    to_ode_function,
    zero_lr_function,
)
from .features import parametrization as parametrization_of
from .plan import Plan, plan
from .plan import class_name as _plan_class_name
from .render import replaced_blocks, step_function, wrap
from .runtime import source_of

if TYPE_CHECKING:
    from .rule import UpdateRule

__all__ = ["class_name", "to_source"]


def class_name(rule: UpdateRule, parametrization: str = "ode") -> str:
    """The generated class's default name: the system's and the scheme's in CamelCase, then
    the optimizer's name for another parametrization (``HeavyBallSymplecticEulerSGD``)."""
    base = _plan_class_name(rule)
    if parametrization == "ode" or not isinstance(parametrization, str):
        return base
    found = rule.identify()
    return base + (found.name if found.name else parametrization.upper())


def features(p: Plan, par: Parametrization | None = None) -> dict[str, bool]:
    """The features a plan's optimizer carries code for."""
    sys_ = p.rule.system
    ls = sys_.level_set
    bounce = ls.spec.bounce if ls is not None else None
    domain = ls is not None and ls.domain is not None
    uses_f = p.needs_loss or p.needs_closure or bool(sys_.switches) or ls is not None
    return {
        "closure": p.needs_closure,
        "loss": p.needs_loss,
        "required": p.needs_closure or p.needs_loss,
        "F": uses_f,
        "time": p.uses_time,
        "switches": bool(sys_.switches),
        "levelset": ls is not None,
        "domain": domain,
        "shift": domain and ls is not None and ls.shift is not None,
        "uniform": bounce == "uniform",
        "gaussian": bounce == "gaussian",
        "V": domain or bounce == "uniform",
        "controlled": p.controlled,
        "reduces": p.reduces,
        "shared": p.shared,
        "kinetic": bool(p.kinetic),
        "replaced": bool(replaced_blocks(p)),
        "param": par is not None,
        "pstate": par is not None and bool(par.states),
        "first": par is not None and bool(par.first),
        "zero": bool(zero_lr_function(par)),
    }


def _states_text(par: Parametrization) -> str:
    """How the ODE's state blocks are kept: "p = (−√lr)·momentum_buffer", or "no state"."""
    return ", ".join(f"{b} = ({s})·{key}" for b, (key, s) in par.states.items()) or "no state"


def _conversion(p: Plan, par: Parametrization | None) -> str:
    """The class docstring's lines on the conversion (for another parametrization)."""
    if par is None:
        return ""
    shown = ", ".join(f"{'h' if k == 'lr' else k} = {e}" for k, e in par.ode.items())
    lines = [
        f"    {', '.join(par.keys)} are torch.optim.{par.optimizer}'s (schedulers act on them",
        f"    as on {par.optimizer}); each step converts a group's current values to the ODE's:",
        f"    {shown}.",
        f"    The state holds {_states_text(par)} (a new lr rescales no state)."
        if par.states
        else "    The rule keeps no state.",
    ]
    for s, e in par.aux.items():
        if s.name == "damp":
            lines.append(
                "    damp = dampening, or 0 when momentum = 0 (torch uses no buffer then); a new"
            )
            if decay_text(par) is None:
                lines.append("    buffer starts at (dampening/momentum)·g, as torch's is g.")
            else:
                lines.append("    buffer starts at (dampening/momentum)·(g + weight_decay·θ), as")
                lines.append("    torch's is g + weight_decay·θ.")
        else:
            lines.append(f"    {s} = {e}.")
    fixed = ", ".join(f"{k}={v!r}" for k, v in par.fixed.items())
    if fixed:
        lines.append(f"    Fixed by the rule (other values are refused): {fixed}.")
    if par.signs.get("lr") == ("nonnegative",):
        lines.append(f"    lr = 0 makes no update; the state runs {par.optimizer}'s recurrence.")
    return "\n".join(lines)


def _decayed(par: Parametrization) -> str:
    """``.add_(θ, alpha=weight_decay)`` when the rule has weight decay (torch's d_p), else ""."""
    wd = decay_text(par)
    return "" if wd is None else f'.add_(G["theta"][k], alpha={wd})'


def _keep(line: str, on: dict[str, bool]) -> str | None:
    """``line`` without its tag, or None when a tagged feature is off."""
    m = re.match(r"@([!\w,]+)", line)
    if m is None:
        return line
    for tag in m.group(1).split(","):
        if on[tag.lstrip("!")] == tag.startswith("!"):
            return None
    return line[m.end() :]


def to_source(rule: UpdateRule, name: str | None = None, parametrization: str = "ode") -> str:
    """The text of a Python module defining a torch.optim.Optimizer for ``rule``; with
    ``parametrization="sgd"`` (the lower-case name of the optimizer :meth:`identify` gives)
    its hyper-parameters are that optimizer's, converted to the ODE's every step."""
    if not isinstance(parametrization, str):
        raise TypeError(
            f"parametrization must be 'ode' or the lower-case name of the torch optimizer "
            f"identify() recognises (e.g. 'sgd'), got {parametrization!r}"
        )
    p = plan(rule, name or class_name(rule, parametrization))
    par = parametrization_of(p, parametrization)
    sys_ = rule.system
    on = features(p, par)
    ls = sys_.level_set
    foreach, args = step_function(p, True)
    single, _ = step_function(p, False)
    keys = list(p.keywords.values()) if par is None else par.keys[1:]
    defaults = p.defaults if par is None else {**par.variable, **par.fixed}
    state_name = {b: b if par is None else par.states[b][0] for b in p.state_blocks}
    extra = ""
    if on["reduces"]:
        extra += ", process_group=None"
    if on["switches"]:
        extra += ", switch_smoothing=0.0"
    if on["shift"]:
        extra += ", adaptive_shift=False"
    if on["uniform"]:
        extra += ", bounce_every=1000, bounces=1, bounce_patience=3000, seed=0"
    if on["gaussian"]:
        extra += ", noise=5e-5, seed=0"
    state_keys = ["step", *state_name.values()] + (["t"] if p.uses_time else [])
    why = "several gradient evaluations" if p.needs_closure else "the loss value"
    run_args = ", ".join(
        {"process_group": "self.process_group"}.get(a, a) for a in args if a != "groups"
    )
    fills = {
        "CLS": p.cls,
        "SYSTEM": sys_.name,
        "SCHEME": rule.scheme.name,
        "STATE": ", ".join(state_name.values()) or "no tensors",
        "SIGNATURE": "".join(f", {kw}={defaults[kw]!r}" for kw in keys),
        "LR0": "1e-3" if par is None else repr(par.variable["lr"]),
        "LR_LABEL": "lr (the step h)" if par is None else "the step h",
        "EXTRA": extra,
        "KEYS": "".join(f", {kw}={kw}" for kw in keys),
        "LR_MIN": "positive" if p.lr_divides or par is not None else "nonnegative",
        "NEEDS_LOSS": str(p.needs_loss),
        "SHARED": str(p.shared),
        "WHY": why,
        "ARGS": (", " + run_args) if run_args else "",
        "STORED": repr(ls.spec.symbol) if ls is not None else "",
        "MOMENTUM": repr(ls.spec.momentum.name) if ls is not None else "",
        "NEW": "".join(
            f'\n                state["{state_name[b]}"] = G["new_{b}"][k]'
            for b in replaced_blocks(p)
        ),
        "HUSED": "h_used" if p.controlled else "1.0",
        "LOOP": 'k, state in enumerate(G["_states"])'
        if on["replaced"]
        else 'state in G["_states"]',
        "INIT": "\n".join(
            f'                    state["{state_name[b]}"] = torch.zeros_like(p, memory_format='
            "torch.preserve_format)"
            for b in p.state_blocks
        ),
        "LISTS": "\n".join(
            f'                G["{b}"] = [s["{state_name[b]}"] for s in states]'
            for b in p.state_blocks
        ),
        "OPTIMIZER": par.optimizer if par is not None else "",
        "HYPER": ", ".join(par.keys) if par is not None else "",
        "CONVERSION": _conversion(p, par),
        "TO_BLOCKS": "\n".join(
            f'            torch._foreach_mul_(G["{b}"], G["_scale_{b}"])'
            for b in (par.states if par is not None else ())
        ),
        "FIRST": "\n".join(
            f'            for k, s in enumerate(G["_states"]):\n'
            f'                if s["step"] == 0 and G["_first_{b}"] != 0:\n'
            f'                    G["{b}"][k].copy_(G["g"][k]){_decayed(par)}'
            f'.mul_(G["_first_{b}"])'
            for b in (par.first if par is not None else ())
        ),
        "FROM_BLOCKS": "\n".join(
            f'            torch._foreach_div_([s["{key}"] for s in G["_states"]], G["_scale_{b}"])'
            for b, (key, _) in (par.states.items() if par is not None else ())
        ),
    }
    lines = [kept for line in _CLASS.splitlines() if (kept := _keep(line, on)) is not None]
    cls_text = re.sub(r"<<(\w+)>>", lambda m: fills[m.group(1)], "\n".join(lines))
    functions = [kinetic_function(p), switch_function(p), domain_function(p), start_function(p)]
    functions += [to_ode_function(p, par), zero_lr_function(par)]
    functions += [foreach, single]
    code = "\n\n\n".join("\n".join(f) for f in functions if f) + "\n\n\n" + cls_text
    constants = [
        f"GROUP_KEYS = {['lr', *keys, 'maximize', 'foreach', 'check_finite', 'skip_nonfinite']!r}",
        f"STATE_KEYS = {state_keys!r}",
        f"PARAMETER_RULES = {p.rules!r}",
    ]
    if par is not None:
        what = f"{sys_.name} with {rule.scheme.name} is torch.optim.{par.optimizer} with"
        constants += [f"HYPER_RULES = {par.signs!r}", f"RULE = {what!r}", "FIXED = {"]
        constants += [f"    {k!r}: ({v!r}, {hint(k)!r})," for k, v in par.fixed.items()]
        constants += ["}"]
    if p.controlled:
        ctrl = rule.scheme.controller  # type: ignore[attr-defined]
        h_max = min(float(getattr(ctrl, "h_max", float("inf"))), 1e300)
        constants += [
            f"SHRINK, GROW = {float(ctrl.shrink)!r}, {min(float(ctrl.grow), 1e300)!r}",
            f"SAFETY = {float(getattr(ctrl, 'safety', 1.0))!r}",
            f"H_MIN, H_MAX = {float(getattr(ctrl, 'h_min', 0.0))!r}, {h_max!r}",
        ]
    helpers = source_of(code)
    body = "\n\n\n".join([*helpers, code])
    doc = [f'"""{p.cls}: {sys_.name} discretized by {rule.scheme.name}, exported by odeopt.']
    doc += ["", "The update rule (h is the learning rate lr):", ""]
    doc += ["    " + line for line in str(rule).replace('"""', "'''").splitlines()]
    if par is None:
        doc += ["", "Needs only torch. Group keys: " + ", ".join(["lr (the step h)", *keys]) + ","]
    else:
        doc += ["", *_conversion(p, par).replace("    ", "", 1).split("\n    ")]
        doc += ["", "Needs only torch. Group keys: " + ", ".join(par.keys) + ","]
    doc += ['maximize, foreach, check_finite, skip_nonfinite."""', ""]
    imports = ["import math", ""] if re.search(r"\bmath\.", body) else []
    imports += ["import torch", "from torch.optim import Optimizer", ""]
    head = [*doc, *imports, f"__all__ = [{p.cls!r}]", "", *constants]
    return wrap("\n".join(head) + "\n\n\n" + body + "\n")


_CLASS = '''class <<CLS>>(Optimizer):
    """<<SYSTEM>> with <<SCHEME>>, as a torch.optim.Optimizer (generated by odeopt).

@!param    lr is the time step h (schedulers scale it); the system's parameters are group keys.
@!param    The state of each parameter holds the system's other blocks (<<STATE>>), zero at start.
@param<<CONVERSION>>
@closure    The step needs a closure: the rule evaluates the gradient at other points.
@loss    The step needs a closure returning the loss: the rule uses the loss value.
    Non-finite gradients (or a non-finite closure loss) raise FloatingPointError naming the
    parameter, unless ``skip_nonfinite=True`` (the step is skipped, counted in
    ``skipped_steps``); ``check_finite=False`` drops the test. ``compiled=True`` runs the
    foreach step through ``torch.compile``. Hyper-parameters are checked at construction and
    when a group's value changes; ``load_state_dict`` takes this optimizer's states only.
@reduces    Reductions are global over all groups and over the ranks of ``process_group``.
@switches    Switches fire on the loss averaged with factor ``switch_smoothing``.
    """

    def __init__(self, params, lr=<<LR0>><<SIGNATURE>>, *, maximize=False, foreach=None,
                 check_finite=True, skip_nonfinite=False, compiled=False<<EXTRA>>):
        self._check_group(dict(lr=lr<<KEYS>>), "", "positive")
        self._checked = {}  # param group index -> its values as last checked
        flags = dict(maximize=maximize, foreach=foreach, check_finite=check_finite,
                     skip_nonfinite=skip_nonfinite)
        super().__init__(params, dict(lr=lr<<KEYS>>, **flags))
        self.skipped_steps = 0
        self.compiled, self._compiled_step = bool(compiled), None
@reduces        self.process_group = process_group
@switches        smoothing = _real(switch_smoothing)
@switches        if smoothing is None or not 0.0 <= smoothing < 1.0:
@switches            raise ValueError("switch_smoothing must be in [0, 1), got "
@switches                             f"{switch_smoothing!r}")
@switches        self.switch_smoothing = smoothing
@shift        self.adaptive_shift = bool(adaptive_shift)
@uniform        for name, v in (("bounce_every", bounce_every), ("bounces", bounces),
@uniform                        ("bounce_patience", bounce_patience)):
@uniform            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
@uniform                raise ValueError(f"{name} must be an integer ≥ 0 (0: off), got {v!r}")
@uniform        self.bounce_every, self.bounces = bounce_every, bounces
@uniform        self.bounce_patience, self.seed = bounce_patience, int(seed)
@gaussian        nu = _real(noise)
@gaussian        if nu is None or not (math.isfinite(nu) and nu >= 0):
@gaussian            raise ValueError(f"noise must be finite and ≥ 0 (0: off), got {noise!r}")
@gaussian        self.noise, self.seed = nu, int(seed)

    def _check_group(self, group, where, lr_sign="<<LR_MIN>>"):
        """lr, the system's parameters and (in a param group) the flags."""
@param        if where:
@param            _check_flags(group, where)
@param        _check_hyper(group, where, HYPER_RULES, FIXED, RULE)
@param        group, where = _converted(group, where, _to_ode, HYPER_RULES)
        _check_number("lr", group.get("lr"), (lr_sign,), where, "<<LR_LABEL>>")
        for name, signs in PARAMETER_RULES.items():
            _check_number(name, group.get(name), signs, where)
@kinetic        _check_kinetic(group, where)
@!param        if where:
@!param            _check_flags(group, where)

    def add_param_group(self, param_group):
        """torch's, then the checks of ``__init__`` on the new group (not added if it fails)."""
        super().add_param_group(param_group)
        gi = len(self.param_groups) - 1
        try:
            for pi, p in enumerate(self.param_groups[gi]["params"]):
                _check_param(p, pi, gi, type(self).__name__)
            self._check_group(self.param_groups[gi], f" in param group {gi}")
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    def load_state_dict(self, state_dict):
        """torch's, after checking that ``state_dict`` is a state of this optimizer."""
        _check_state_dict(self, state_dict, GROUP_KEYS, STATE_KEYS, <<SHARED>>)
        super().load_state_dict(state_dict)
        self._checked = {}  # the loaded values are checked at the next step

    def _groups(self):
        """The param groups with gradients: their values and the tensor lists of the step."""
        groups = []
        for gi, group in enumerate(self.param_groups):
            values = [group.get(k) for k in GROUP_KEYS]
            if not _unchanged(self._checked.get(gi), values):  # checked when they change
                self._check_group(group, f" in param group {gi}")
                tensors = any(isinstance(v, torch.Tensor) for v in values)
                self._checked[gi] = None if tensors else values
            theta, grads, states = [], [], []
            for pi, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients "
                                       f"(parameter {pi} of group {gi}, shape {tuple(p.shape)})")
                state = self.state[p]
                if not state:
                    state["step"] = 0
@time                    state["t"] = 0.0
<<INIT>>
                theta.append(p)
                grads.append(p.grad)
                states.append(state)
            if theta:
                G = {k: v for k, v in group.items() if k != "params"}
@param                G["_zero"] = _real(G["lr"]) == 0  # lr = 0: no update (see step)
@param                if not G["_zero"]:
@param                    G.update(_to_ode(G))  # the ODE's h (as "lr"), parameters, state scales
                G.update(_group=gi, _states=states, theta=theta,
                         g=torch._foreach_neg(grads) if G["maximize"] else grads)
<<LISTS>>
@time                G["t"] = max(s["t"] for s in states)  # parameters that joined: 0
                groups.append(G)
        return groups

    @torch.no_grad()
    def step(self, closure=None):
        """One step of the rule. ``closure`` re-evaluates the model and returns the loss."""
@required        if closure is None:
@required            raise RuntimeError(f"{type(self).__name__} needs a closure that re-evaluates "
@required                               "the model and returns the loss (its rule uses "
@required                               "<<WHY>>)")
        loss = F = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
            F = _loss_value(loss, <<NEEDS_LOSS>>, type(self).__name__)
        groups = self._groups()
        if not groups:
            return loss
        problem = _finite(self, groups, F, <<NEEDS_LOSS>>)
        if problem is not None:
            if all(G["skip_nonfinite"] for G in groups):
                self.skipped_steps += 1
                return loss
            raise FloatingPointError(problem + "; pass skip_nonfinite=True to skip such steps")
@F        maximize = groups[0]["maximize"]
@required        if any(G["maximize"] != maximize for G in groups):
@required            raise ValueError("param groups disagree on maximize, but this rule uses "
@required                             "the loss value; give all groups the same maximize")
@F        F = 0.0 if F is None else (-F if maximize else F)
@shared        glob = self.state["odeopt"]
@switches        _switch(self.param_groups, F, glob, self.switch_smoothing)  # the step runs with
@switches        groups = self._groups()  # the values after a switch
        foreach = groups[0]["foreach"]
        if foreach is None:
            foreach = all(p.is_cuda for G in groups for p in G["theta"])
@controlled        glob.setdefault("h_scale", min(1.0, H_MAX / float(groups[0]["lr"])))
@controlled        keys = ["lr", *PARAMETER_RULES]
@controlled        if any(G[k] != groups[0][k] for G in groups for k in keys):
@controlled            raise ValueError("a step-controlled rule tests the whole step at once: "
@controlled                             f"all param groups need the same {', '.join(keys)}")
@controlled        lr0 = float(groups[0]["lr"])  # lr may have changed (a scheduler): bound h first
@controlled        h_used = glob["h_scale"] = min(max(glob["h_scale"], H_MIN / lr0), H_MAX / lr0)
@V,!domain        V = F
@domain,shift        V = _domain(self.param_groups, F, glob, self.adaptive_shift)
@domain,!shift        V = _domain(self.param_groups, F, glob)
@domain        if V is None:
@domain            return loss  # outside the domain (V ≤ 0): no step, no division by zero
@levelset        if <<STORED>> not in glob:
@levelset            _start(groups, F, glob, self.process_group)
@uniform        if _bounce_due(self, glob, V):
@uniform            moms = [m for G in groups for m in G[<<MOMENTUM>>]]
@uniform            _bounce_uniform(moms, glob, self.seed, self.process_group)
@uniform            return loss  # a bounce makes no update
@param        for G in groups:
@param            if G["_zero"]:  # lr = 0: no update, the state runs torch's recurrence
@zero                _lr_zero(G)
@param                for s in G["_states"]:
@param                    s["step"] += 1
@param        groups = [G for G in groups if not G["_zero"]]
@param        if not groups:
@param            return loss
@first        for G in groups:  # a new buffer starts as torch's first step needs
@first<<FIRST>>
@pstate        for G in groups:  # the ODE's blocks from the optimizer's state (b = s·state)
@pstate<<TO_BLOCKS>>
        run = _step_foreach if foreach else _step_single
        if self.compiled:
            if self._compiled_step is None:
                self._compiled_step = torch.compile(_step_foreach)
            run = self._compiled_step
@!closure,!controlled        run(groups<<ARGS>>)
@closure        try:
@closure,!controlled            run(groups<<ARGS>>)
@closure,controlled            accepted, fac = run(groups<<ARGS>>)
@closure,!controlled        except _NonFinite as exc:  # nothing was written: θ, state change last
@closure,controlled        except _NonFinite:
@closure,!controlled            if all(G["skip_nonfinite"] for G in groups):
@closure,!controlled                self.skipped_steps += 1
@closure,!controlled                return loss
@closure,!controlled            raise FloatingPointError(f"{exc}; pass skip_nonfinite=True to skip "
@closure,!controlled                                     "such steps")
@closure,controlled            accepted, fac = False, SHRINK  # its loss overflows: rejected
@!closure,controlled        accepted, fac = run(groups<<ARGS>>)
@controlled        scale = min(max(h_used * fac, H_MIN / lr0), H_MAX / lr0)  # grow or shrink
@controlled        glob["h_scale"] = scale if math.isfinite(scale) and scale > 0 else h_used
@controlled        if not accepted:
@controlled            glob["rejected"] = glob.get("rejected", 0) + 1
@controlled            return loss
        for G in groups:
            for <<LOOP>>:
                state["step"] += 1<<NEW>>
@time                state["t"] = G["t"] + G["lr"] * <<HUSED>>
@pstate<<FROM_BLOCKS>>
@levelset        glob["updates"] = glob.get("updates", 0) + 1
@uniform        _after_update(glob, V)  # progress is judged on updates only
@gaussian        if self.noise > 0:
@gaussian            moms = [s[<<MOMENTUM>>] for G in groups for s in G["_states"]]  # new
@gaussian            _bounce_gaussian(moms, glob, self.seed, self.noise, self.process_group)
        return loss'''
