"""Printing for ``backend="numba"``: sympy expressions of the update program and of the
objective as scalar numba code, one statement per coordinate.

- :class:`_Printer`: ``math.`` functions, constants as ``DT(·)`` (the state's dtype, so
  float32 stays float32), small integer powers as products;
- :class:`_Names`: Python names per coordinate (θᵢ → ``b0_i``, gᵢ → ``g1_i``), with factors
  in the parameters and h hoisted into invariants computed once per block;
- :func:`_objective_code`: F and ∇F = (∂F/∂xⱼ)ⱼ by common-subexpression elimination;
- :func:`_crossed`: the zero-crossing test of an event in its direction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sympy as sp
from sympy.core.parameters import distribute
from sympy.printing.pycode import PythonCodePrinter

from ...symbolic.language import Block, Gradient, Loss, Time

__all__ = ["LANES", "refuse"]

#: trajectories per block of a kernel: each coordinate of a block is one array of this length
LANES = 256
_OTHERS = "backend='numpy' or backend='torch'"


def refuse(why: str) -> ValueError:
    """The error for what the numba backend does not run, naming the backends that do."""
    return ValueError(f"backend='numba' cannot run this: {why}; use {_OTHERS}")


class _Printer(PythonCodePrinter):
    """Scalar Python for numba: ``math.`` functions, constants as ``DT(·)`` (the state's
    dtype, so float32 stays float32) and small integer powers as products."""

    def _print_Integer(self, expr: sp.Integer) -> str:
        return f"DT({int(expr)}.0)"

    def _print_Rational(self, expr: sp.Rational) -> str:
        return f"(DT({int(expr.p)}.0)/DT({int(expr.q)}.0))"

    def _print_Float(self, expr: sp.Float) -> str:
        return f"DT({float(expr)!r})"

    def _print_known_const(self, expr: sp.Expr) -> str:  # π, e, …: in the state's dtype
        return f"DT({float(expr)!r})"

    _print_Pi = _print_Exp1 = _print_EulerGamma = _print_GoldenRatio = _print_known_const

    def _module_format(self, fqn: str, register: bool = True) -> str:
        """``math.exp`` and the other functions of :mod:`math` (the kernel's namespace
        holds ``math``), other names as the Python printer writes them."""
        return fqn if fqn.startswith("math.") else super()._module_format(fqn, register)

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        b, e = expr.args
        base = self.parenthesize(b, 1000)
        if e.is_Integer and 1 <= int(e) <= 4:
            return "(" + "*".join([base] * int(e)) + ")"
        if e.is_Integer and -4 <= int(e) <= -1:
            return "(DT(1.0)/(" + "*".join([base] * -int(e)) + "))"
        if e == sp.Rational(1, 2):
            return f"math.sqrt({self._print(b)})"
        return f"({base}**{self._print(e)})"


class _Names:
    """Python names for the symbols of the program, one per coordinate where per-coordinate;
    factors in parameters and h only become invariants ``inv_k`` computed before the loop."""

    def __init__(
        self,
        params: Mapping[sp.Symbol, str],
        h: sp.Symbol,
        h_name: str = "hh",
        prefix: str = "inv_",
        ids: dict[sp.Symbol, str] | None = None,
    ) -> None:
        self.params = dict(params)
        self.h, self.h_name, self.prefix = h, h_name, prefix
        self.ids: dict[sp.Symbol, str] = {} if ids is None else ids
        self.invariants: dict[sp.Expr, sp.Symbol] = {}

    def var(self, s: sp.Symbol) -> str:
        if s not in self.ids:
            kind = "b" if isinstance(s, Block) else "g" if isinstance(s, Gradient) else "L"
            self.ids[s] = f"{kind}{len(self.ids)}"
        return self.ids[s]

    def at(self, expr: sp.Expr, j: int, reductions: Mapping[sp.Symbol, str]) -> sp.Expr:
        """``expr`` at coordinate j: blocks and gradients become their j-th coordinate."""
        sub: dict[sp.Symbol, sp.Symbol] = {}
        for s in expr.free_symbols:
            if isinstance(s, (Block, Gradient)):
                sub[s] = sp.Symbol(f"{self.var(s)}_{j}")
            elif isinstance(s, Loss):
                sub[s] = sp.Symbol(self.var(s))
            elif isinstance(s, Time):
                sub[s] = sp.Symbol("tt")
            elif s == self.h:
                sub[s] = sp.Symbol(self.h_name)
            elif s in self.params:
                sub[s] = sp.Symbol(f"par_{self.params[s]}")
            elif s in reductions:  # a reduction, or a per-lane temporary (projection)
                sub[s] = sp.Symbol(reductions[s])
            else:
                raise refuse(f"the update program uses {s}, which it does not compile")
        return self.hoist(expr.xreplace(sub))

    def hoist(self, e: sp.Expr) -> sp.Expr:
        """``e`` with its factors and terms in parameters and h only replaced by invariants."""
        fixed = {sp.Symbol(f"par_{n}") for n in self.params.values()}
        if self.h_name == "hh":  # the step shared by all lanes (not a lane's own, "hl")
            fixed.add(sp.Symbol("hh"))

        def constant(a: sp.Expr) -> bool:
            return bool(a.free_symbols) and a.free_symbols <= fixed

        if e.is_Atom:
            return e
        if constant(e):
            return self._invariant(e)
        if isinstance(e, (sp.Mul, sp.Add)):
            inv = [a for a in e.args if constant(a)]
            rest = [self.hoist(a) for a in e.args if not constant(a)]
            if inv:
                numbers = [a for a in rest if a.is_Number]
                rest = [a for a in rest if not a.is_Number]
                whole = e.func(*inv, *numbers)
                rest.append(whole if whole.is_Symbol else self._invariant(whole))
            return e.func(*rest)
        return e.func(*(self.hoist(a) for a in e.args))

    def _invariant(self, e: sp.Expr) -> sp.Symbol:
        if e not in self.invariants:
            self.invariants[e] = sp.Symbol(f"{self.prefix}{len(self.invariants)}")
        return self.invariants[e]


def _objective_code(
    F: sp.Expr,
    xs: tuple[sp.Symbol, ...],
    prefix: str,
    theta: Sequence[str],
    out_F: str | None,
    out_g: Sequence[str],
    printer: _Printer,
    grad: bool = True,
) -> list[str]:
    """Lines computing F (when ``out_F``) and ∇F (when ``grad``: into ``out_g``) at the
    coordinates ``theta`` (CSE'd)."""
    local = [sp.Symbol(f"{prefix}x{j}") for j in range(len(xs))]
    with distribute(False):  # keep 2·(x + y² − 7) factored, as the problems' numpy code is
        exprs = ([F] if out_F else []) + ([sp.diff(F, x) for x in xs] if grad else [])
        exprs = [e.xreplace(dict(zip(xs, local, strict=True))) for e in exprs]
        reps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(f"{prefix}c"))
    lines = [f"{lv} = {tv}" for lv, tv in zip(local, theta, strict=True)]
    lines += [f"{s} = {printer.doprint(e)}" for s, e in reps]
    targets = ([out_F] if out_F else []) + (list(out_g) if grad else [])
    lines += [f"{t} = {printer.doprint(e)}" for t, e in zip(targets, reduced, strict=True)]
    return lines


def _crossed(old: str, new: str, direction: int) -> str:
    """The test that a value crossed zero from ``old`` to ``new`` in ``direction``."""
    up, down = f"(({old} < 0) & ({new} >= 0))", f"(({old} > 0) & ({new} <= 0))"
    return up if direction > 0 else down if direction < 0 else f"({up} | {down})"


def _indent(lines: Sequence[str], depth: int) -> list[str]:
    return [" " * (4 * depth) + line for line in lines]
