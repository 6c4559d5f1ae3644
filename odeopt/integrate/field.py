"""The numeric field: a system's compiled vector field fed by an objective, batched.

This is the :class:`~odeopt.schemes.base.Field` the schemes step on numpy arrays or torch
tensors. Values are (batch, n) per block; globals (energies, sums) are (batch, 1) so that they
broadcast against the coordinates; the step h and the time t are scalars or (batch, 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from ..arrays import arrays
from ..symbolic.codegen import Compiled, compile_expressions
from ..symbolic.language import Block, LossDerivative, Reduction

if TYPE_CHECKING:
    from ..symbolic.system import PortHamiltonian

__all__ = ["NumericField"]

_H = sp.Symbol("h_step_")  # the step size inside fused sub-steps

State = dict[str, Any]


def _same_time(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if np.ndim(a) == 0 and np.ndim(b) == 0:
        return float(a) == float(b)
    return False


class _Cache:
    """F and ∇F at the last few θ arrays, matched by identity (arrays are never mutated)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.items: list[tuple[Any, Any, Any]] = []

    def get(self, theta: Any) -> tuple[Any, Any] | None:
        for th, F, g in self.items:
            if th is theta or (
                isinstance(th, tuple)
                and isinstance(theta, tuple)
                and th[0] is theta[0]
                and _same_time(th[1], theta[1])
            ):
                return F, g
        return None

    def put(self, theta: Any, F: Any, g: Any) -> None:
        self.items.insert(0, (theta, F, g))
        del self.items[self.size :]


def _replace_deep(expr: sp.Expr, mapping: Mapping[sp.Symbol, sp.Symbol]) -> sp.Expr:
    """expr with ``mapping`` applied, also inside the summands of its reductions."""
    expr = sp.sympify(expr)
    rsub = {}
    for r in expr.free_symbols:
        if isinstance(r, Reduction) and r.summand.free_symbols & set(mapping):
            rsub[r] = Reduction(r.summand.xreplace(mapping), r.name)
    return expr.xreplace({**mapping, **rsub})


