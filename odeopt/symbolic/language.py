"""The symbols of odeopt's language.

An optimizer acts on θ ∈ Rⁿ with n unknown, coordinate by coordinate, coupled only through a
few global scalars. So the language has two kinds of symbols:

* **coordinate symbols** stand for *one* coordinate i of an n-dimensional quantity:
  a :class:`Block` (state variable θᵢ, pᵢ, sᵢ, …), the :class:`Gradient` gᵢ = ∂F/∂θᵢ, or a
  :class:`LossDerivative` such as the Hessian–vector product (∇²F·v)ᵢ (``F.hvp(v)``), which
  modified equations need;
* **global symbols** are scalars shared by all coordinates: the :class:`Loss` F(θ), a
  :class:`Reduction` Σᵢ φ(xᵢ) (|p|² = Σᵢ pᵢ², ⟨a, b⟩ = Σᵢ aᵢbᵢ, …), the time :data:`t`, and
  named parameters (plain sympy symbols with assumptions, see :func:`parameters`).

Derivatives of globals with respect to a coordinate follow from their definitions:
∂F/∂θᵢ = gᵢ and ∂/∂xᵢ Σⱼ φ(xⱼ) = φ'(xᵢ); :func:`coordinate_derivative` implements this
chain rule, which is what lets H = √(V(V + |π|²)) differentiate exactly.
"""

from __future__ import annotations

import itertools
from typing import Any

import sympy as sp

__all__ = [
    "Block",
    "Gradient",
    "Loss",
    "LossDerivative",
    "Reduction",
    "Time",
    "blocks",
    "coordinate_derivative",
    "coordinate_symbols",
    "global_symbols",
    "inner",
    "is_coordinate_free",
    "loss",
    "parameters",
    "sqnorm",
    "t",
    "total",
]


class _Named(sp.Symbol):
    """A Symbol printed as a plain symbol (sympy's printers dispatch on the class name, and
    names such as ``Gradient`` collide with sympy.vector's)."""

    def _latex(self, printer: Any) -> str:
        return printer._print_Symbol(self)

    def _pretty(self, printer: Any) -> Any:
        return printer._print_Symbol(self)

    def _sympystr(self, printer: Any) -> str:
        return self.name


class Block(_Named):
    """An n-dimensional state variable; the symbol stands for its coordinate i (real)."""

    def __new__(cls, name: str) -> Block:
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"a block name must be a Python identifier, got {name!r}")
        return super().__new__(cls, name, real=True)

    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (self.name,), {}


class Gradient(_Named):
    """gᵢ = ∂F/∂θᵢ, the gradient of the loss with respect to block θ, coordinate i."""

    block: Block

    def __new__(cls, block: Block, name: str = "g") -> Gradient:
        obj = sp.Symbol.__xnew__(cls, name, real=True)
        obj.block = block
        return obj

    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (self.block, self.name), {}

    def _hashable_content(self) -> tuple[Any, ...]:
        return super()._hashable_content() + (self.block,)


