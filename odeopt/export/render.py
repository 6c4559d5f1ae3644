"""A plan (:mod:`odeopt.export.plan`) printed as the step functions of an exported optimizer.

One table, :data:`OPS`, says how each kind of :class:`~odeopt.export.plan.Op` reads as
``torch._foreach_*`` calls on lists of tensors, as tensor methods in a loop per parameter, and
as a ``jax.numpy`` expression on one array (:func:`jax_step`, for :mod:`.jax_source`); every
step function is printed from it, so all run the same operations in the same order.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

import sympy as sp

from .features import ScalarPrinter
from .plan import THETA, AcceptStage, EvaluateStage, GroupStage, Op, Plan, ReduceStage

__all__ = ["OPS", "JaxScalarPrinter", "jax_step", "replaced_blocks", "step_function"]


@dataclass(frozen=True)
class Form:
    """How one kind of operation is printed: ``foreach`` with {x} {y} {s} {alpha} and ``_``
    (the in-place suffix), ``single`` the same on one tensor x (and y), ``jax`` the new value
    as a ``jax.numpy`` expression of one array x (and y), {alpha} there ``alpha * `` (arrays
    are immutable: an in-place op rebinds the list)."""

    foreach: str
    single: str
    jax: str


OPS: dict[str, Form] = {
    "mul_s": Form("torch._foreach_mul{_}({x}, {s})", "{x}.mul{_}({s})", "{x} * {s}"),
    "add": Form(
        "torch._foreach_add{_}({x}, {y}{alpha})", "{x}.add{_}({y}{alpha})", "{x} + {alpha}{y}"
    ),
    "add_s": Form("torch._foreach_add{_}({x}, {s})", "{x}.add{_}({s})", "{x} + {s}"),
    "mul": Form("torch._foreach_mul{_}({x}, {y})", "{x}.mul{_}({y})", "{x} * {y}"),
    "div": Form("torch._foreach_div{_}({x}, {y})", "{x}.div{_}({y})", "{x} / {y}"),
    "func": Form("torch._foreach_{s}{_}({x})", "torch.{s}({x})", "jnp.{s}({x})"),
    "pow_s": Form("torch._foreach_pow{_}({x}, {s})", "torch.pow({x}, {s})", "jnp.power({x}, {s})"),
    "copy": Form("torch._foreach_copy_({x}, {y})", "{x}.copy_({y})", "{y}"),
    "clone": Form("[a.clone() for a in {x}]", "{x}.clone()", "{x}"),
}


def _print_op(op: Op, foreach: bool, ind: str) -> list[str]:
    """One operation as lines of either path."""
    if op.kind == "alias":
        return [f"{ind}{op.out} = {op.x}"]
    form = OPS[op.kind]
    alpha = f", alpha={op.scalar}" if op.kind == "add" and op.scalar else ""
    suffix = "_" if op.inplace else ""
    if foreach:
        call = form.foreach.format(x=op.x, y=op.y, s=op.scalar, alpha=alpha, _=suffix)
        return [f"{ind}{call}" if op.inplace else f"{ind}{op.out} = {call}"]
    names = "x" if op.y is None else "x, y"
    over = op.x if op.y is None else f"zip({op.x}, {op.y})"
    if op.kind == "clone":
        return [f"{ind}{op.out} = [x.clone() for x in {op.x}]"]
    call = form.single.format(x="x", y="y", s=op.scalar, alpha=alpha, _=suffix)
    if op.inplace:
        return [f"{ind}for {names} in {over}:", f"{ind}    {call}"]
    return [f"{ind}{op.out} = [{call} for {names} in {over}]"]


def _live(plan: Plan) -> list[list[Op]]:
    """The ops of each group stage without aliases nobody reads: intermediate names of lists
    updated in place, and ``new_b = b`` for a state block b updated in place."""
    reads: list[set[str]] = []
    for st in plan.stages:
        if isinstance(st, GroupStage):
            reads.append({r for op in st.ops for r in op.reads()})
        elif isinstance(st, ReduceStage):
            reads.append({st.source})
        elif isinstance(st, EvaluateStage):
            reads.append({f'G["{st.theta_key}"]'})
        else:
            reads.append(set())
    out = []
    for si, st in enumerate(plan.stages):
        if not isinstance(st, GroupStage):
            out.append([])
            continue
        later = set().union(*reads[si + 1 :]) if si + 1 < len(reads) else set()
        kept = []
        for k, op in enumerate(st.ops):
            after = later | {r for o in st.ops[k + 1 :] for r in o.reads()}
            m = re.fullmatch(r'G\["new_(\w+)"\]', op.out)
            if op.kind == "alias" and op.out not in after:
                if m is None or op.x == f'G["{m.group(1)}"]':
                    continue
            kept.append(op)
        out.append(kept)
    return out


def replaced_blocks(plan: Plan) -> list[str]:
    """The state blocks whose new value is a new list (not updated in place)."""
    outs = {op.out for ops in _live(plan) for op in ops}
    return [b for b in plan.state_blocks if f'G["new_{b}"]' in outs]


def step_function(plan: Plan, foreach: bool) -> tuple[list[str], list[str]]:
    """(lines, arguments) of ``_step_foreach`` or ``_step_single``: one step on all groups."""
    printer = ScalarPrinter(plan.scalars)
    local = plan.locals
    lr = 'G["lr"] * glob["h_scale"]' if plan.controlled else 'G["lr"]'
    body: list[str] = []
    in_loop = False
    for st, ops in zip(plan.stages, _live(plan), strict=True):
        if isinstance(st, GroupStage):
            if not ops and not st.scalars:
                continue
            if not in_loop:
                body.append("    for G in groups:")
                in_loop = True
            body += [f"        {nm} = {printer.doprint(e)}" for nm, e in st.scalars]
            for op in ops:
                body += _print_op(op, foreach, "        ")
            continue
        in_loop = False
        if isinstance(st, ReduceStage):
            total = "_total_sq" if st.square else "_total"
            body += [
                f"    {st.name} = 0.0",
                "    for G in groups:",
                f"        {st.name} += {total}({st.source})",
                f"    {st.name} = _reduce_global({st.name}, process_group)",
            ]
        elif isinstance(st, EvaluateStage):
            body += [
                f"    {st.loss_name}, _g = _evaluate(groups, {st.theta_key!r}, closure, "
                f"maximize, {plan.needs_loss}, {plan.cls!r})",
                "    for G, gs in zip(groups, _g):",
                f"        G[{st.grad_key!r}] = gs",
            ]
        elif isinstance(st, AcceptStage):
            body += ["    G = groups[0]  # one step size for all groups (checked)"]
            body += [f"    _err = {printer.doprint(st.err)}"]
            if st.order is None:  # the energy test: accept iff it dropped enough
                body += ["    accepted = _err <= 0.0", "    _fac = GROW if accepted else SHRINK"]
            else:  # the error test: accept iff err ≤ 1; h·clip(safety·err^(−1/(q+1)))
                body += [
                    "    accepted = _err <= 1.0",
                    f"    _fac = SAFETY * _err ** (-1.0 / {st.order + 1})"
                    " if _err > 0 else math.inf",
                    "    _fac = min(max(_fac, SHRINK), GROW) if _fac == _fac else SHRINK",
                ]
            body += ["    if not accepted:", "        return False, _fac"]
    if plan.controlled:
        body.append("    return True, _fac")
    body = _load_group_values(body, local, lr, plan.uses_time)
    text = "\n".join(body)
    args = ["groups"] + [
        a
        for a in ("F", "closure", "maximize", "process_group", "glob")
        if re.search(rf"\b{a}\b", text)
    ]
    how = "torch._foreach_* ops" if foreach else "a loop per parameter"
    name = "_step_foreach" if foreach else "_step_single"
    head = [f"def {name}({', '.join(args)}):", f'    """One step on all groups ({how})."""']
    return head + (body or ["    pass"]), args


def _load_group_values(body: list[str], local: dict[str, str], lr: str, time: bool) -> list[str]:
    """After each ``G = …`` / ``for G in groups:`` line, the group values its block uses."""
    sources = {"lr": lr, **{v: f'G["{k}"]' for k, v in local.items()}}
    if time:
        sources["t"] = 'G["t"]'
    out: list[str] = []
    k = 0
    while k < len(body):
        line = body[k]
        out.append(line)
        k += 1
        if not (line.strip() == "for G in groups:" or line.strip().startswith("G = groups[0]")):
            continue
        ind = " " * (len(line) - len(line.lstrip()) + (4 if line.strip().startswith("for") else 0))
        block = []
        while k < len(body) and body[k].startswith(ind):
            block.append(body[k])
            k += 1
        text = "\n".join(block)
        used = [n for n in sources if re.search(rf"(?<![\"'\w]){n}\b(?!\s*=[^=])", text)]
        if used:
            out.append(f"{ind}{', '.join(used)} = {', '.join(sources[n] for n in used)}")
        out += block
    return out


class JaxScalarPrinter(ScalarPrinter):
    """:class:`~odeopt.export.features.ScalarPrinter` for traced values: no Python branch on a
    value (``jax.jit``): a Piecewise is nested ``jnp.where``, logic ``jnp.logical_*``,
    Max/Min ``jnp.maximum``/``jnp.minimum``, math's functions jax.numpy's."""

    def _module_format(self, fqn: str, register: bool = True) -> str:
        if fqn.startswith("math."):
            return "jnp." + fqn[len("math.") :]
        return super()._module_format(fqn, register)

    def _nest(self, func: str, args: tuple[sp.Basic, ...]) -> str:
        out = self._print(args[0])
        for a in args[1:]:
            out = f"{func}({out}, {self._print(a)})"
        return out

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        out = "jnp.nan"
        for e, c in reversed(expr.args):
            body = self._print(e)
            out = body if c == sp.true else f"jnp.where({self._print(c)}, {body}, {out})"
        return out

    def _print_And(self, expr: sp.Basic) -> str:
        return self._nest("jnp.logical_and", expr.args)

    def _print_Or(self, expr: sp.Basic) -> str:
        return self._nest("jnp.logical_or", expr.args)

    def _print_Not(self, expr: sp.Basic) -> str:
        return f"jnp.logical_not({self._print(expr.args[0])})"

    def _print_Max(self, expr: sp.Basic) -> str:
        return self._nest("jnp.maximum", expr.args)

    def _print_Min(self, expr: sp.Basic) -> str:
        return self._nest("jnp.minimum", expr.args)

    def _print_sign(self, expr: sp.Basic) -> str:
        return f"jnp.sign({self._print(expr.args[0])})"


def _print_op_jax(op: Op, ind: str) -> list[str]:
    """One operation as a list comprehension of :data:`OPS`' ``jax`` expressions (an
    in-place op rebinds its list)."""
    if op.kind == "alias":
        return [f"{ind}{op.out} = {op.x}"]
    alpha = f"{op.scalar} * " if op.kind == "add" and op.scalar else ""
    expr = OPS[op.kind].jax.format(x="x", y="y", s=op.scalar, alpha=alpha)
    if op.kind in ("copy", "clone"):  # immutable arrays: the list of the values it names
        src = op.y if op.kind == "copy" else op.x
        return [f"{ind}{op.out} = list({src})"]
    over = f"x in {op.x}" if op.y is None else f"x, y in zip({op.x}, {op.y})"
    return [f"{ind}{op.out} = [{expr} for {over}]"]


@dataclass
class JaxStep:
    """The step as lines of a JAX function body (4 spaces deep): the plan's stages on lists
    of arrays ``G[...]`` (leaves of the parameter pytree), with no Python branch on a value.

    ``delta``: the last op θ += α·y was printed as ``_U = [α·y]`` (the optax update itself);
    otherwise the new θ is ``G["theta"]`` and the update its difference from θ.
    ``reads_theta``: the step reads θ (``update`` needs ``params``). ``accept``: it ends with
    a controller's test, leaving ``accepted`` and ``_fac``."""

    lines: list[str]
    delta: bool
    reads_theta: bool
    accept: bool


