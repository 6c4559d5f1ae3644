"""An update rule on quadratics: the iteration matrix, its spectral radius and stability.

On F(θ) = ½θᵀAθ every gradient is linear in θ, and in the eigenbasis of A the directions
decouple: along an eigenvector with eigenvalue λ (the *curvature*), F = ½λθ² and g = λθ.
A rule whose step uses only coordinate-wise linear operations (no loss value, no norms, no
adaptive step) is then a linear map of each direction's state x = (θ, p, …):

    x_{k+1} = M(λ; h, parameters) x_k,

and it converges on every quadratic with spectrum in [μ, L] iff ρ(M(λ)) < 1 for all λ there;
the worst ρ over [μ, L] is its linear rate (|x_k| ~ ρᵏ). :func:`quadratic` derives M from the
rule's update program (each evaluation F_k, g_k := F(θ_k), ∇F(θ_k) becomes g_k = λθ_k;
:mod:`.linear_map`); the stability conditions are in :mod:`.stability`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from ..symbolic.language import Block
from .linear_map import NotLinearError as NotLinearError
from .linear_map import adaptive_controller as adaptive_controller
from .linear_map import check_real, curvature, fixed_point_drift, linear_map
from .linear_map import fixed_point_bias as fixed_point_bias
from .stability import StabilityRegion, positive_set, schur_cohn, solve_conditions

if TYPE_CHECKING:
    from ..export.rule import UpdateRule

__all__ = [
    "QuadraticRule",
    "StabilityRegion",
    "curvature",
    "quadratic",
]


@dataclass
class QuadraticRule:
    """The rule on F = ½λ|θ|² per eigen-direction: x_{k+1} = M x_k, M = :attr:`matrix`.

    ``matrix`` is a sympy Matrix in :data:`curvature` (λ), the step h and the system's
    parameter symbols; ``blocks`` the state's order; ``symbols`` maps public names (``h``,
    ``curvature``, the system's keywords such as ``friction``) to the symbols in M.
    ``bias`` is None when the minimiser at rest is a fixed point of the rule on
    F = ½λ(θ − θ*)²; otherwise (a term in θ outside the gradient, e.g. Massaroli's c|ω|²) it
    says how a step moves it, and ρ is the rate to the rule's own fixed point, not to θ*.
    """

    rule: UpdateRule
    matrix: sp.Matrix
    blocks: tuple[Block, ...]
    symbols: dict[str, sp.Symbol]
    fixed: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)
    bias: str | None = None

    def __post_init__(self) -> None:
        order = [curvature, *(s for n, s in self.symbols.items() if n != "curvature")]
        self._order = order
        k = self.matrix.shape[0]
        # entry by entry: a constant entry must not meet arrays inside one np.array([...])
        self._fns = [
            [sp.lambdify(order, self.matrix[i, j], modules="numpy") for j in range(k)]
            for i in range(k)
        ]
        self._names = {s: n for n, s in self.symbols.items()}

    def __repr__(self) -> str:
        return f"QuadraticRule({self.rule.system.name!r}, {self.rule.scheme.name!r})"

    def __str__(self) -> str:
        state = ", ".join(b.name for b in self.blocks)
        out = f"({state})_{{k+1}} = M ({state})_k,  M = {self.matrix.tolist()}"
        if self.bias:
            out += f"  [the minimiser is not a fixed point: {self.bias}]"
        return out

    def _repr_latex_(self) -> str:
        x = r"\begin{pmatrix}" + r"\\".join(sp.latex(b) for b in self.blocks) + r"\end{pmatrix}"
        return rf"${x}_{{k+1}} = {sp.latex(self.matrix)}\,{x}_k$"

    @property
    def characteristic_polynomial(self) -> sp.Expr:
        """det(zI − M) as a polynomial in the symbol z."""
        z = sp.Symbol("z")
        return sp.expand((z * sp.eye(self.matrix.shape[0]) - self.matrix).det())

    # -- values
    def _values(
        self, values: Mapping[str, Any], need: bool = True, keep: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Values by public name for M's symbols: those given (checked), then the system's
        defaults, except for the names in ``keep``; with ``need``, a symbol left without a
        value is a TypeError."""
        known = set(self.symbols)
        unknown = sorted(set(values) - known - self._system_names())
        if unknown:
            raise TypeError(
                f"no parameter(s) {unknown} in the rule on quadratics; its values are "
                f"{sorted(known)} (h: the step, curvature: λ)"
            )
        for k, v in values.items():
            check_real(k, v)
        out = {}
        defaults = self.rule.system.defaults
        for n in self.symbols:
            if n in values:
                out[n] = values[n]
            elif n not in keep and defaults.get(n) is not None:
                out[n] = defaults[n]
            elif need:
                hint = "the step, e.g. h=0.1" if n == "h" else "a value"
                raise TypeError(f"give {n}= ({hint}): M depends on it")
        return out

    def _system_names(self) -> set[str]:
        return {p.name for p in self.rule.system.parameters}

    def matrices(self, curvature: Any = 1.0, **values: Any) -> np.ndarray:
        """M evaluated with numpy broadcasting: shape (*broadcast, k, k)."""
        vals = self._values({**values, "curvature": curvature})
        args = [np.asarray(vals[self._names[s]], dtype=float) for s in self._order]
        shape = np.broadcast_shapes(*(a.shape for a in args))
        args = [np.broadcast_to(a, shape) for a in args]
        k = self.matrix.shape[0]
        out = np.empty((*shape, k, k))
        for i in range(k):
            for j in range(k):
                out[..., i, j] = np.broadcast_to(np.asarray(self._fns[i][j](*args), float), shape)
        return out

    def spectral_radius(self, curvature: Any = 1.0, **values: Any) -> Any:
        """ρ(M) = max |eigenvalue of M(λ)|, broadcast over array-valued arguments.

        ``curvature`` is λ; the step ``h`` and the system's keywords (``friction``, ...) are
        keyword arguments (the system's defaults where not given; h has none).
        """
        Ms = self.matrices(curvature, **values)
        k = Ms.shape[-1]
        if k == 1:
            rho = np.abs(Ms[..., 0, 0])
        elif k == 2:  # roots of z² − Tz + D, in complex arithmetic
            T = Ms[..., 0, 0] + Ms[..., 1, 1]
            D = Ms[..., 0, 0] * Ms[..., 1, 1] - Ms[..., 0, 1] * Ms[..., 1, 0]
            s = np.sqrt((T * T - 4 * D).astype(complex))
            rho = np.maximum(np.abs((T + s) / 2), np.abs((T - s) / 2))
        else:
            rho = np.abs(np.linalg.eigvals(Ms)).max(-1)
        return rho if np.ndim(rho) else float(rho)

    def worst_rate(self, mu: float, L: float, points: int = 2049, **values: Any) -> float:
        """max_{λ∈[μ, L]} ρ(M(λ)): a geometric grid of λ, refined around its largest local
        maxima (a finer grid, then a bounded scalar search); inf where ρ is not finite."""
        if not (0 < mu <= L and math.isfinite(L)):
            raise ValueError(f"need 0 < mu <= L < inf, got mu = {mu}, L = {L}")
        from scipy.optimize import minimize_scalar

        lam = np.unique(np.concatenate([np.geomspace(mu, L, points), [mu, L]]))
        rho = np.asarray(self.spectral_radius(lam, **values), dtype=float)
        if not np.all(np.isfinite(rho)):
            return math.inf
        best = float(rho.max())
        # refine around the largest local maxima (a peak between grid points: the λ where
        # two eigenvalues meet gives a kink that a grid can step over)
        inner = np.flatnonzero((rho[1:-1] >= rho[:-2]) & (rho[1:-1] >= rho[2:])) + 1
        for i in inner[np.argsort(rho[inner])[::-1][:6]]:
            a, b = float(lam[i - 1]), float(lam[i + 1])
            fine = np.linspace(a, b, 257)
            rf = np.asarray(self.spectral_radius(fine, **values), dtype=float)
            j = int(np.argmax(rf))
            best = max(best, float(rf[j]))
            lo, hi = float(fine[max(j - 1, 0)]), float(fine[min(j + 1, len(fine) - 1)])
            if hi > lo:
                res = minimize_scalar(
                    lambda x: -float(self.spectral_radius(x, **values)),
                    bounds=(lo, hi),
                    method="bounded",
                    options={"xatol": 1e-15 * max(hi, 1.0)},
                )
                best = max(best, -float(res.fun))
        return best

    # -- stability
    def substitution(
        self, values: Mapping[str, Any], free: Sequence[str] | str | None = None
    ) -> dict[sp.Symbol, sp.Expr]:
        """Exact values for M's symbols: those given, then the system's defaults for its
        parameters (not for h and λ) unless named in ``free`` (``free="all"``: none)."""
        known = set(self.symbols)
        if free is None:
            free = ()
        elif isinstance(free, str):
            free = tuple(known) if free == "all" else (free,)
        bad = sorted(set(free) - known)
        if bad:
            raise ValueError(f"free names {bad}, not symbols of M; M has {sorted(known)}")
        given = self._values(values, need=False, keep=free)
        return {self.symbols[n]: sp.nsimplify(v, rational=True) for n, v in given.items()}

    def stability_region(
        self, method: str = "auto", free: Sequence[str] | str | None = None, **values: Any
    ) -> StabilityRegion:
        """Where ρ(M) < 1, with the given values substituted (``curvature=`` for λ).

        For M of size ≤ 2 the Schur–Cohn conditions on det(zI − M) = z² + a₁z + a₀ are exact:
        |a₀| < 1 and |a₁| < 1 + a₀ (size 1: |M| < 1). When one symbol is left free (e.g. the
        step h, with λ and the parameters given) its stable set is solved for with sympy, and
        found numerically (a scan of ρ with bisection) where sympy cannot, or with
        ``method="numeric"``. The system's parameters not given take their defaults unless
        named in ``free`` (``free="all"`` keeps every symbol: the general condition).
        """
        if method not in ("auto", "numeric"):
            raise ValueError(f"method must be 'auto' or 'numeric', got {method!r}")
        given = dict(values)
        sub = self.substitution(given, free)
        M = self.matrix.xreplace(sub)
        conds = schur_cohn(M)
        condition = None
        if conds is not None:
            conds = [sp.simplify(c) for c in conds]
            condition = sp.And(*conds)
        free = sorted(M.free_symbols, key=lambda s: s.name)
        if len(free) != 1:
            return StabilityRegion(condition, None, None, conds is not None)
        var = free[0]
        name = self._names[var]
        if conds is not None and method == "auto":
            sset = solve_conditions(conds, var)
            if sset is not None:
                return StabilityRegion(condition, var, sset, True, name)
        if not (var.is_positive or var.is_nonnegative):  # the scan covers x > 0 only
            return StabilityRegion(condition, var, None, False, name)
        return StabilityRegion(condition, var, self._scan(var, name, given), False, name)

    def _scan(self, var: sp.Symbol, name: str, given: Mapping[str, Any]) -> sp.Set:
        """Stable values x > 0 of one variable, by a log scan and bisection of ρ = 1."""
        rest = {n: v for n, v in given.items() if n != name}
        curv = rest.pop("curvature", 1.0)

        def stable(x: np.ndarray) -> np.ndarray:
            if name == "curvature":
                return np.asarray(self.spectral_radius(x, **rest)) < 1
            return np.asarray(self.spectral_radius(curv, **{**rest, name: x})) < 1

        return positive_set(stable, closed=False)

    # -- plot
    def plot(
        self,
        y: str | None = None,
        hlam: tuple[float, float] = (0.0, 4.0),
        y_range: tuple[float, float] | None = None,
        curvature: float = 1.0,
        resolution: int = 240,
        ax: Any = None,
        **values: Any,
    ) -> Any:
        """ρ over the step hλ (x axis) and the parameter ``y`` (or alone, a curve), with the
        stable region ρ < 1 outlined; the colour is clipped at ρ = 1.2. Returns the Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4.2))
        x = np.linspace(max(hlam[0], 1e-9), hlam[1], resolution)
        title = f"{self.rule.system.name} with {self.rule.scheme.name}"
        if y is None:
            rho = self.spectral_radius(curvature, **{**values, "h": x / curvature})
            ax.plot(x, rho, label="ρ(M)")
            ax.axhline(1.0, color="k", lw=0.8, ls="--", label="ρ = 1")
            ax.fill_between(x, 0, 1, where=np.asarray(rho) < 1, alpha=0.15, label="stable")
            ax.set_ylabel("spectral radius ρ")
            ax.legend()
        else:
            if y not in self.symbols:
                raise ValueError(f"y={y!r} is not a parameter of M; M has {sorted(self.symbols)}")
            if y_range is None:
                d = self.rule.system.defaults.get(y) or 1.0
                y_range = (0.0, 4.0 * float(d))
            yy = np.linspace(max(y_range[0], 1e-9), y_range[1], resolution)
            X, Y = np.meshgrid(x, yy)
            rho = self.spectral_radius(curvature, **{**values, "h": X / curvature, y: Y})
            mesh = ax.pcolormesh(X, Y, np.minimum(rho, 1.2), shading="auto", cmap="viridis")
            plt.colorbar(mesh, ax=ax, label="spectral radius ρ (clipped at 1.2)")
            if np.any(rho < 1) and np.any(rho >= 1):
                ax.contour(X, Y, rho, levels=[1.0], colors="w", linewidths=1.5)
            ax.set_ylabel(y)
            title += ": white line ρ = 1"
        ax.set_xlabel(f"h·λ (λ = {curvature:g})")
        ax.set_title(title)
        return ax


def quadratic(rule: UpdateRule, t: Any = None, switched: bool = False) -> QuadraticRule:
    """The rule on F = ½λ|θ|² along one eigen-direction: x_{k+1} = M(λ)x_k.

    Every evaluation g_k := ∇F(θ_k) of the update program becomes λθ_k, and the new state is
    read off as a matrix. ``t`` fixes the time in time-dependent coefficients (zoo.nesterov's
    r/(t + t₀)); ``switched=True`` applies the system's switches (braking after its goal).
    ``bias`` of the result says whether the minimiser is a fixed point (see
    :class:`QuadraticRule`). The rule is analysed before its switches fire unless ``switched``.
    Raises a ValueError naming the cause when the rule is not linear on quadratics: it uses F
    (BBI, ECD), a global sum |p|² (a level set), the time (without ``t``), an adaptive step,
    an implicit solve, or nonlinear coordinate operations (Adam's √v).
    """
    M, blocks, fixed = linear_map(rule, t, switched)
    by_symbol = {p.symbol: p.name for p in rule.system.parameters}
    symbols: dict[str, sp.Symbol] = {"curvature": curvature}
    for s in sorted(M.free_symbols - {curvature}, key=lambda s: s.name):
        if s == rule.h:
            symbols["h"] = s
        elif s in by_symbol:
            symbols[by_symbol[s]] = s
        else:  # pragma: no cover - every symbol of a rule is h, λ or a parameter
            raise ValueError(f"unexpected symbol {s} in the iteration matrix")
    if "h" not in symbols:
        symbols["h"] = rule.h
    return QuadraticRule(rule, M, blocks, symbols, fixed, fixed_point_drift(rule, fixed))