class Loss(_Named):
    """F(θ), the objective, a global scalar; ∂F/∂θᵢ = gᵢ (:attr:`grad`)."""

    block: Block
    grad: Gradient

    def __new__(cls, block: Block, name: str = "F", grad_name: str = "g") -> Loss:
        if not isinstance(block, Block):
            raise TypeError(f"loss() takes the Block it depends on, got {block!r}")
        obj = sp.Symbol.__xnew__(cls, name, real=True)
        obj.block = block
        obj.grad = Gradient(block, grad_name)
        return obj

    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (self.block, self.name, self.grad.name), {}

    def _hashable_content(self) -> tuple[Any, ...]:
        return super()._hashable_content() + (self.block, self.grad.name)

    def derivative(self, *vectors: Any) -> sp.Expr:
        """(∇^{k+1}F(θ)[v₁, …, v_k])ᵢ for k ≥ 1 per-coordinate vectors vⱼ, as an expression.

        The contraction is multilinear and symmetric, so it is written out: each vⱼ is split
        into Σ c·φ (c coordinate-free: parameters, the loss, reductions, time; φ the
        per-coordinate rest) and the result is Σ (Πc)·D[φ₁, …, φ_k] with one
        :class:`LossDerivative` symbol per sorted tuple of parts. ``F.derivative(v)`` is
        :meth:`hvp`; a zero vector gives 0.
        """
        if not vectors:
            raise TypeError("derivative() takes at least one vector: F.derivative(v) = ∇²F·v")
        parts = [_linear_parts(sp.sympify(v), f"vector {j + 1}") for j, v in enumerate(vectors)]
        out = sp.Integer(0)
        for combo in itertools.product(*parts):
            coeff = sp.Mul(*(c for c, _ in combo))
            phis = tuple(sorted((phi for _, phi in combo), key=sp.default_sort_key))
            out += coeff * LossDerivative(self, phis)
        return out

    def hvp(self, v: Any) -> sp.Expr:
        """(∇²F(θ)·v)ᵢ, the Hessian–vector product, for a per-coordinate expression v: linear
        in v, so ``F.hvp(p/m - g)`` = (1/m)·∇²F·p − ∇²F·g (see :meth:`derivative`)."""
        return self.derivative(v)


class Time(_Named):
    """The time t, a global scalar."""

    def __new__(cls, name: str = "t") -> Time:
        return super().__new__(cls, name, real=True, nonnegative=True)


t = Time()


def _coordinate_atoms(expr: sp.Basic) -> set[sp.Symbol]:
    return {s for s in expr.free_symbols if isinstance(s, (Block, Gradient, LossDerivative))}


def _linear_parts(v: sp.Expr, what: str) -> list[tuple[sp.Expr, sp.Expr]]:
    """v = Σ c·φ with c coordinate-free and φ the per-coordinate part of each term (terms with
    the same φ merged); a coordinate-free v (a constant vector) is refused."""
    if not isinstance(v, sp.Expr):
        raise TypeError(f"{what} must be a per-coordinate expression, got {v!r}")
    v = sp.expand(v)
    if v == 0:
        return []
    coords = sorted(_coordinate_atoms(v), key=sp.default_sort_key)
    groups: dict[sp.Expr, sp.Expr] = {}
    for term in sp.Add.make_args(v):
        c, phi = term.as_independent(*coords, as_Add=False) if coords else (term, sp.Integer(1))
        if phi == 1:
            raise TypeError(
                f"{what} must be a per-coordinate expression (of blocks, the gradient and "
                f"Hessian–vector products); its term {term} has no coordinate symbol"
            )
        groups[phi] = groups.get(phi, sp.Integer(0)) + c
    return [(c, phi) for phi, c in groups.items() if c != 0]


class LossDerivative(_Named):
    """(∇^{k+1}F(θ)[v₁, …, v_k])ᵢ: a derivative of the loss contracted with k per-coordinate
    vectors, coordinate i — a coordinate symbol. k = 1 is the Hessian–vector product
    (∇²F(θ)·v)ᵢ, printed ``∇²F·v``; its derivative along a direction w is
    ∇³F[v, w_θ] + ∇²F·(v′w), which is how modified equations (odeopt.analysis) use it.

    Build it with ``F.hvp(v)`` or ``F.derivative(v, w)`` (multilinear: coefficients free of
    coordinates are pulled out, so the symbol holds the per-coordinate parts only). Its value
    comes from the problem (``Problem.hvp``, ``Problem.derivative``) at run time, so it is not
    part of an exported optimizer.
    """

    loss: Loss
    vectors: tuple[sp.Expr, ...]

    def __new__(cls, loss: Loss, vectors: Any, name: str | None = None) -> LossDerivative:
        if not isinstance(loss, Loss):
            raise TypeError(f"a loss derivative needs the Loss, got {loss!r}")
        vectors = tuple(sp.sympify(v) for v in vectors)
        if not vectors:
            raise TypeError("a loss derivative needs at least one vector (∇²F·v)")
        for j, v in enumerate(vectors):
            if not _coordinate_atoms(v):
                raise TypeError(
                    f"vector {j + 1} of a loss derivative must be a per-coordinate expression "
                    f"(of blocks, the gradient and Hessian–vector products), got {v}"
                )
        if name is None:
            shown = [
                str(v) if v.is_Symbol or v.is_Pow or v.is_Function else f"({v})" for v in vectors
            ]
            if len(vectors) == 1:
                name = f"∇²{loss.name}·{shown[0]}"
            else:
                name = f"∇^{len(vectors) + 1}{loss.name}[{', '.join(map(str, vectors))}]"
        obj = sp.Symbol.__xnew__(cls, name, real=True)
        obj.loss = loss
        obj.vectors = vectors
        return obj

    @property
    def order(self) -> int:
        """k + 1, the order of the derivative of F (2: the Hessian)."""
        return len(self.vectors) + 1

    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (self.loss, self.vectors, self.name), {}

    def _hashable_content(self) -> tuple[Any, ...]:
        return super()._hashable_content() + (self.loss, self.vectors)

    def _latex(self, printer: Any) -> str:
        F = printer._print(self.loss)
        vs = [printer._print(v) for v in self.vectors]
        if len(vs) == 1:
            v = vs[0] if self.vectors[0].is_Symbol else rf"\left({vs[0]}\right)"
            return rf"\left(\nabla^{{2}} {F}\, {v}\right)"
        return rf"\nabla^{{{self.order}}} {F}\left[{', '.join(vs)}\right]"