def jax_step(plan: Plan) -> JaxStep:
    """:class:`JaxStep` of ``plan``: every stage, printed through :data:`OPS` and
    :class:`JaxScalarPrinter`; an evaluation calls ``_evaluate(value_fn, …)`` (its gradient
    only when read), a reduction ``_total``/``_total_sq``, a controller's test sets
    ``accepted`` and ``_fac`` (the caller applies them: a rejected step writes nothing)."""
    printer = JaxScalarPrinter(plan.scalars)
    live = _live(plan)
    reads: list[str] = []
    for st, ops in zip(plan.stages, live, strict=True):
        reads += [r for op in ops for r in op.reads()]
        if isinstance(st, ReduceStage):
            reads.append(st.source)
        elif isinstance(st, EvaluateStage):
            reads.append(f'G["{st.theta_key}"]')
    writes = [(si, k) for si, ops in enumerate(live) for k, op in enumerate(ops) if op.out == THETA]
    delta = False
    if len(writes) == 1:
        si, k = writes[0]
        last = live[si][k]
        delta = last.kind == "add" and last.x == THETA and reads.count(THETA) == 1
    body: list[str] = []
    accept = False
    for st, ops in zip(plan.stages, live, strict=True):
        if isinstance(st, GroupStage):
            body += [f"    {nm} = {printer.doprint(e)}" for nm, e in st.scalars]
            for op in ops:
                if delta and op.out == THETA:
                    alpha = f"{op.scalar} * " if op.scalar else ""
                    body.append(f"    _U = [{alpha}y for y in {op.y}]")
                else:
                    body += _print_op_jax(op, "    ")
        elif isinstance(st, ReduceStage):
            total = "_total_sq" if st.square else "_total"
            body.append(f'    {st.name} = {total}(G["{_key(st.source)}"])')
        elif isinstance(st, EvaluateStage):
            grad = f'G["{st.grad_key}"]' in reads
            target = f'G["{st.grad_key}"]' if grad else "_"
            body.append(
                f"    {st.loss_name}, {target} = _evaluate(value_fn, treedef, "
                f'G["{st.theta_key}"], extra, maximize, {grad})'
            )
        else:
            accept = True
            body.append(f"    _err = {printer.doprint(st.err)}")
            if st.order is None:  # the energy test: accept iff it dropped enough
                body += [
                    "    accepted = _err <= 0.0",
                    "    _fac = jnp.where(accepted, GROW, SHRINK)",
                ]
            else:  # the error test: accept iff err ≤ 1; h·clip(safety·err^(−1/(q+1)))
                body += [
                    "    accepted = _err <= 1.0",
                    f"    _fac = jnp.where(_err > 0, SAFETY * _err ** (-1.0 / {st.order + 1}),"
                    " jnp.inf)",
                    "    _fac = jnp.where(_fac == _fac, jnp.clip(_fac, SHRINK, GROW), SHRINK)",
                ]
    reads_theta = any(r == THETA for r in reads) and not (delta and reads.count(THETA) == 1)
    return JaxStep(body, delta, reads_theta, accept)