class NumericField:
    """f(x, t) = (J − R)∇H + G u of ``system`` on arrays, with F and ∇F from ``objective``.

    ``params`` maps the system's parameter keywords to scalars or per-trajectory arrays
    (batch,). ``objective.value_and_grad(theta)`` returns F (batch,) and ∇F (batch, n); each
    call (and each ``hvp``/``derivative`` call below) is counted in :attr:`evaluations`.

    A field with loss derivatives (a modified equation's ∇²F·v, ∇³F[v, w]:
    ``system.derivative_symbols``, inner ones first) computes each where a compiled function
    needs it: its vectors v from their own compiled expressions, then
    ``objective.hvp(θ, v)`` (``objective.derivative(θ, v, w, …)`` for higher ones; with the
    time t for a time-dependent objective), passed to the field as an extra coordinate array.
    """

    symbolic = False

    def __init__(
        self,
        system: PortHamiltonian,
        objective: Any,
        params: Mapping[str, Any],
        backend: str = "numpy",
        shared: dict[Any, Compiled] | None = None,
    ) -> None:
        self.system = system
        self.objective = objective
        self.backend = backend
        names = [b.name for b in system.all_blocks]
        self.position = (system.loss.block.name,) if system.loss else (system.blocks[0].name,)
        self.momentum = tuple(n for n in names if n not in self.position)
        self.energy_blocks = tuple(b.name for b in system.blocks)
        self._symbols = {p.name: p.symbol.name for p in system.parameters}
        self.params = params
        self._compiled: dict[Any, Compiled] = {} if shared is None else shared
        self._cache = _Cache()
        self._pcache = _Cache(2)
        self._count = [0, 0]  # calls, points; shared with subsets
        # loss derivatives (∇²F·v, …) of a modified equation: safe names for the generated code
        derivs: Sequence[LossDerivative] = getattr(system, "derivative_symbols", ())
        self._dsafe: dict[sp.Symbol, sp.Symbol] = {
            s: Block(f"lossderiv{i}_") for i, s in enumerate(derivs)
        }
        self._dsym = {safe.name: s for s, safe in self._dsafe.items()}
        self._dindex = {safe.name: i for i, safe in enumerate(self._dsafe.values())}
        metric = system.metric
        self._metric = (
            metric if metric is not None and getattr(metric, "applies_to_gradient", True) else None
        )
        self.arrays = arrays(backend)
        self.xp: Any = self.arrays.module

    # -- helpers
    def _fn(
        self,
        key: Any,
        coordinate: Sequence[sp.Expr],
        scalar: Sequence[sp.Expr] = (),
        extra: Sequence[Block] = (),
        extra_params: Sequence[sp.Symbol] = (),
    ) -> Compiled:
        if key not in self._compiled:
            if self._dsafe:  # loss derivatives become extra coordinate arrays
                coordinate = [_replace_deep(e, self._dsafe) for e in coordinate]
                scalar = [_replace_deep(e, self._dsafe) for e in scalar]
                used: set[sp.Symbol] = set()
                for e in (*coordinate, *scalar):
                    for s in e.free_symbols:
                        used.add(s)
                        if isinstance(s, Reduction):
                            used |= s.summand.free_symbols
                extra = [*extra, *(b for b in self._dsafe.values() if b in used)]
            self._compiled[key] = compile_expressions(
                coordinate,
                scalar,
                [*self.system.all_blocks, *extra],
                [*(p.symbol for p in self.system.parameters), *extra_params],
                self.backend,
            )
        return self._compiled[key]

    def loss_and_grad(self, theta: Any, t: Any = None) -> tuple[Any, Any]:
        """F(θ), ∇F(θ), from the cache when θ is the same array as a recent call.

        A time-dependent objective (``objective.time_dependent``, e.g. streamed data) is
        called as ``value_and_grad(theta, t)`` and cached by θ and t."""
        timed = getattr(self.objective, "time_dependent", False)
        key = (theta, t) if timed else theta
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if timed:
            if t is None:
                raise ValueError("a time-dependent objective needs the time t")
            F, g = self.objective.value_and_grad(theta, t)
        else:
            F, g = self.objective.value_and_grad(theta)
        self._count[0] += 1
        self._count[1] += theta.shape[0]
        self._cache.put(key, F, g)
        return F, g

    @property
    def params(self) -> dict[str, Any]:
        """Parameter values by the system's keywords (scalars or per-trajectory arrays)."""
        return self._params

    @params.setter
    def params(self, values: Mapping[str, Any]) -> None:
        ls = self.system.level_set
        if ls is not None and values.get(ls.spec.symbol) is None and values:
            raise ValueError(
                f"{self.system.name} stores its energy: give {ls.spec.symbol} (e.g. H(x₀), "
                "what integrate() uses by default)"
            )
        self._params = dict(values)
        self._by_symbol = {self._symbols[k]: v for k, v in self._params.items()}

    def _preconditioned(self, theta: Any, g: Any, t: Any = None) -> Any:
        """P(θ)·∇F of the system's metric, cached for the same θ array (and time, for a
        time-dependent objective)."""
        key = (theta, t) if getattr(self.objective, "time_dependent", False) else theta
        hit = self._pcache.get(key)
        if hit is not None:
            return hit[1]
        Pg = self._metric.apply(self.objective, theta, g)
        self._pcache.put(key, None, Pg)
        return Pg

    def _call(
        self,
        fn: Compiled,
        x: State,
        t: Any,
        extra: Mapping[str, Any] | None = None,
        h: Any = None,
        precondition: bool = False,
    ) -> Any:
        F = g = None
        if fn.needs_loss or fn.needs_grad:
            F, g = self.loss_and_grad(x[self.position[0]], t)
            if precondition and self._metric is not None and g is not None:
                g = self._preconditioned(x[self.position[0]], g, t)
        if self._dsafe:
            needed = [b for b in fn.block_names if b in self._dsym and b not in (extra or {})]
            if needed:
                extra = dict(extra or {})
                self._derivatives(needed, x, t, extra)
        if extra:
            x = {**x, **extra}
        args = [x[b] for b in fn.block_names]
        pv = self._by_symbol if h is None else {**self._by_symbol, _H.name: h}
        ref = g if g is not None else args[0]
        # the generated function directly: names and values were checked when they were set
        return fn._fn(*args, F, g, t, ref, *(pv[n] for n in fn.parameter_names))

    def _derivatives(self, names: Sequence[str], x: State, t: Any, done: dict[str, Any]) -> None:
        """The loss derivatives ``names`` (safe names) at x into ``done``: their vectors from
        compiled expressions (inner derivatives first, through :meth:`_call`), then the
        objective's ``hvp`` / ``derivative``."""
        theta = x[self.position[0]]
        timed = getattr(self.objective, "time_dependent", False)
        for name in sorted(names, key=self._dindex.__getitem__):  # inner ones first
            if name in done:
                continue
            S = self._dsym[name]
            fn = self._fn(("loss_derivative", name), list(S.vectors))
            vectors = self._call(fn, x, t, done)
            kw = {"t": t} if timed else {}
            if len(vectors) == 1 and hasattr(self.objective, "hvp"):
                done[name] = self.objective.hvp(theta, vectors[0], **kw)
            elif hasattr(self.objective, "derivative"):
                done[name] = self.objective.derivative(theta, *vectors, **kw)
            else:
                raise TypeError(
                    f"{self.system.name} needs {S} from the problem, but "
                    f"{type(self.objective).__name__} has no hvp(theta, v) / "
                    "derivative(theta, *vectors) (odeopt.problems' problems have them)"
                )
            self._count[0] += 1
            self._count[1] += theta.shape[0]

    def subset(self, index: Any) -> NumericField:
        """The same field for the trajectories ``index`` (per-trajectory parameters sliced)."""
        sub = NumericField(self.system, self.objective, {}, self.backend, self._compiled)
        sub.params = {k: _take(v, index) for k, v in self.params.items()}
        sub._count = self._count
        return sub

    @property
    def evaluations(self) -> int:
        """How many times the objective was called (this field and its subsets)."""
        return self._count[0]

    @property
    def evaluated_points(self) -> int:
        """How many θ rows the objective evaluated, summed over calls."""
        return self._count[1]

    # -- the Field protocol
    def __call__(self, x: State, t: Any, blocks: Sequence[str] | None = None) -> State:
        names = tuple(blocks) if blocks is not None else tuple(x)
        vf = self.system.vector_field
        fn = self._fn(("field", names), [vf[b] for b in names])
        return dict(zip(names, self._call(fn, x, t, precondition=True), strict=True))

    def advance(self, x: State, t: Any, h: Any, blocks: Sequence[str]) -> State:
        """x_b + h·f_b(x, t) for the given blocks, the other blocks kept: one fused
        generated function (an Euler-type sub-step, as symplectic schemes take them)."""
        names = tuple(blocks)
        key = ("advance", names)
        if key not in self._compiled:
            vf = self.system.vector_field
            coords = [*self.system.all_blocks]
            if self.system.loss is not None:
                coords.append(self.system.loss.grad)
            # expand the top level only (x + h·Σcₖφₖ → collected by coordinate): expanding
            # inside roots would cancel catastrophically (BBI's √(V(V + |p|²)) with V ≈ 0)
            exprs = [
                sp.collect(sp.expand(self.system.block(b) + _H * vf[b], deep=False), coords)
                for b in names
            ]
            self._fn(key, exprs, extra_params=[_H])
        fn = self._compiled[key]
        out = dict(x)
        out.update(zip(names, self._call(fn, x, t, h=h, precondition=True), strict=True))
        return out

    def energy(self, x: State, t: Any) -> Any:
        fn = self._fn("energy", [], [self.system.hamiltonian])
        (H,) = self._call(fn, x, t)
        return H[:, None]

    def grad_energy(self, x: State, t: Any) -> State:
        fn = self._fn("grad_energy", list(self.system.grad_hamiltonian))
        return dict(zip(self.energy_blocks, self._call(fn, x, t), strict=True))

    def structure(self, x: State, t: Any, v: State) -> State:
        """(J − R)(x)·v per energy block (the discrete gradient's correction term)."""
        if not getattr(self.system, "port_hamiltonian", True):
            raise TypeError(
                f"{self.system.name} is not port-Hamiltonian (a modified equation), so the "
                "discrete gradient, which steps ẋ = (J − R)∇H, does not apply; use another "
                "scheme (e.g. 'rk4')"
            )
        E = self.energy_blocks
        vs = [Block(f"v_{b}_") for b in E]
        if "structure" in self._compiled:  # built once: sympy's J − R is slow to rebuild
            fn = self._compiled["structure"]
        else:
            M = self.system.J - self.system.R
            exprs = [
                sum((M[i, j] * vs[j] for j in range(len(E))), sp.Integer(0)) for i in range(len(E))
            ]
            fn = self._fn("structure", exprs, extra=vs)
        out = self._call(fn, x, t, {s.name: v[b] for s, b in zip(vs, E, strict=True)})
        return dict(zip(E, out, strict=True))

    def total(self, v: State) -> Any:
        """Σ over the coordinates of every block, per row (rows, 1)."""
        return sum(self.arrays.rsum(a) for a in v.values())

    def safe_divide(self, a: Any, b: Any) -> Any:
        """a / b, 0 where b = 0."""
        return self.arrays.safe_divide(a, b)

    @staticmethod
    def constant(value: Any) -> float:
        return float(value)

    def project(self, x: State, t: Any) -> State:
        ls = self.system.level_set
        if ls is None:
            return dict(x)
        p = ls.spec.momentum
        fn = self._fn("project", [p * ls.factor])
        out = dict(x)
        (out[p.name],) = self._call(fn, x, t)
        return out

    def unknowns(self, x: State) -> State:
        raise TypeError("a numeric field solves for the next state; it has no unknown symbols")

    def distance(self, a: State, b: State) -> Any:
        """max over blocks and coordinates of |a − b|/(1 + |b|), per row."""
        out = None
        for k in a:
            d = self.arrays.amax(abs(a[k] - b[k]) / (1 + abs(b[k])))
            out = d if out is None else self.arrays.maximum(out, d)
        return out


def _take(value: Any, index: Any) -> Any:
    if hasattr(value, "shape") and getattr(value, "ndim", 0) >= 1:
        return value[index]
    return value
