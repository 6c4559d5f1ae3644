"""Explicit mode: a system specialised to a concrete loss F(θ₁, …, θ_d).

Every block becomes d concrete components (θ → the user's coordinates, p → p1 … pd), the
gradient becomes ∂F/∂θⱼ, every reduction Σᵢ φ(xᵢ) becomes the finite sum Σⱼ φ(xⱼ). The
energy balance is then recomputed *directly* from the concrete H, by ordinary differentiation,
dH/dt = Σ_z ∂H/∂z·ż + ∂H/∂t, which checks the chain rule of the n-dimensional language.
This is the form used for exact critical points, Hessians and basins of small problems.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from ..errors import StructureError
from .codegen import compile_explicit
from .energy import EnergyBalance, decide
from .language import Block, Gradient, Loss, Reduction, Time, t
from .system import BlockMap

if TYPE_CHECKING:
    from .system import PortHamiltonian

__all__ = ["ExplicitSystem"]


class ExplicitSystem:
    """A :class:`PortHamiltonian` on a concrete loss; same names, concrete components.

    Attributes: ``hamiltonian`` (concrete H), ``loss`` (F), ``components`` (block → its d
    symbols), ``state`` (all components, block by block), ``vector_field`` (block → d-vector).
    """

    def __init__(self, system: PortHamiltonian, loss: Any, coordinates: Sequence[sp.Symbol]):
        if system.loss is None:
            raise StructureError(f"{system.name} has no loss; explicit mode needs one")
        if system.metric is not None:
            raise StructureError(
                f"{system.name} has a metric that is not coordinate-wise "
                f"({getattr(system.metric, 'description', 'metric')}); explicit mode writes the "
                "coordinate-wise field and would drop it"
            )
        coords = tuple(coordinates)
        if not coords or not all(isinstance(c, sp.Symbol) for c in coords):
            raise StructureError(f"coordinates must be sympy symbols, got {coordinates!r}")
        self.system = system
        self.loss = sp.sympify(loss)
        params = {p.symbol for p in system.parameters}
        stray = self.loss.free_symbols - set(coords) - params
        if stray:
            raise StructureError(
                f"the loss {self.loss} contains symbol(s) {sorted(map(str, stray))} that are "
                "neither coordinates nor parameters of the system"
            )
        d = len(coords)
        theta = system.loss.block
        self.components: dict[Block, tuple[sp.Symbol, ...]] = {}
        taken = {c.name for c in coords}
        for b in system.all_blocks:
            if b == theta:
                self.components[b] = coords
                continue
            comps = tuple(sp.Symbol(f"{b.name}{j + 1}", real=True) for j in range(d))
            clash = taken & {c.name for c in comps}
            if clash:
                raise StructureError(f"coordinate name(s) {sorted(clash)} clash with block {b}")
            taken |= {c.name for c in comps}
            self.components[b] = comps
        self.dim = d
        self.gradient = tuple(sp.diff(self.loss, c) for c in coords)
        self.state = tuple(c for b in system.all_blocks for c in self.components[b])
        self.hamiltonian = self.concrete(system.hamiltonian)
        self.vector_field = BlockMap(
            [
                (b, sp.Matrix([self.concrete(e, j) for j in range(d)]))
                for b, e in system.vector_field.items()
            ]
        )

    def concrete(self, expr: Any, j: int | None = None) -> sp.Expr:
        """An expression of the language at coordinate j (None: coordinate-free)."""
        expr = sp.sympify(expr)
        reps: dict[sp.Symbol, sp.Expr] = {}
        for s in expr.free_symbols:
            if isinstance(s, Reduction):
                reps[s] = sp.Add(*[self.concrete(s.summand, k) for k in range(self.dim)])
            elif isinstance(s, Loss):
                reps[s] = self.loss
            elif isinstance(s, (Block, Gradient)):
                if j is None:
                    raise StructureError(f"{expr} has coordinate symbol {s} outside a reduction")
                reps[s] = self.gradient[j] if isinstance(s, Gradient) else self.components[s][j]
        return expr.xreplace(reps)

    def energy_balance(self, samples: int = 2000, seed: int = 0) -> EnergyBalance:
        """dH/dt of the concrete system by direct differentiation, with the closed-loop
        verdict of :mod:`odeopt.symbolic.energy`."""
        from .energy import _check_samples

        _check_samples(samples, seed)
        sysm = self.system
        H = self.hamiltonian
        rate_expr = sp.Integer(0)
        # the pH field (a level-set system's field equals it on H = E)
        fields = [
            (b, [self.concrete(sysm.structural_field[b], j) for j in range(self.dim)])
            for b in sysm.blocks
        ] + [(b, list(self.vector_field[b])) for b in sysm.aux_blocks]
        for b, vec in fields:
            for z, zdot in zip(self.components[b], vec, strict=True):
                rate_expr += sp.diff(H, z) * zdot
        times = [s for s in H.free_symbols if isinstance(s, Time)]
        dHdt = sum((sp.diff(H, s) for s in times), sp.Integer(0))
        diss = sp.Integer(0)
        supply = sp.Integer(0)
        for j in range(self.dim):
            grad = sp.Matrix([sp.diff(H, self.components[b][j]) for b in sysm.blocks])
            R = sysm.R.applyfunc(lambda e, j=j: self.concrete(e, j))
            diss += -(grad.T * R * grad)[0, 0]
            if sysm.G.shape[1]:
                y_j = sysm.y.applyfunc(lambda e, j=j: self.concrete(e, j))
                u_j = sysm.u.applyfunc(lambda e, j=j: self.concrete(e, j))
                supply += (y_j.T * u_j)[0, 0]
        rate = sp.simplify(rate_expr + dHdt)
        supply = sp.simplify(supply)
        structural = (
            (True, "−∇HᵀR∇H ≤ 0 because R is positive semidefinite")
            if sysm.r_psd and not sysm.aux and dHdt == 0
            else (False, "no structural argument applies")
        )

        def search() -> tuple[int, dict[str, Any] | None]:
            return self._search(rate, samples, seed)  # the closed-loop dH/dt

        verdict, reason, noninc, example, checked = decide(
            rate, supply, structural, search, hamiltonian=H
        )
        return EnergyBalance(
            system=f"{sysm.name} (explicit)",
            hamiltonian=H,
            rate=rate,
            dissipation=sp.simplify(diss),
            supply=supply,
            auxiliary=sp.Integer(0),
            time_derivative=sp.simplify(dHdt),
            verdict=verdict,
            reason=reason,
            nonincreasing=noninc,
            counterexample=example,
            samples_checked=checked,
        )

    def _search(self, expr: sp.Expr, samples: int, seed: int) -> tuple[int, dict[str, Any] | None]:
        rng = np.random.default_rng(seed)
        params = [p.symbol for p in self.system.parameters]
        f = compile_explicit([expr], self._block_components(), params, t)
        state = {
            b.name: rng.standard_normal((samples, self.dim)) * 3.0 for b in self.system.all_blocks
        }
        values = []
        for p in self.system.parameters:
            v = np.exp(rng.uniform(-2, 2, samples))
            if not (p.symbol.is_positive or p.symbol.is_nonnegative):
                v = v * rng.choice([-1.0, 1.0], samples)
            if p.default is not None:
                v[: samples // 2] = float(p.default)
            values.append(v)
        tt = rng.uniform(0, 10, samples)
        with np.errstate(all="ignore"):
            (val,) = f(*state.values(), tt, *values)
        valid = np.isfinite(val)
        bad = valid & (val > 1e-9)
        if not bad.any():
            return int(valid.sum()), None
        i = int(np.argmax(np.where(bad, val, -np.inf)))
        example: dict[str, Any] = {"value": float(val[i])}
        example.update({k: v[i].tolist() for k, v in state.items()})
        return int(valid.sum()), example

    def _block_components(self) -> list[tuple[str, Sequence[sp.Symbol]]]:
        return [(b.name, self.components[b]) for b in self.system.all_blocks]

    def compile(self, backend: str = "numpy") -> ExplicitCompiled:
        """Batched field and H: ``field(state, t=0.0, **params)``, ``energy(state, …)``."""
        return ExplicitCompiled(self, backend)

    def __str__(self) -> str:
        lines = [f"{self.system.name} on F = {self.loss}", f"  H = {self.hamiltonian}"]
        for b, vec in self.vector_field.items():
            for z, e in zip(self.components[b], vec, strict=True):
                lines.append(f"  d{z}/dt = {e}")
        return "\n".join(lines)


class ExplicitCompiled:
    """Compiled vector field and H of an :class:`ExplicitSystem` (state: block → (batch, d))."""

    def __init__(self, explicit: ExplicitSystem, backend: str) -> None:
        self.explicit = explicit
        system = explicit.system
        params = [p.symbol for p in system.parameters]
        comps = explicit._block_components()
        self._names = [b.name for b in explicit.vector_field]
        self._field = compile_explicit(
            [list(v) for v in explicit.vector_field.values()], comps, params, t, backend
        )
        self._energy = compile_explicit([explicit.hamiltonian], comps, params, t, backend)
        self._loss = compile_explicit([explicit.loss], comps, params, t, backend)
        self._blocks = [b.name for b in system.all_blocks]
        self._keywords = [p.name for p in system.parameters]

    def _args(self, state: Mapping[str, Any], params: dict[str, Any]) -> list[Any]:
        missing = [b for b in self._blocks if b not in state]
        if missing:
            raise KeyError(f"missing block(s) {missing}")
        merged = self.explicit.system.with_parameters(**params)
        blocks = [state[b] for b in self._blocks]
        ls = self.explicit.system.level_set
        if ls is not None and merged[ls.spec.symbol] is None:  # E defaults to H of the state
            merged[ls.spec.symbol] = 1.0  # H does not use E
            E = self._energy(*blocks, 0.0, *[merged[k] for k in self._keywords])[0]
            merged[ls.spec.symbol] = E
        return blocks, [merged[k] for k in self._keywords]

    def field(self, state: Mapping[str, Any], t: Any = 0.0, **params: Any) -> dict[str, Any]:
        blocks, values = self._args(state, params)
        return dict(zip(self._names, self._field(*blocks, t, *values), strict=True))

    __call__ = field

    def energy(self, state: Mapping[str, Any], t: Any = 0.0, **params: Any) -> Any:
        blocks, values = self._args(state, params)
        return self._energy(*blocks, t, *values)[0]

    def loss(self, state: Mapping[str, Any], **params: Any) -> Any:
        blocks, values = self._args(state, params)
        return self._loss(*blocks, 0.0, *values)[0]
