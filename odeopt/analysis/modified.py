"""Modified equations (backward error analysis): the ODE a discrete rule really follows.

A one-step rule with step η, x' = Φ_η(x) = x + η d₁(x) + η² d₂(x) + …, is the exact η-flow of
no ODE in general, but it is — up to O(η^{r+2}) per step, so O(η^{r+1}) over a fixed time —
the exact η-flow of the *modified equation*

    ẋ = f̃(x) = f₀(x) + η f₁(x) + … + η^r f_r(x)        (r = ``order``).

The exact flow of f̃ is exp(η D_f̃)x = x + η f̃ + (η²/2) f̃′f̃ + …, with D_u the derivative along
the vector field u (D_u φ = φ′u); matching powers of η with Φ_η gives f_j one at a time:

    f_j = d_{j+1} − [η^{j+1}] exp(η D_{f₀ + … + η^{j−1} f_{j−1}}) x,

so f₀ = d₁ and f₁ = d₂ − ½ f₀′f₀ (Hairer, Lubich & Wanner, *Geometric Numerical Integration*,
ch. IX). For gradient descent (d₁ = −g, d₂ = 0) this is f₁ = −½∇²F·g, i.e.
θ' = −∇(F + (η/4)|∇F|²): implicit gradient regularisation (Barrett & Dherin, 2021).

The d_k come from the rule's update program (:class:`~odeopt.schemes.program.Program`),
Taylor-expanded in η symbolically: every intermediate is a series in η, and an evaluation
g_k, F_k := ∇F(θ_k), F(θ_k) at θ_k = θ + δ, δ = η a₁ + η² a₂ + …, becomes

    g_k = g + Σ_{m≥1} (1/m!) ∇^{m+1}F[δ, …, δ],   F_k = F + ⟨g, δ⟩ + Σ_{m≥2} (1/m!) ∇^mF[δ, …, δ],

with the contractions ∇^{m+1}F[v, …] the :class:`~odeopt.symbolic.language.LossDerivative`
symbols of the language (m = 1: the Hessian–vector product ∇²F·v, ``F.hvp(v)``). Reductions
Σφ of intermediates expand by their summands. The derivative along a field u of a
per-coordinate expression e of blocks b, the gradient g, the loss F, the time t, reductions
R = Σφ and the contractions S = ∇^{k+1}F[v₁, …, v_k] is

    D_u e = Σ_b ∂e/∂b·u_b + ∂e/∂t·u_t + ∂e/∂g·(∇²F·u_θ) + ∂e/∂F·⟨g, u_θ⟩ + Σ_R ∂e/∂R·Σ D_uφ
            + Σ_S ∂e/∂S·(∇^{k+2}F[v₁, …, v_k, u_θ] + Σ_j ∇^{k+1}F[v₁, …, D_u v_j, …, v_k]),

with u_t = 1 for f₀ (the rule advances t by exactly η) and 0 for the corrections. Order 1
needs Hessian–vector products; order 2 needs third derivatives ∇³F[v, w] as well, which
come from the same symbols (``Problem.derivative``), so any order r ≥ 1 is derived while the
update is smooth (an |·| or sign differentiated, as in Adam's √|s|, is refused).

:func:`modified_equation` returns a :class:`ModifiedSystem`, which ``odeopt.integrate`` runs
with ``params={"eta": η}``: its field is f̃ and its energy the original H, but it is not
port-Hamiltonian (its :meth:`~ModifiedSystem.energy_balance` gives dH/dt along f̃ with the
verdict "not proved"), and it is not discretized or exported.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy as sp

from ..schemes.program import Assignment, Evaluation
from ..symbolic.energy import EnergyBalance, to_globals
from ..symbolic.language import (
    Block,
    Gradient,
    Loss,
    LossDerivative,
    Reduction,
    Time,
    coordinate_derivative,
    coordinate_symbols,
)
from ..symbolic.system import BlockMap, PortHamiltonian
from .quadratic import adaptive_controller

if TYPE_CHECKING:
    from ..export.rule import UpdateRule

__all__ = [
    "ModifiedBalance",
    "ModifiedSystem",
    "NoModifiedEquation",
    "eta",
    "modified_equation",
]

#: η, the step of the discrete rule (the integrator's own step stays h)
eta = sp.Symbol("eta", positive=True)

Series = list[sp.Expr]  # coefficients of η⁰, η¹, …, η^N


class NoModifiedEquation(NotImplementedError, ValueError):
    """The rule has no modified equation here (adaptive or implicit scheme, a metric or a
    stored energy, an inconsistent rule); the message says why. Catch it as
    ``NotImplementedError`` or ``ValueError``."""


class _HessianTerms:
    """Marks a modified system's field as needing the problem at run time (Hessian–vector
    products): the symbolic pipeline refuses such a system (it has a 'metric' in the sense of
    :func:`odeopt.schemes.run_symbolic`), the numeric field computes the products itself."""

    description = (
        "a modified equation: its field has Hessian–vector products ∇²F·v (and higher "
        "derivatives of F), computed from the problem at run time; integrate it with "
        "odeopt.integrate(..., params={'eta': η}), it is not discretized or exported"
    )
    applies_to_gradient = False  # NumericField: not a preconditioner of g
    psd = None

    def apply(self, problem: Any, theta: Any, g: Any) -> Any:
        raise TypeError(self.description)


# ------------------------------------------------------------------ the derivative along u
def _deep_symbols(expr: sp.Expr) -> set[sp.Symbol]:
    """Free symbols of expr, including those inside reductions' summands and inside the
    vectors of loss derivatives."""
    out: set[sp.Symbol] = set()
    todo = list(sp.sympify(expr).free_symbols)
    while todo:
        s = todo.pop()
        if s in out:
            continue
        out.add(s)
        if isinstance(s, Reduction):
            todo.extend(s.summand.free_symbols)
        elif isinstance(s, LossDerivative):
            for v in s.vectors:
                todo.extend(v.free_symbols)
    return out


def _tidy(expr: sp.Expr) -> sp.Expr:
    """expr expanded and collected by its coordinate symbols, each coefficient simplified."""
    expr = sp.expand(sp.sympify(expr))
    if expr == 0:
        return sp.Integer(0)
    coords = sorted(coordinate_symbols(expr), key=sp.default_sort_key)
    if not coords:
        return sp.simplify(expr)
    groups: dict[sp.Expr, sp.Expr] = {}
    for term in sp.Add.make_args(expr):
        c, phi = term.as_independent(*coords, as_Add=False)
        groups[phi] = groups.get(phi, sp.Integer(0)) + c
    return sp.Add(*(sp.simplify(c) * phi for phi, c in groups.items()))


class _Along:
    """D_u: the derivative of per-coordinate expressions along a vector field u (see the
    module), for one loss F with block θ and gradient g."""

    def __init__(self, loss: Loss, u: Mapping[Block, sp.Expr], time: int) -> None:
        self.loss = loss
        self.u = dict(u)
        self.u_theta = sp.sympify(self.u.get(loss.block, 0))
        self.time = time
        self._memo: dict[sp.Expr, sp.Expr] = {}

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        expr = sp.sympify(expr)
        if expr in self._memo:
            return self._memo[expr]
        F = self.loss
        out = sp.Integer(0)
        for s in expr.free_symbols:
            d = sp.diff(expr, s)
            if d == 0:
                continue
            if isinstance(s, Block):
                if s not in self.u:
                    raise NoModifiedEquation(f"the block {s} is not a block of the system")
                out += d * self.u[s]
            elif isinstance(s, Time):
                out += d * self.time
            elif s == F.grad:
                out += d * F.hvp(self.u_theta)
            elif s == F:
                out += d * to_globals(F.grad * self.u_theta)
            elif isinstance(s, Reduction):
                out += d * to_globals(self(s.summand))
            elif isinstance(s, LossDerivative):
                vs = s.vectors
                term = F.derivative(*vs, self.u_theta) if self.u_theta != 0 else sp.Integer(0)
                for j, v in enumerate(vs):
                    dv = self(v)
                    if dv != 0:
                        term += F.derivative(*vs[:j], dv, *vs[j + 1 :])
                out += d * term
            elif isinstance(s, (Gradient, Loss)):
                raise NoModifiedEquation(f"{s} is not the system's loss or gradient")
            # parameters and η are constant along the flow
        self._memo[expr] = out
        return out


# ------------------------------------------------------------------ the rule as a series in η
class _Expansion:
    """The update program with h → η, every quantity a series in η to degree N."""

    def __init__(self, rule: UpdateRule, N: int) -> None:
        self.rule = rule
        self.N = N
        system = rule.system
        assert system.loss is not None
        self.loss: Loss = system.loss
        self.series: dict[sp.Symbol, Series] = {}
        self.sub_h = {rule.h: eta}

    def _poly(self, s: Series) -> sp.Expr:
        return sp.Add(*(c * eta**a for a, c in enumerate(s)))

    def series_of(self, expr: sp.Expr) -> Series:
        """The Taylor coefficients of expr (an expression of the program's symbols) in η."""
        expr = sp.sympify(expr).xreplace(self.sub_h)
        sub: dict[sp.Symbol, sp.Expr] = {}
        for s in expr.free_symbols:
            if s in self.series:
                sub[s] = self._poly(self.series[s])
            elif isinstance(s, Reduction) and s.summand.free_symbols & set(self.series):
                coeffs = self.series_of(s.summand)
                sub[s] = self._poly([to_globals(c) for c in coeffs])
        e = expr.xreplace(sub)
        out: Series = []
        for a in range(self.N + 1):
            c = e.subs(eta, 0) if e.has(eta) else e
            out.append(sp.expand(c / math.factorial(a)))
            if a < self.N:
                e = sp.diff(e, eta) if e.has(eta) else sp.Integer(0)
        return out

    def _compositions(self, n: int, m: int) -> list[tuple[int, ...]]:
        """Ordered m-tuples of positive integers summing to n."""
        return [c for c in itertools.product(range(1, n + 1), repeat=m) if sum(c) == n]

    def evaluation(self, ins: Evaluation) -> None:
        """g_k, F_k at θ_k = θ + δ as series (see the module)."""
        F = self.loss
        theta = F.block
        at = self.series.get(ins.theta, [ins.theta, *([sp.Integer(0)] * self.N)])
        if sp.simplify(at[0] - theta) != 0:
            raise NoModifiedEquation(
                f"the rule evaluates the gradient at {ins.theta} → {at[0]} as η → 0, not at θ: "
                "it is not consistent (θ_k = θ + O(η) is needed)"
            )
        delta = [sp.Integer(0), *at[1:]]
        g_s: Series = [F.grad]
        F_s: Series = [F]
        for n in range(1, self.N + 1):
            gn, Fn = sp.Integer(0), sp.Integer(0)
            for m in range(1, n + 1):
                for comp in self._compositions(n, m):
                    vs = [delta[j] for j in comp]
                    if any(v == 0 for v in vs):
                        continue
                    w = sp.Rational(1, math.factorial(m))
                    gn += w * F.derivative(*vs)
                    if m == 1:
                        Fn += w * to_globals(F.grad * vs[0])
                    else:
                        Fn += w * to_globals(vs[0] * F.derivative(*vs[1:]))
            g_s.append(sp.expand(gn))
            F_s.append(sp.expand(Fn))
        self.series[ins.loss.grad] = g_s
        self.series[ins.loss] = F_s

    def run(self) -> dict[str, Series]:
        for ins in self.rule.instructions:
            if isinstance(ins, Evaluation):
                if ins.loss != self.loss:
                    self.evaluation(ins)
            elif isinstance(ins, Assignment):
                self.series[ins.target] = self.series_of(ins.expr)
        return {b: self.series_of(e) for b, e in self.rule.outputs.items()}


def _flow_coefficient(
    fs: Sequence[Mapping[Block, sp.Expr]], blocks: Sequence[Block], loss: Loss, degree: int
) -> dict[Block, sp.Expr]:
    """[η^degree] exp(η D_f̃) x for f̃ = Σ_a η^a fs[a] (the exact flow of f̃ over time η)."""
    zero = {b: sp.Integer(0) for b in blocks}
    if not fs:
        return zero
    along = [_Along(loss, f, 1 if a == 0 else 0) for a, f in enumerate(fs)]
    T: list[dict[Block, sp.Expr]] = [{b: b for b in blocks}]  # T_0 = x, by degree in η
    out = dict(zero)
    for k in range(1, degree + 1):
        new: list[dict[Block, sp.Expr]] = []
        for m in range(degree - k + 1):
            acc = dict(zero)
            for a in range(min(m, len(T) - 1) + 1):
                j = m - a
                if j >= len(fs):
                    continue
                for b in blocks:
                    if T[a][b] != 0:
                        acc[b] += along[j](T[a][b])
            new.append({b: sp.expand(e) for b, e in acc.items()})
        T = new
        if degree - k < len(T):
            for b in blocks:
                out[b] += T[degree - k][b] / math.factorial(k)
    return out


# ------------------------------------------------------------------ the result
@dataclass
class ModifiedBalance(EnergyBalance):
    """dH/dt along a modified equation's field f̃: ``rate`` = Σᵢ ∇Hᵢ·f̃ᵢ (globals), split as
    ``rate_original`` (η = 0: the original system's dH/dt) + ``correction``. A modified field
    is not port-Hamiltonian, so there is no −∇HᵀR∇H / yᵀu split (those fields are NaN) and
    no proof: the verdict is "conservative" only when dH/dt ≡ 0, else "not proved"."""

    rate_original: sp.Expr = sp.Integer(0)
    correction: sp.Expr = sp.Integer(0)

    def __str__(self) -> str:
        return (
            f"dH/dt = {self.rate}\n  at η = 0: {self.rate_original};  correction: "
            f"{self.correction}\nverdict: {self.verdict} ({self.reason})"
        )

    def _repr_latex_(self) -> str:
        rows = [
            rf"\frac{{dH}}{{dt}} &= {sp.latex(self.rate)}",
            rf"\eta = 0:\ &{sp.latex(self.rate_original)}",
            rf"&\text{{{self.verdict}}}",
        ]
        return r"$\begin{aligned}" + r"\\".join(rows) + r"\end{aligned}$"


def _ordered(symbols: set[sp.Symbol]) -> list[LossDerivative]:
    """The loss derivatives among ``symbols``, inner ones (those in others' vectors) first."""
    depth: dict[LossDerivative, int] = {}

    def d(s: LossDerivative) -> int:
        if s not in depth:
            inner = [
                x for v in s.vectors for x in _deep_symbols(v) if isinstance(x, LossDerivative)
            ]
            depth[s] = 1 + max((d(x) for x in inner), default=0)
        return depth[s]

    found = [s for s in symbols if isinstance(s, LossDerivative)]
    return sorted(found, key=lambda s: (d(s), sp.default_sort_key(s)))


class ModifiedSystem(PortHamiltonian):
    """The modified equation of an update rule: ẋ = f̃ = f₀ + η f₁ + … + η^r f_r.

    It keeps the original system's H, blocks, J, R, ports, parameters and switches, adds the
    parameter ``eta`` (the discrete rule's step, no default: ``integrate`` needs
    ``params={"eta": η}``) and replaces the vector field by f̃ (``vector_field``;
    ``terms[j]`` is f_j). ``structural_field`` is still the original (J − R)∇H + Gu.
    ``derivative_symbols`` lists the loss derivatives (∇²F·v, …) in f̃, inner ones first;
    the numeric field computes them from the problem (``problem.hvp``/``derivative``).

    Not port-Hamiltonian: :meth:`energy_balance` gives dH/dt along f̃ with the verdict
    "not proved"; the discrete-gradient scheme, ``compile``, ``explicit``, ``discretize``
    and export are refused.
    """

    port_hamiltonian = False

    def __init__(self, rule: UpdateRule, order: int, terms: Sequence[Mapping[Block, sp.Expr]]):
        src = rule.system
        params: dict[sp.Symbol, Any] = {p.symbol: p.default for p in src.parameters}
        params[eta] = None
        aliases = {p.name: p.symbol for p in src.parameters if p.name != p.symbol.name}
        ported = src.G.shape[1] > 0
        super().__init__(
            src.hamiltonian,
            list(src.blocks),
            J=src.J,
            R=src.R,
            G=src.G if ported else None,
            u=list(src.u) if ported else None,
            aux=dict(src.aux),
            parameters=params,
            aliases=aliases,
            name=f"{src.name} with {rule.scheme.name}, modified",
            description=(
                f"modified equation of order {order} of {src.name} with {rule.scheme.name} "
                f"(the ODE the rule follows to O(η^{order + 1}) over a fixed time; η = eta, the "
                "rule's step)"
            ),
            switches=list(src.switches),
            metric=_HessianTerms(),
        )
        self.rule = rule
        self.original = src
        self.order = order
        self.eta = eta
        blocks = src.all_blocks
        self.terms = tuple(BlockMap([(b, t[b]) for b in blocks]) for t in terms)
        self.vector_field = BlockMap(
            [(b, sp.Add(*(eta**j * t[b] for j, t in enumerate(terms)))) for b in blocks]
        )
        found: set[sp.Symbol] = set()
        for e in self.vector_field.values():
            found |= _deep_symbols(e)
        self.derivative_symbols: tuple[LossDerivative, ...] = tuple(_ordered(found))

    # -- parameters: eta has no default
    def with_parameters(self, **values: Any) -> dict[str, Any]:
        """As :meth:`PortHamiltonian.with_parameters`; ``eta`` must be given."""
        if values.get("eta") is None:
            raise TypeError(
                f"{self.name} needs params={{'eta': η}}: η is the step of the discrete rule "
                "whose modified equation this is (h stays the integrator's own step)"
            )
        return super().with_parameters(**values)

    # -- refused: what needs a port-Hamiltonian or a self-contained field
    def compile(self, backend: str = "numpy") -> Any:
        raise TypeError(
            f"{self.name}: a modified equation's field has loss derivatives "
            f"({', '.join(map(str, self.derivative_symbols)) or 'none'}) that the problem "
            "computes at run time; integrate it with odeopt.integrate(..., params={'eta': η})"
        )

    def explicit(self, loss: Any, coordinates: Sequence[sp.Symbol]) -> Any:
        raise TypeError(
            f"{self.name}: explicit mode is for port-Hamiltonian systems; a modified equation "
            "is integrated with odeopt.integrate(..., params={'eta': η})"
        )

    def energy_balance(self, samples: int = 2000, seed: int = 0) -> ModifiedBalance:
        """dH/dt = Σᵢ ∇Hᵢ·f̃ᵢ along the modified field (no port-Hamiltonian split, no proof);
        see :class:`ModifiedBalance`."""
        H = self.hamiltonian
        per = sp.Integer(0)
        for b, e in self.vector_field.items():
            per += coordinate_derivative(H, b) * e
        rate = to_globals(_tidy(per))
        rate0 = to_globals(_tidy(per.subs(eta, 0)))
        correction = sp.simplify(rate - rate0)
        if rate == 0:
            verdict, reason = "conservative", "dH/dt along the modified field simplifies to 0"
        else:
            verdict = "not proved"
            reason = (
                "a modified equation is not port-Hamiltonian: dH/dt = ∇H·f̃ has the η-terms "
                f"{correction}, whose sign involves derivatives of F (∇²F, …) and is not "
                "proved"
            )
        nan = sp.nan
        return ModifiedBalance(
            system=self.name,
            hamiltonian=H,
            rate=rate,
            dissipation=nan,
            supply=nan,
            auxiliary=nan,
            time_derivative=nan,
            verdict=verdict,
            reason=reason,
            nonincreasing=True if rate == 0 else None,
            rate_original=rate0,
            correction=correction,
        )

    # -- display
    def _series_text(self, b: Block) -> str:
        parts = []
        for j, t in enumerate(self.terms):
            e = t[b]
            if e == 0:
                continue
            parts.append(str(e) if j == 0 else f"η{'' if j == 1 else f'^{j}'}·({e})")
        return " + ".join(parts) or "0"

    def __str__(self) -> str:
        lines = [f"{self.name}: {self.description}"]
        lines.append(f"  blocks: {', '.join(b.name for b in self.all_blocks)}")
        lines.append(
            "  parameters: "
            + ", ".join(
                p.name + (f" = {p.default}" if p.default is not None else "")
                for p in self.parameters
            )
        )
        lines.append(f"  H = {self.hamiltonian} (the original energy; the field is not pH)")
        lines.append("  ODE (per coordinate i):")
        for b in self.all_blocks:
            lines.append(f"    d{b.name}/dt = {self._series_text(b)}")
        if self.derivative_symbols:
            lines.append(
                "  ∇²F·v = ∇²F(θ)v (Hessian–vector products) and ∇^kF[v, …] come from the "
                "problem at run time: " + ", ".join(map(str, self.derivative_symbols))
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<ModifiedSystem {self.original.name} with {self.rule.scheme.name}, "
            f"order {self.order}: blocks={[b.name for b in self.all_blocks]}>"
        )

    def _repr_latex_(self) -> str:
        rows = [rf"H &= {sp.latex(self.hamiltonian)}"]
        for b in self.all_blocks:
            parts = []
            for j, t in enumerate(self.terms):
                if t[b] == 0:
                    continue
                e = sp.latex(t[b])
                parts.append(
                    e if j == 0 else rf"\eta{'' if j == 1 else f'^{{{j}}}'}\left({e}\right)"
                )
            rows.append(rf"\dot{{{sp.latex(b)}}}_i &= {' + '.join(parts) or '0'}")
        return r"$\begin{aligned}" + r"\\".join(rows) + r"\end{aligned}$"


# ------------------------------------------------------------------ the entry point
def modified_equation(rule: UpdateRule, order: int = 1) -> ModifiedSystem:
    """The modified equation of ``rule`` to ``order`` r ≥ 1 (see the module): the ODE
    ẋ = f₀ + η f₁ + … + η^r f_r whose exact η-flow the rule follows with local error
    O(η^{r+2}) (global O(η^{r+1})), η the rule's step (parameter ``eta``).

    Raises :class:`NoModifiedEquation` for adaptive schemes (the step is not fixed), implicit
    ones, systems with a metric or a stored energy (level set), systems without a loss, a
    system that already has a parameter named ``eta``, and inconsistent rules; ValueError /
    TypeError for an ``order`` that is not an integer ≥ 1.
    """
    from ..export.rule import UpdateRule

    if not isinstance(rule, UpdateRule):
        raise TypeError(
            "modified_equation() takes an UpdateRule, e.g. odeopt.discretize(system, 'euler'); "
            f"got {type(rule).__name__}"
        )
    if isinstance(order, bool) or not isinstance(order, int):
        raise TypeError(f"order must be an integer ≥ 1, got order={order!r}")
    if order < 1:
        raise ValueError(f"order must be an integer ≥ 1, got order={order!r}")
    system = rule.system
    program = rule.program
    label = f"{system.name} with {rule.scheme.name}"
    controller = adaptive_controller(rule)
    if controller:
        raise NoModifiedEquation(
            f"{label}: the scheme is adaptive ({controller} chooses each step), so the rule "
            "has no fixed step η to expand in; use the scheme without its controller"
        )
    if program.unknowns:
        raise NoModifiedEquation(
            f"{label}: the scheme is implicit (a nonlinear solve per step); its update is "
            "not an explicit program to expand in η"
        )
    if system.metric is not None:
        raise NoModifiedEquation(
            f"{label}: the system has a metric that is not coordinate-wise "
            f"({getattr(system.metric, 'description', 'metric')})"
        )
    if system.level_set is not None:
        raise NoModifiedEquation(
            f"{label}: the system stores its energy E (a level set H = E): E is state set "
            "from the start and the step rescales p onto H = E, which the expansion in η "
            "does not model"
        )
    if system.loss is None:
        raise NoModifiedEquation(f"{label}: the system has no loss")
    clash = [p.name for p in system.parameters if "eta" in (p.name, p.symbol.name)]
    if clash:
        raise NoModifiedEquation(
            f"{label}: the system already has a parameter named 'eta', the name of the "
            "rule's step in the modified equation; rename it"
        )
    N = order + 1
    d = _Expansion(rule, N).run()
    blocks = list(system.all_blocks)
    by_name = {b.name: b for b in blocks}
    for name, s in d.items():
        b = by_name[name]
        if sp.simplify(s[0] - b) != 0:
            raise NoModifiedEquation(
                f"{label}: as η → 0 the rule maps {name} to {s[0]}, not to {name} itself; it "
                "is not a one-step method x' = x + O(η)"
            )
    dk = [{by_name[n]: s[k] for n, s in d.items()} for k in range(N + 1)]
    fs: list[dict[Block, sp.Expr]] = []
    for j in range(order + 1):
        known = _flow_coefficient(fs, blocks, system.loss, j + 1)
        fs.append({b: _tidy(dk[j + 1][b] - known[b]) for b in blocks})
    rough = sorted(
        {
            type(a).__name__
            for f in fs
            for e in f.values()
            for a in sp.sympify(e).atoms(sp.DiracDelta, sp.Heaviside)
        }
    )
    if rough:
        raise NoModifiedEquation(
            f"{label}: the expansion to order {order} differentiates a function that is not "
            f"smooth ({', '.join(rough)}, from |·| or sign in the update); the modified "
            "equation exists only to the order before it appears"
        )
    return ModifiedSystem(rule, order, fs)
