"""Compile per-coordinate sympy expressions to batched numpy / torch functions.

Arrays are batched: a block or the gradient has shape (batch, n); a global (loss, time,
reduction) is one scalar per batch row, held as shape (batch, 1) so it broadcasts against the
coordinates. A reduction Σᵢ φ(xᵢ) is computed per row as ``sum(φ(x), axis=-1)``.

One generated source serves both backends: it calls its array module through the name
``numpy``, bound to numpy's names in the array vocabulary of :mod:`odeopt.arrays`.
"""

from __future__ import annotations

import functools
import itertools
import types
from collections.abc import Callable, Sequence
from typing import Any

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from ..arrays import Arrays, TorchArrays, arrays
from .language import Block, Gradient, Loss, Reduction, Time

__all__ = ["Compiled", "compile_explicit", "compile_expressions", "namespace"]


class _Generated:
    """numpy's names as the generated code calls them, bound to one array vocabulary
    (:mod:`odeopt.arrays`): its helpers ``rsum``, ``column``, ``row``, ``like``, ``stack`` of
    values cast to a reference, the numpy names that differ in torch, and every other name
    from the library itself. Inputs are cast to the dtype of the reference array (the
    gradient or the first block), so float32 stays float32."""

    def __init__(self, arrays: Arrays) -> None:
        self._module = arrays.module
        self.rsum = arrays.rsum
        self.column = arrays.column
        self.row = arrays.row
        self.like = arrays.like
        like, stack = arrays.like, arrays.stack
        self.stack = lambda values, ref: stack([like(v, ref) for v in values])
        if isinstance(arrays, TorchArrays):
            self.__dict__.update(arrays.numpy_names())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


@functools.cache
def namespace(backend: str) -> Any:
    """The namespace generated code calls ``numpy``, for ``"numpy"`` or ``"torch"``."""
    if backend not in ("numpy", "torch"):
        raise ValueError(f"unknown backend {backend!r}; expected 'numpy' or 'torch'")
    return _Generated(arrays(backend))


class _Printer(NumPyPrinter):
    def _print_Symbol(self, expr: sp.Symbol) -> str:  # names are made safe before printing
        return expr.name

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if expr.exp == 2:  # x*x is cheaper than a general power in numpy and torch
            base = self.parenthesize(expr.base, sp.printing.precedence.PRECEDENCE["Mul"])
            return f"({base}*{base})"
        return super()._print_Pow(expr, rational=rational)


class Compiled:
    """A batched function of (blocks, F, g, t, parameters) built from sympy expressions.

    Call with ``blocks`` mapping block names to arrays (batch, n), ``F`` (batch,),
    ``g`` (batch, n), ``t`` a scalar or (batch,), and parameter values by name (scalars, or
    (batch,) arrays for per-trajectory values). Returns a tuple, one array per expression:
    (batch, n) for per-coordinate expressions, (batch,) for scalar (global) ones.
    """

    def __init__(
        self,
        fn: Callable[..., tuple[Any, ...]],
        source: str,
        block_names: Sequence[str],
        parameter_names: Sequence[str],
        needs_loss: bool,
        needs_grad: bool,
        backend: str,
    ) -> None:
        self._fn = fn
        self.source = source
        self.block_names = tuple(block_names)
        self.parameter_names = tuple(parameter_names)
        self.needs_loss = needs_loss
        self.needs_grad = needs_grad
        self.backend = backend

    def __call__(
        self,
        blocks: dict[str, Any],
        F: Any = None,
        g: Any = None,
        t: Any = 0.0,
        **params: Any,
    ) -> tuple[Any, ...]:
        missing = [b for b in self.block_names if b not in blocks]
        if missing:
            raise KeyError(f"missing block(s) {missing}; the function needs {self.block_names}")
        if self.needs_loss and F is None:
            raise ValueError("this expression needs the loss value F")
        if self.needs_grad and g is None:
            raise ValueError("this expression needs the gradient g")
        unknown = set(params) - set(self.parameter_names)
        if unknown:
            raise TypeError(
                f"unknown parameter(s) {sorted(unknown)}; expected {list(self.parameter_names)}"
            )
        absent = [p for p in self.parameter_names if p not in params]
        if absent:
            raise TypeError(f"missing value(s) for parameter(s) {absent}")
        ref = g if g is not None else next(iter(blocks.values()), None)
        return self._fn(
            *(blocks[b] for b in self.block_names),
            F,
            g,
            t,
            ref,
            *(params[p] for p in self.parameter_names),
        )