def _key(lst: str) -> str:
    """The key of a list expression ``G["key"]``."""
    m = re.fullmatch(r'G\["(\w+)"\]', lst)
    assert m is not None, lst
    return m.group(1)


def wrap(source: str, width: int = 100, nested: bool = False) -> str:
    """``source`` with every line longer than ``width`` broken: docstring text as text, code
    at a space inside brackets and outside strings (an over-long right-hand side is put in
    parentheses first), the continuation indented 4 more. ``nested``: a continuation is cut
    at the bracket depth where it starts (deeply nested expressions, the JAX printer's)."""
    out: list[str] = []
    in_doc = False
    depth = 0  # brackets open at the start of a line (a continued statement)
    for line in source.split("\n"):
        quotes = line.count('"""') + line.count("'''")
        if len(line) > width and (in_doc or (quotes == 1 and line.lstrip().startswith('"""'))):
            ind = " " * (len(line) - len(line.lstrip()))
            out += textwrap.wrap(
                line.strip(),
                width,
                initial_indent=ind,
                subsequent_indent=ind + "    ",
                break_on_hyphens=False,
            )
        elif len(line) > width and not in_doc:
            out += _break_code(line, width, depth, nested)
        else:
            out.append(line)
        if not in_doc and not quotes:
            depth = _depth(line, depth)
        if quotes % 2:
            in_doc = not in_doc
    return "\n".join(out)


