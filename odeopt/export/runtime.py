"""The runtime helpers of exported optimizers, as a real module.

An exported optimizer is a self-contained .py file: :mod:`odeopt.export.render` copies the
source of the helpers below into it, only those its code names (and what they name in turn,
:func:`source_of`). So this module is the one copy of that code: it is linted and imported
like any other, and each generated file carries only the helpers its rule uses.

The helpers take what differs between rules as arguments (the class name, the group keys, the
state keys), never module constants of the generated file.
"""

from __future__ import annotations

import ast
import math
import re
from functools import cache
from pathlib import Path

import torch

__all__ = ["definitions", "parse_helpers", "select_helpers", "source_of"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_SIGNS = {
    "positive": lambda v: v > 0,
    "nonnegative": lambda v: v >= 0,
    "negative": lambda v: v < 0,
    "nonpositive": lambda v: v <= 0,
    "nonzero": lambda v: v != 0,
}


def _real(value):
    """``value`` as a float if it is a real number (Python or numpy, or a one-element real
    tensor), else None."""
    if value is None or isinstance(value, (bool, str, bytes, complex)):
        return None
    if isinstance(value, torch.Tensor) and (
        value.numel() != 1 or value.is_complex() or value.dtype == torch.bool
    ):
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
        raise TypeError(
            f"{label}{where} has no value (the system gives it no default): pass {name}=..."
        )
    v = _real(value)
    if v is None:
        raise TypeError(f"{label}{where} must be a real number, got {value!r}")
    if not math.isfinite(v):
        raise ValueError(f"{label}{where} must be finite, got {name} = {value!r}")
    for sign in signs:
        if not _SIGNS[sign](v):
            raise ValueError(f"{label}{where} must be {sign}, got {value!r}")


def _check_hyper(group, where, rules, fixed, rule):
    """A torch optimizer's hyper-parameters: those in ``rules`` real with the given signs,
    those in ``fixed`` {name: (value, hint)} at that value (``rule`` says which optimizer the
    rule is); TypeError or ValueError naming the hyper-parameter, its value and ``where``."""
    for name, signs in rules.items():
        _check_number(name, group.get(name), signs, where)
    for name, (value, hint) in fixed.items():
        v = group.get(name)
        same = (v is value) if isinstance(value, bool) else (_real(v) == value)
        if not same:
            raise ValueError(
                f"{name}{where} must be {value!r}, got {v!r}: {rule} {name}={value!r}"
                + (f" ({hint})" if hint else "")
            )


def _converted(group, where, to_ode, keys):
    """The ODE's values of a param group given by a torch optimizer's hyper-parameters
    (``to_ode``), and ``where`` naming those values; ValueError when they have none. At
    lr = 0 (a step without update, which the ODE's h cannot express) those at lr = 1."""
    shown = ", ".join(f"{k}={group.get(k)!r}" for k in keys)
    try:
        ode = to_ode(group if _real(group.get("lr")) != 0 else {**group, "lr": 1.0})
    except (ArithmeticError, ValueError) as exc:
        raise ValueError(
            f"{shown}{where} have no ODE counterpart ({exc}): the rule needs a step h > 0"
        ) from None
    return ode, f"{where} (from {shown})"


def _check_flags(group, where):
    """The flags of a param group: maximize, check_finite, skip_nonfinite bools; foreach None
    or a bool."""
    for flag in ("maximize", "check_finite", "skip_nonfinite"):
        if not isinstance(group.get(flag), bool):
            raise TypeError(f"{flag}{where} must be True or False, got {group.get(flag)!r}")
    if not (group.get("foreach") is None or isinstance(group.get("foreach"), bool)):
        raise TypeError(f"foreach{where} must be None, True or False, got {group.get('foreach')!r}")


def _unchanged(cached, values):
    """Whether a param group's checked values are still the same (NaN never is: a NaN is
    refused at every step; tensors are never cached: they may change in place)."""
    return cached is not None and all(
        a is b or (type(a) is type(b) and a == b) for a, b in zip(cached, values, strict=True)
    )


def _check_param(p, pi, gi, cls):
    """A parameter optimizer ``cls`` can update: a dense real floating-point tensor with data."""
    what = f"parameter {pi} of group {gi} (shape {tuple(p.shape)})"
    if p.is_complex():
        raise TypeError(
            f"{what} is complex ({p.dtype}); {cls} optimizes real floating-point parameters "
            "(its reductions |x|² assume real entries)"
        )
    if p.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{what} has dtype {p.dtype}; {cls} optimizes floating-point parameters "
            "(float16, bfloat16, float32 or float64)"
        )
    if p.layout != torch.strided:
        raise TypeError(f"{what} has layout {p.layout}; {cls} optimizes dense parameters")
    if p.device.type == "meta":
        raise ValueError(
            f"{what} is on the meta device (it holds no data); materialize the model on a "
            "real device (e.g. model.to_empty(device='cpu')) first"
        )