_counter = itertools.count()


def exec_module(source: str, name: str, filename: str) -> types.ModuleType:
    """The module ``name`` that the generated ``source`` defines, compiled under ``filename``
    (what tracebacks and ``module.__file__`` show): how odeopt loads the files it writes."""
    module = types.ModuleType(name)
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own code
    return module


def _hoist_scalars(
    expr: sp.Expr, coordinate_names: set[str], hoisted: list[tuple[sp.Symbol, sp.Expr]]
) -> sp.Expr:
    """Collect the per-row factors of each product into one temporary, so that
    −γ/m·p is computed as (−γ/m)·p: one (batch, n) operation instead of three."""
    if not expr.args:
        return expr
    args = [_hoist_scalars(a, coordinate_names, hoisted) for a in expr.args]
    if isinstance(expr, sp.Mul):
        scalar = [a for a in args if not {s.name for s in a.free_symbols} & coordinate_names]
        if len(scalar) >= 2 and len(scalar) < len(args):
            sym = sp.Symbol(f"s{len(hoisted)}_")
            hoisted.append((sym, sp.Mul(*scalar)))
            rest = [a for a in args if a not in scalar]
            return sp.Mul(sym, *rest)
    return expr.func(*args)


def compile_expressions(
    coordinate_exprs: Sequence[sp.Expr],
    scalar_exprs: Sequence[sp.Expr],
    block_order: Sequence[Block],
    parameter_order: Sequence[sp.Symbol],
    backend: str = "numpy",
) -> Compiled:
    """Generate and compile ``f(blocks…, F, g, t, ref, params…)`` for a batch.

    ``coordinate_exprs`` are per-coordinate (results of shape (batch, n));
    ``scalar_exprs`` are global (results of shape (batch,)). Reductions occurring anywhere are
    computed once per call, per batch row.
    """
    exprs = [sp.sympify(e) for e in (*coordinate_exprs, *scalar_exprs)]
    symbols: set[sp.Symbol] = set()
    for e in exprs:
        symbols |= e.free_symbols
    reductions = sorted((s for s in symbols if isinstance(s, Reduction)), key=sp.default_sort_key)
    for r in reductions:
        symbols |= r.summand.free_symbols

    rename: dict[sp.Symbol, sp.Symbol] = {}
    block_args = []
    for i, b in enumerate(block_order):
        rename[b] = sp.Symbol(f"b{i}_{b.name}")
        block_args.append(rename[b].name)
    param_args = []
    for i, p in enumerate(parameter_order):
        rename[p] = sp.Symbol(f"p{i}")
        param_args.append(f"p{i}")
    needs_loss = needs_grad = False
    for s in symbols:
        if s in rename:  # passed explicitly (a program passes g₁, F₁, … as blocks/parameters)
            continue
        elif isinstance(s, Loss):
            rename[s] = sp.Symbol("F_")
            needs_loss = True
        elif isinstance(s, Gradient):
            rename[s] = sp.Symbol("g_")
            needs_grad = True
        elif isinstance(s, Time):
            rename[s] = sp.Symbol("t_")
        elif isinstance(s, Reduction):
            continue
        else:
            raise ValueError(f"symbol {s} is neither a block, a global nor a declared parameter")
    for i, r in enumerate(reductions):
        rename[r] = sp.Symbol(f"r{i}")

    printer = _Printer({"fully_qualified_modules": True, "allow_unknown_functions": False})

    def show(e: sp.Expr) -> str:
        return printer.doprint(sp.sympify(e).xreplace(rename))

    lines = [f"def _f({', '.join([*block_args, 'F_', 'g_', 't_', 'ref_', *param_args])}):"]
    lines.append("    F_ = None if F_ is None else numpy.column(F_, ref_)")
    lines.append("    t_ = numpy.column(t_, ref_)")
    for i, p in enumerate(parameter_order):
        lines.append(f"    p{i} = numpy.column(p{i}, ref_)  # {p}")
    for r in reductions:
        lines.append(f"    {rename[r].name} = numpy.rsum({show(r.summand)})  # {r.name}")
    # common subexpressions once (BBI's E = √(V(V + |π|²)) appears in both blocks)
    shared, reduced = sp.cse(
        [sp.sympify(e).xreplace(rename) for e in (*coordinate_exprs, *scalar_exprs)],
        symbols=(sp.Symbol(f"x{i}_") for i in itertools.count()),
    )
    coordinate_names = {rename[b].name for b in block_order} | {"g_"}
    hoisted: list[tuple[sp.Symbol, sp.Expr]] = []
    reduced = [_hoist_scalars(e, coordinate_names, hoisted) for e in reduced]
    for sym, e in [*shared, *hoisted]:
        lines.append(f"    {sym.name} = {printer.doprint(e)}")
    outs = []
    for e in reduced[: len(coordinate_exprs)]:
        outs.append(f"numpy.like({printer.doprint(e)}, ref_)")
    for e in reduced[len(coordinate_exprs) :]:
        outs.append(f"numpy.like({printer.doprint(e)}, ref_[..., :1])[..., 0]")
    lines.append(f"    return ({', '.join(outs)}{',' if len(outs) == 1 else ''})")
    source = "\n".join(lines) + "\n"
    ns: dict[str, Any] = {"numpy": namespace(backend), "functools": functools}
    filename = f"<odeopt-generated-{next(_counter)}>"
    exec(compile(source, filename, "exec"), ns)  # noqa: S102 - our own generated code
    return Compiled(
        ns["_f"],
        source,
        [b.name for b in block_order],
        [p.name for p in parameter_order],
        needs_loss,
        needs_grad,
        backend,
    )