class Reduction(_Named):
    """A global scalar Σᵢ φ(xᵢ): the sum over coordinates of a per-coordinate summand φ.

    φ is an expression of coordinate symbols (blocks, the gradient) and parameters; the loss
    and time stay outside (c(F, t)·Σφ), which keeps the chain rule exact. The reduction is
    declared nonnegative when φ is.
    """

    summand: sp.Expr

    def __new__(cls, summand: Any, name: str | None = None) -> Reduction:
        summand = sp.sympify(summand)
        if not _coordinate_atoms(summand):
            raise TypeError(
                f"a reduction sums a per-coordinate expression, but {summand} contains no "
                "block or gradient symbol"
            )
        if any(isinstance(s, Reduction) for s in summand.free_symbols):
            raise TypeError(f"a reduction's summand may not contain another reduction: {summand}")
        outer = sorted(s.name for s in summand.free_symbols if isinstance(s, (Loss, Time)))
        if outer:
            raise TypeError(
                f"a reduction's summand may contain blocks, the gradient and parameters, not "
                f"the global(s) {', '.join(outer)}: write c·Σφ for a coordinate-free factor c, "
                f"got {summand}"
            )
        name = name or f"Σ({summand})"
        assumptions: dict[str, bool] = {"real": True}
        if summand.is_nonnegative:
            assumptions["nonnegative"] = True
        obj = sp.Symbol.__xnew__(cls, name, **assumptions)
        obj.summand = summand
        return obj

    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (self.summand, self.name), {}

    def _hashable_content(self) -> tuple[Any, ...]:
        return super()._hashable_content() + (self.summand,)

    def _latex(self, printer: Any) -> str:
        s = self.summand
        if s.is_Pow and s.exp == 2 and isinstance(s.base, (Block, Gradient)):
            return rf"\left\|{printer._print(s.base)}\right\|^{{2}}"
        if s.is_Mul and len(s.args) == 2 and all(isinstance(a, (Block, Gradient)) for a in s.args):
            a, b = s.args
            return rf"\left\langle {printer._print(a)}, {printer._print(b)}\right\rangle"
        return rf"\sum_i \left({printer._print(s)}\right)_i"

    @property
    def depends_on_gradient(self) -> bool:
        return any(isinstance(s, Gradient) for s in self.summand.free_symbols)


def blocks(names: str) -> tuple[Block, ...] | Block:
    """``theta, p = blocks("theta p")``: n-dimensional state variables (one coordinate each).

    Names are separated by spaces or commas; at least one is needed.
    """
    if not isinstance(names, str):
        raise TypeError(f'blocks() takes a string of names, e.g. blocks("theta p"), got {names!r}')
    split = names.replace(",", " ").split()
    if not split:
        raise ValueError(f'blocks() needs at least one name, e.g. blocks("theta p"), got {names!r}')
    made = tuple(Block(n) for n in split)
    return made[0] if len(made) == 1 else made