def _nonfinite(tensors):
    """The index of the first tensor holding a NaN or ±inf, or None.

    One pass over the tensors, then one host synchronisation. On accelerators max |x| per
    tensor (the fused ``torch._foreach_norm(tensors, inf)``, which cannot overflow). On the
    CPU, for a few large tensors, the sum of each (the fastest read-only pass: NaN and ±inf
    propagate, and an overflow of finite values only makes it suspect; float16/bfloat16 sum in
    float32), and for many small ones torch's fused non-finite test (the AMP
    check at scale 1, which writes every value back unchanged, with no per-tensor dispatch).
    Only when it finds something is each tensor tested exactly (``isfinite``), to name the
    first culprit.
    """
    if not tensors:
        return None
    try:
        n = len(tensors)
        if tensors[0].device.type != "cpu":
            norms = torch._foreach_norm(tensors, math.inf)
            suspect = not bool(torch.stack(norms).isfinite().all())
        elif n <= 64 and sum(a.numel() for a in tensors) >= n << 16:
            wide = [torch.float32 if a.element_size() < 4 else a.dtype for a in tensors]
            sums = [a.sum(dtype=w) for a, w in zip(tensors, wide, strict=True)]
            suspect = not bool(torch.stack(sums).isfinite().all())
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


def _loss_value(loss, needed, cls):
    """The closure's loss as a float (None when it returned None and the rule does not use
    the loss); TypeError/ValueError naming the loss and the closure otherwise."""
    if loss is None:
        if needed:
            raise TypeError(
                f"the closure returned None, but {cls}'s rule uses the loss value: return the "
                "loss from the closure (loss = ...; loss.backward(); return loss)"
            )
        return None
    if isinstance(loss, torch.Tensor) and loss.numel() != 1:
        raise ValueError(
            f"the closure's loss must be a single number, got a tensor of shape {tuple(loss.shape)}"
        )
    v = _real(loss)
    if v is None:
        raise TypeError(
            f"the closure must return the loss (a real number or a one-element tensor), "
            f"got {loss!r}"
        )
    return v


def _finite(opt, groups, F, needs_loss):
    """None, or what is not finite: the closure's loss F (when the rule uses it or a group
    checks), else the first gradient with a NaN or ±inf (one fused pass, ``_nonfinite``)."""
    checked = [G for G in groups if G["check_finite"]]
    if F is not None and not math.isfinite(F) and (needs_loss or checked):
        return f"the loss returned by the closure is not finite ({F})"
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
    pi = next(i for i, p in enumerate(opt.param_groups[gi]["params"]) if p is p_k)
    return f"the gradient of parameter {pi} of group {gi} (shape {tuple(p_k.shape)}) is not finite"


