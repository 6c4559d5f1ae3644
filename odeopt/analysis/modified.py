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

The d_k and the flow's coefficients are the series of :mod:`.expansion`; an |·| or sign
differentiated (as in Adam's √|s|) is refused.

:func:`modified_equation` returns a :class:`ModifiedSystem`, which ``odeopt.integrate`` runs
with ``params={"eta": η}``: its field is f̃ and its energy the original H, but it is not
port-Hamiltonian (its :meth:`~ModifiedSystem.energy_balance` gives dH/dt along f̃ with the
verdict "not proved"), and it is not discretized or exported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy as sp

from ..symbolic.energy import EnergyBalance, to_globals
from ..symbolic.language import Block, LossDerivative, coordinate_derivative
from ..symbolic.system import BlockMap, PortHamiltonian
from .expansion import Expansion, deep_symbols, eta, flow_coefficient, tidy
from .expansion import NoModifiedEquation as NoModifiedEquation
from .linear_map import adaptive_controller

if TYPE_CHECKING:
    from ..export.rule import UpdateRule

__all__ = [
    "ModifiedBalance",
    "ModifiedSystem",
    "NoModifiedEquation",
    "eta",
    "modified_equation",
]


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
            inner = [x for v in s.vectors for x in deep_symbols(v) if isinstance(x, LossDerivative)]
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
            found |= deep_symbols(e)
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
        rate = to_globals(tidy(per))
        rate0 = to_globals(tidy(per.subs(eta, 0)))
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
    d = Expansion(rule, N).run()
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
        known = flow_coefficient(fs, blocks, system.loss, j + 1)
        fs.append({b: tidy(dk[j + 1][b] - known[b]) for b in blocks})
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