def compile_explicit(
    outputs: Sequence[Sequence[sp.Expr] | sp.Expr],
    block_components: Sequence[tuple[str, Sequence[sp.Symbol]]],
    parameter_order: Sequence[sp.Symbol],
    time: sp.Symbol,
    backend: str = "numpy",
) -> Callable[..., tuple[Any, ...]]:
    """Compile expressions of concrete components: ``f(block arrays…, t, params…)``.

    Each block array has shape (batch, d); component j of block b is column j. An output that
    is a sequence of d expressions gives an array (batch, d); a single expression gives (batch,).
    """
    rename: dict[sp.Symbol, sp.Symbol] = {time: sp.Symbol("t_")}
    lines_unpack = []
    args = []
    for bi, (name, comps) in enumerate(block_components):
        arg = f"b{bi}_{name}"
        args.append(arg)
        for j, c in enumerate(comps):
            rename[c] = sp.Symbol(f"c{bi}_{j}")
            lines_unpack.append(f"    c{bi}_{j} = {arg}[..., {j}]")
    for i, p in enumerate(parameter_order):
        rename[p] = sp.Symbol(f"p{i}")
    printer = _Printer({"fully_qualified_modules": True, "allow_unknown_functions": False})

    def show(e: sp.Expr) -> str:
        e = sp.sympify(e)
        unknown = e.free_symbols - set(rename)
        if unknown:
            raise ValueError(f"symbol(s) {sorted(map(str, unknown))} are not declared")
        return printer.doprint(e.xreplace(rename))

    params = [f"p{i}" for i in range(len(parameter_order))]
    lines = [f"def _f({', '.join([*args, 't_', *params])}):"]
    lines.append(f"    ref_ = {args[0]}[..., 0]")
    for arg in ["t_", *params]:
        lines.append(f"    {arg} = numpy.row({arg}, ref_)")
    lines += lines_unpack
    outs = []
    for out in outputs:
        if isinstance(out, (list, tuple, sp.MatrixBase)):
            outs.append(f"numpy.stack([{', '.join(show(e) for e in out)}], ref_)")
        else:
            outs.append(f"numpy.like({show(out)}, ref_)")
    lines.append(f"    return ({', '.join(outs)}{',' if len(outs) == 1 else ''})")
    source = "\n".join(lines) + "\n"
    ns: dict[str, Any] = {"numpy": namespace(backend), "functools": functools}
    exec(compile(source, f"<odeopt-generated-{next(_counter)}>", "exec"), ns)  # noqa: S102
    fn = ns["_f"]
    fn.source = source
    return fn