def _check_state_dict(opt, state_dict, group_keys, state_keys, shared):
    """``state_dict`` must be a state of ``opt``'s class: its param groups with
    ``group_keys``, each parameter's state with exactly ``state_keys`` (tensors shaped like
    the parameter, besides "step" and "t"), and a shared "odeopt" entry only when ``shared``:
    ValueError saying what differs."""
    cls = type(opt).__name__
    if not (
        isinstance(state_dict, dict) and "state" in state_dict and "param_groups" in state_dict
    ):
        got = sorted(map(str, state_dict)) if isinstance(state_dict, dict) else state_dict
        raise ValueError(
            "load_state_dict expects an optimizer state (a dict with 'state' and "
            f"'param_groups', from {cls}.state_dict()), got {got!r}"
        )
    saved, state = state_dict["param_groups"], state_dict["state"]
    if len(saved) != len(opt.param_groups):
        raise ValueError(
            f"the state has {len(saved)} param group(s), this {cls} has {len(opt.param_groups)}"
        )
    foreign = sorted(str(k) for k in state if not isinstance(k, int) and k != "odeopt")
    if foreign or ("odeopt" in state and not shared):
        raise ValueError(
            f"the state holds {foreign or ['odeopt']} beside the parameters' state, which a "
            f"{cls} state does not: it is another optimizer's"
        )
    want = set(state_keys)
    for gi, (g, ours) in enumerate(zip(saved, opt.param_groups, strict=True)):
        missing = sorted(set(group_keys) - set(g))
        if missing:
            raise ValueError(
                f"the state is not a {cls} state: its param group {gi} lacks {missing} "
                f"(it has {sorted(k for k in g if k != 'params')}); was it saved by another "
                "optimizer?"
            )
        if len(g["params"]) != len(ours["params"]):
            raise ValueError(
                f"the state's param group {gi} has {len(g['params'])} parameter(s), this "
                f"optimizer's has {len(ours['params'])}"
            )
        for pi, (idx, p) in enumerate(zip(g["params"], ours["params"], strict=True)):
            st = state.get(idx)
            if st is None:
                continue  # no step taken for this parameter yet
            if not isinstance(st, dict) or set(st) != want:
                keys = sorted(st) if isinstance(st, dict) else type(st).__name__
                raise ValueError(
                    f"the state of parameter {pi} of group {gi} has {keys}, a {cls} state "
                    f"has {sorted(want)}: it is another optimizer's"
                )
            for b in sorted(want - {"step", "t"}):
                v = st[b]
                if not isinstance(v, torch.Tensor) or v.shape != p.shape:
                    shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                    raise ValueError(
                        f"the state {b!r} of parameter {pi} of group {gi} has shape {shape}, "
                        f"but the parameter has shape {tuple(p.shape)}"
                    )


def _total(tensors):
    """Σ over the tensors and their elements, accumulated in float64."""
    return float(torch.stack([a.sum(dtype=torch.float64) for a in tensors]).sum())


def _sq(a):
    """Σ a², one read (a BLAS dot product) in float32/64, through float32 otherwise."""
    if a.dtype in (torch.float32, torch.float64):
        v = a.reshape(-1)
        return torch.dot(v, v)
    return a.float().square().sum()


def _total_sq(tensors):
    """Σ x² over the tensors: a dot product per tensor, summed in float64."""
    if not tensors:
        return 0.0
    return float(torch.stack([_sq(a).to(torch.float64) for a in tensors]).sum())


def _reduce_global(value, process_group):
    """Sum a reduction over the ranks of ``process_group`` when torch.distributed runs."""
    if (
        process_group is not None
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    ):
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(t, group=process_group)
        return float(t[0])
    return value


class _NonFinite(Exception):
    """A non-finite loss or gradient at an intermediate stage (parameters already restored)."""


def _evaluate(groups, theta_key, closure, maximize, needs_loss, cls):
    """F and ∇F at the parameter values ``G[theta_key]`` (the parameters are restored)."""
    saved = [[p.detach().clone() for p in G["theta"]] for G in groups]
    for G in groups:
        for p, v in zip(G["theta"], G[theta_key], strict=True):
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
        for G, sv in zip(groups, saved, strict=True):
            for p, v in zip(G["theta"], sv, strict=True):
                p.copy_(v)
    F = _loss_value(loss, needs_loss, cls)
    F = 0.0 if F is None else F  # (unused: the rule does not read the loss)
    if not math.isfinite(F) and (needs_loss or any(G["check_finite"] for G in groups)):
        raise _NonFinite(f"the loss is not finite ({F}) at the stage {theta_key}")
    for G, gs in zip(groups, grads, strict=True):
        if G["check_finite"] and _nonfinite(gs) is not None:
            raise _NonFinite(f"a gradient is not finite at the stage {theta_key}")
    return (-F if maximize else F), grads


def _rng(glob, seed, device):
    """The bounce generator, its state kept in the optimizer state (exact resume)."""
    gen = torch.Generator(device=device)
    if "rng" in glob:
        gen.set_state(glob["rng"])
    else:
        gen.manual_seed(seed)
    return gen


def _sqnorm(tensors, process_group):
    """|x|² over the tensors (and the ranks of ``process_group``)."""
    return _reduce_global(_total([a * a for a in tensors]), process_group)