def parameters(names: str, **assumptions: bool) -> tuple[sp.Symbol, ...] | sp.Symbol:
    """``m, gamma = parameters("m gamma", positive=True)``: named scalars with assumptions.

    Parameters are real by default; pass ``positive=True`` (or ``nonnegative=True``) where
    physical, so that validation and the energy verdict can use the sign.
    """
    if not isinstance(names, str):
        raise TypeError(
            f'parameters() takes a string of names, e.g. parameters("m gamma"), got {names!r}'
        )
    if not names.replace(",", " ").split():
        raise ValueError(f"parameters() needs at least one name, got {names!r}")
    for n in names.replace(",", " ").split():
        if not n.isidentifier():
            raise ValueError(f"a parameter name must be a Python identifier, got {n!r}")
    assumptions.setdefault("real", True)
    made = sp.symbols(names, **assumptions)
    return made


def loss(block: Block, name: str = "F", grad_name: str = "g") -> Loss:
    """``F = loss(theta)``: the objective F(θ) as a global; ``F.grad`` is gᵢ = ∂F/∂θᵢ."""
    return Loss(block, name, grad_name)


def sqnorm(x: sp.Expr) -> Reduction:
    """|x|² = Σᵢ xᵢ²."""
    x = sp.sympify(x)
    name = f"|{x}|^2" if isinstance(x, (Block, Gradient)) else None
    return Reduction(x**2, name)


def inner(a: sp.Expr, b: sp.Expr) -> Reduction:
    """⟨a, b⟩ = Σᵢ aᵢbᵢ."""
    a, b = sp.sympify(a), sp.sympify(b)
    if isinstance(a, (Block, Gradient)) and isinstance(b, (Block, Gradient)):
        a, b = sorted((a, b), key=lambda s: s.name)
        return Reduction(a * b, f"<{a},{b}>")
    return Reduction(a * b)


def total(summand: sp.Expr) -> Reduction:
    """Σᵢ φᵢ for a per-coordinate expression φ."""
    return Reduction(summand)


def coordinate_symbols(expr: sp.Basic) -> set[sp.Symbol]:
    """The coordinate symbols (blocks, gradients) that occur in ``expr`` outside reductions."""
    return _coordinate_atoms(expr)


def global_symbols(expr: sp.Basic) -> set[sp.Symbol]:
    """The global symbols (loss, reductions, time) in ``expr``."""
    return {s for s in expr.free_symbols if isinstance(s, (Loss, Reduction, Time))}


def is_coordinate_free(expr: sp.Basic) -> bool:
    return not _coordinate_atoms(expr)


def coordinate_derivative(expr: sp.Expr, x: Block) -> sp.Expr:
    """∂expr/∂xᵢ for a block x, by the chain rule through the globals.

    For a global-only expression E(F, R₁, R₂, …, xᵢ):
        ∂E/∂xᵢ = ∂E/∂xᵢ|explicit + ∂E/∂F · ∂F/∂xᵢ + Σₖ ∂E/∂Rₖ · ∂φₖ/∂x (xᵢ),
    with ∂F/∂θᵢ = gᵢ (and 0 for other blocks). A reduction whose summand contains the gradient
    would need the Hessian; that is refused with a TypeError.
    """
    result = sp.diff(expr, x)
    for s in global_symbols(expr):
        if isinstance(s, Loss):
            if s.block == x:
                result += sp.diff(expr, s) * s.grad
        elif isinstance(s, Reduction):
            inner_d = sp.diff(s.summand, x)
            if inner_d != 0:
                result += sp.diff(expr, s) * inner_d
            if s.depends_on_gradient and x in {
                sym.block for sym in s.summand.free_symbols if isinstance(sym, Gradient)
            }:
                raise TypeError(
                    f"the derivative of {s} with respect to {x} needs the Hessian of the loss "
                    "(the reduction contains the gradient); odeopt does not support that in H"
                )
    return result