def _break_code(line: str, width: int, depth: int, nested: bool = False) -> list[str]:
    ind = " " * (len(line) - len(line.lstrip()))
    m = re.match(r"(\s*[\w\[\]'\", ]+ = )(.*)$", line)
    if m and not depth and not m.group(2).startswith(("(", "[", "{")) and _spaces(line, 0):
        line = f"{m.group(1)}({m.group(2)})"
    lines = []
    while len(line) > width:
        cuts = [c for c in _spaces(line, 1, depth) if c <= width]
        if not cuts:
            break
        lines.append(line[: cuts[-1]].rstrip())
        if nested:  # the continuation starts inside the brackets open at the cut
            depth = _depth(line[: cuts[-1]], depth)
        line = ind + "    " + line[cuts[-1] :].lstrip()
    return [*lines, line]


def _depth(line: str, depth: int) -> int:
    """The bracket depth after ``line``, from ``depth`` before it."""
    for ch in re.sub(r"'[^']*'|\"[^\"]*\"|#.*", "", line):
        depth += (ch in "([{") - (ch in ")]}")
    return depth


def _spaces(line: str, depth_min: int, depth: int = 0) -> list[int]:
    """Positions of spaces outside strings at bracket depth ≥ ``depth_min`` (``depth``
    brackets are open where the line starts)."""
    cuts, quote = [], ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote and line[i - 1] != "\\" else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == " " and depth >= depth_min and i > len(line) - len(line.lstrip()):
            cuts.append(i)
        elif ch == "#":
            break
    return cuts