def _draw(kind, m, gen):
    """Noise shaped like ``m``: uniform in [−½, ½] or standard normal."""
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
    for m, z in zip(moms, noise, strict=True):
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
    # p/r + νz, scaled by r (normalised next: the same direction)
    for m, zi in zip(moms, z, strict=True):
        m.add_(zi.to(m.dtype), alpha=nu * r)
    n = math.sqrt(_sqnorm(moms, process_group))
    for m in moms:
        m.mul_(r / n)


def _bounce_due(opt, glob, V):
    """ECD's bounce schedule, as the authors' code counts it: a bounce replaces the update
    after every ``opt.bounce_every`` updates (``opt.bounces`` in all), and after
    ``opt.bounce_patience`` consecutive updates whose V was no new minimum."""
    n = glob.get("updates", 0)
    due = (
        opt.bounce_every > 0
        and n > 0
        and n % opt.bounce_every == 0
        and glob.get("fixed_bounces", 0) < opt.bounces
        and glob.get("bounced_at") != n
    )
    stuck = opt.bounce_patience > 0 and glob.get("since_best", 0) >= opt.bounce_patience
    if not (due or stuck):
        return False
    if due:
        glob["fixed_bounces"] = glob.get("fixed_bounces", 0) + 1
        glob["bounced_at"] = n
    glob["since_best"] = 0
    glob["bounces_made"] = glob.get("bounces_made", 0) + 1
    return True


def _after_update(glob, V):
    """Progress for the bounce schedule, judged on updates only: the best V and the number
    of updates since."""
    best = glob.get("best_V")
    if best is None or V < best:
        glob["best_V"], glob["since_best"] = V, 0
    else:
        glob["since_best"] = glob.get("since_best", 0) + 1


def parse_helpers(
    text: str, docstrings: bool = False, others: frozenset[str] = frozenset()
) -> dict[str, tuple[str, frozenset[str]]]:
    """Each helper of the module source ``text`` (a top-level function, class or assignment
    whose name starts with one "_"): its source and the other helpers it names (of ``text``
    or of ``others``, helpers defined elsewhere). Docstrings of helpers with a body are
    dropped unless ``docstrings`` (documented where they are defined, not in each generated
    file). The JAX renderer parses its helpers with it too."""
    nodes: dict[str, ast.stmt] = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            nodes[node.name] = node
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            nodes[node.targets[0].id] = node
    helpers = {k: v for k, v in nodes.items() if k.startswith("_") and not k.startswith("__")}
    out = {}
    for name, node in helpers.items():
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - {name}
        source = ast.get_source_segment(text, node)
        assert source is not None and not getattr(node, "decorator_list", None), name
        body = getattr(node, "body", [])
        doc = body[0] if body and isinstance(body[0], ast.Expr) else None
        if (
            not docstrings
            and doc is not None
            and isinstance(doc.value, ast.Constant)
            and len(body) > 1
        ):
            lines = source.split("\n")
            first, last = doc.lineno - node.lineno, doc.end_lineno - node.lineno  # type: ignore[operator]
            source = "\n".join(lines[:first] + lines[last + 1 :])
        out[name] = (source, frozenset(used & (set(helpers) | others)))
    return out


def select_helpers(code: str, defs: dict[str, tuple[str, frozenset[str]]]) -> list[str]:
    """The source of the helpers of ``defs`` (:func:`parse_helpers`) that ``code`` names, and
    of those they name, in the order of ``defs`` (join them with two blank lines)."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code))
    wanted = {n for n in defs if n in words}
    todo = list(wanted)
    while todo:
        for dep in defs[todo.pop()][1]:
            if dep not in wanted:
                wanted.add(dep)
                todo.append(dep)
    return [defs[n][0] for n in defs if n in wanted]


@cache
def definitions() -> dict[str, tuple[str, frozenset[str]]]:
    """Each helper of this module: its source (without docstring) and the other helpers it
    names."""
    return parse_helpers(Path(__file__).read_text(encoding="utf-8"))


def source_of(code: str) -> list[str]:
    """The source of the helpers ``code`` names, and of those they name, in this module's
    order (each a top-level definition; join them with two blank lines)."""
    return select_helpers(code, definitions())
