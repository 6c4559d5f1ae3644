"""The discrete update rule a scheme makes of a system, and what it is in torch.optim terms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sympy as sp

from ..schemes import get as get_scheme
from ..schemes.base import Scheme
from ..schemes.program import Assignment, Evaluation, Program, run_symbolic
from ..symbolic.language import Block, Gradient, Loss, Reduction, Time

if TYPE_CHECKING:
    from ..analysis.energy import DiscreteEnergy
    from ..analysis.modified import ModifiedSystem
    from ..analysis.pep import WorstCase
    from ..analysis.quadratic import QuadraticRule
    from ..analysis.tuning import TunedRule
    from ..symbolic.system import PortHamiltonian

__all__ = ["Identification", "UpdateRule", "discretize"]


@dataclass
class Identification:
    """What :meth:`UpdateRule.identify` recognised.

    ``name`` is the torch.optim class (``"SGD"``) or None; ``hyperparameters`` its constructor
    arguments as sympy expressions of h and the system's parameters; ``state`` how the
    optimizer's buffers relate to the system's blocks (e.g. ``momentum_buffer = −p/h``);
    ``reason`` explains a match or why nothing matched.
    """

    name: str | None
    hyperparameters: dict[str, sp.Expr] = field(default_factory=dict)
    state: dict[str, sp.Expr] = field(default_factory=dict)
    reason: str = ""

    def __bool__(self) -> bool:
        return self.name is not None

    def __str__(self) -> str:
        if self.name is None:
            return f"no classic optimizer: {self.reason}"
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparameters.items())
        state = ", ".join(f"{k} = {v}" for k, v in self.state.items())
        return f"torch.optim.{self.name}({args})" + (f" with {state}" if state else "")


class UpdateRule:
    """The update program of ``scheme`` applied to ``system`` with step h (a symbol).

    One step: evaluate F and ∇F where the program says, compute the named intermediates, then
    assign every block its new value (``outputs``). Adaptive schemes also give ``error``;
    implicit ones define the new state by a fixed-point equation in ``unknowns``.
    """

    def __init__(self, program: Program) -> None:
        self.program = program
        self.system: PortHamiltonian = program.system
        self.scheme: Scheme = program.scheme
        self.h: sp.Symbol = program.h

    # -- views
    @property
    def instructions(self) -> list[Assignment | Evaluation]:
        return self.program.instructions

    @property
    def outputs(self) -> dict[str, sp.Expr]:
        return self.program.outputs

    @property
    def evaluations(self) -> list[Evaluation]:
        return self.program.evaluations

    @property
    def needs_loss(self) -> bool:
        """Whether a step needs the loss value F (then an optimizer needs a closure): the
        rule uses it, a stored energy starts from it, or a switch fires on it."""
        if self.system.switches or self.system.level_set is not None:
            return True
        losses = {e.loss for e in self.evaluations}
        exprs = [
            *self.outputs.values(),
            *(i.expr for i in self.instructions if isinstance(i, Assignment)),
        ]
        return any(e.free_symbols & losses for e in exprs)

    def inline(self) -> dict[str, sp.Expr]:
        """Each block's new value with the intermediates substituted (where they do not sit
        inside a reduction), expanded and collected by coordinate symbols."""
        sub: dict[sp.Symbol, sp.Expr] = {}
        for ins in self.instructions:
            if isinstance(ins, Assignment):
                sub[ins.target] = ins.expr.xreplace(sub)
        out = {}
        for b, e in self.outputs.items():
            e = e.xreplace(sub)
            coords = sorted(
                (s for s in e.free_symbols if isinstance(s, (Block, Gradient))),
                key=lambda s: s.name,
            )
            out[b] = sp.collect(sp.expand(e), coords, evaluate=True)
        return out

    def __str__(self) -> str:
        return str(self.program)

    def __repr__(self) -> str:
        return f"UpdateRule({self.system.name!r}, {self.scheme.name!r})"

    def _repr_latex_(self) -> str:
        rows = []
        for ins in self.instructions:
            if isinstance(ins, Evaluation):
                th = sp.latex(ins.theta)
                rows.append(
                    rf"{sp.latex(ins.loss)},\ {sp.latex(ins.loss.grad)} &:= F({th}),\ "
                    rf"\nabla F({th})"
                )
            else:
                rows.append(rf"{sp.latex(ins.target)} &:= {sp.latex(ins.expr)}")
        for b, e in self.outputs.items():
            rows.append(rf"{sp.latex(self.system.block(b))} &\leftarrow {sp.latex(e)}")
        return r"$\begin{aligned}" + r"\\".join(rows) + r"\end{aligned}$"

    def _value_of(self, target: Block) -> sp.Expr:
        for ins in self.instructions:
            if isinstance(ins, Assignment) and ins.target == target:
                return ins.expr
        return target

    # -- recognition
    def identify(self) -> Identification:
        """Recognise torch.optim.SGD (plain, momentum, Nesterov) in this rule.

        With one gradient g at θ, a rule of the form p' = a·p + c·g, θ' = θ + D·p + E·g
        (a, c, D, E free of coordinates and of F) is SGD with buffer b = p/c:
        b' = a·b + g, and θ' = θ + (Dc/a)·b' + (E − Dc/a)·g. So it is
        SGD(lr = −Dc/a, momentum = a) when E = Dc/a, and SGD(nesterov=True, lr = −(E − Dc/a),
        momentum = a) when Dc/a = a·(E − Dc/a). Without momentum, θ' = θ + E·g is SGD(lr = −E).
        """
        sys_ = self.system
        if self.program.unknowns:
            return Identification(
                None, reason="the scheme is implicit (a nonlinear solve per step)"
            )
        if sys_.loss is None:
            return Identification(None, reason="the system has no loss")
        evals = self.evaluations
        if len(evals) != 1:
            return Identification(
                None, reason=f"a step evaluates the gradient {len(evals)} times; SGD once"
            )
        if evals[0].theta != sys_.loss.block:
            return Identification(
                None,
                reason=f"the gradient is taken at {evals[0].theta} = "
                f"{self._value_of(evals[0].theta)}, not at θ (SGD takes it at θ)",
            )
        theta = sys_.loss.block
        g = sys_.loss.grad
        new = self.inline()
        others = [b for b in sys_.all_blocks if b != theta]
        if len(others) > 1:
            return Identification(None, reason=f"SGD has one buffer; this rule has {len(others)}")
        globals_ = [
            s for e in new.values() for s in e.free_symbols if isinstance(s, (Loss, Reduction))
        ]
        if globals_:
            names = sorted({str(s) for s in globals_})
            return Identification(
                None,
                reason=f"the step depends on the global(s) {', '.join(names)}: its step size "
                "changes with the state, which SGD's does not",
            )
        coords = [theta, g, *others]
        try:
            polys = {b: sp.Poly(e, *coords) for b, e in new.items()}
        except sp.PolynomialError:
            return Identification(None, reason="the update is not linear in θ, p and g")
        if any(p.total_degree() > 1 for p in polys.values()):
            return Identification(None, reason="the update is not linear in θ, p and g")

        def coeff(b: Block, c: sp.Symbol) -> sp.Expr:
            return sp.simplify(polys[b.name].coeff_monomial(c))

        if sp.simplify(coeff(theta, theta) - 1) != 0 or polys[theta.name].coeff_monomial(1) != 0:
            return Identification(None, reason="θ' is not θ plus a step")
        E = coeff(theta, g)
        if not others:
            return Identification(
                "SGD",
                {"lr": sp.simplify(-E)},
                {},
                reason="θ' = θ − lr·g: plain gradient descent",
            )
        p = others[0]
        D = coeff(theta, p)
        a, c = coeff(p, p), coeff(p, g)
        if coeff(p, theta) != 0 or polys[p.name].coeff_monomial(1) != 0:
            return Identification(None, reason=f"{p}' depends on θ beyond the gradient")
        if c == 0 or a == 0:
            return Identification(None, reason=f"{p}' = {new[p.name]} is not a momentum buffer")
        if any(isinstance(sym, Time) for x in (a, c, D, E) for sym in x.free_symbols):
            return Identification(
                None,
                reason="the coefficients change with the time t; SGD's are constant (a "
                "scheduler would have to change lr and momentum and rescale the buffer)",
            )
        k = sp.simplify(D * c / a)
        rest = sp.simplify(E - k)
        state = {"momentum_buffer": sp.simplify(p / c)}
        if rest == 0:
            return Identification(
                "SGD",
                {"lr": sp.simplify(-k), "momentum": sp.expand(a), "dampening": sp.Integer(0)},
                state,
                reason=f"b = {p}/({c}) obeys b' = μb + g and θ' = θ − lr·b'",
            )
        if sp.simplify(k - a * rest) == 0:
            return Identification(
                "SGD",
                {
                    "lr": sp.simplify(-rest),
                    "momentum": sp.expand(a),
                    "dampening": sp.Integer(0),
                    "nesterov": sp.true,
                },
                state,
                reason=f"b = {p}/({c}) obeys b' = μb + g and θ' = θ − lr·(g + μb')",
            )
        return Identification(
            None,
            reason=f"θ' = θ + ({D})·{p} + ({E})·g: with the buffer b = {p}/({c}), θ' − θ = "
            f"({k})·b' + ({rest})·g, neither a multiple of the new buffer (SGD) nor "
            "g + μb' (Nesterov)",
        )

    # -- analysis (odeopt.analysis)
    def quadratic(self, t: Any = None, switched: bool = False) -> QuadraticRule:
        """The rule on F = ½λ|θ|² (one eigen-direction of any quadratic): x_{k+1} = M(λ)x_k.

        See :func:`odeopt.analysis.quadratic`.
        """
        from ..analysis.quadratic import quadratic

        return quadratic(self, t=t, switched=switched)

    def tune(
        self,
        mu: float,
        L: float,
        over: Sequence[str] = ("h",),
        method: str = "auto",
        **values: Any,
    ) -> TunedRule:
        """min over ``over`` of max_{λ∈[μ, L]} ρ(M(λ)); see :func:`odeopt.analysis.tune`."""
        from ..analysis.tuning import tune

        return tune(self, mu=mu, L=L, over=over, method=method, **values)

    def discrete_energy(
        self,
        t: Any = None,
        free: Sequence[str] | str | None = None,
        switched: bool = False,
        **values: Any,
    ) -> DiscreteEnergy:
        """Whether one step decreases H on quadratics, and for which h; see
        :func:`odeopt.analysis.discrete_energy`."""
        from ..analysis.energy import discrete_energy

        return discrete_energy(self, t=t, free=free, switched=switched, **values)

    def modified_equation(self, order: int = 1) -> ModifiedSystem:
        """The ODE the rule follows to O(η^{order+1}) globally (backward error analysis); see
        :func:`odeopt.analysis.modified_equation`."""
        from ..analysis.modified import modified_equation

        return modified_equation(self, order=order)

    def worst_case(self, L: float, mu: float = 0.0, steps: int = 1, **values: Any) -> WorstCase:
        """The tight worst case of F(x_N) − F* by PEPit; see :func:`odeopt.analysis.worst_case`."""
        from ..analysis.pep import worst_case

        return worst_case(self, L=L, mu=mu, steps=steps, **values)

    # -- export
    def to_source(self, name: str | None = None) -> str:
        """A self-contained Python module (it imports only torch) defining a
        torch.optim.Optimizer subclass that applies this rule; see :func:`to_torch`."""
        from .torch_source import to_source

        return to_source(self, name)

    def to_torch(self, name: str | None = None) -> type:
        """The optimizer class, built by executing :meth:`to_source`.

        ``Opt = rule.to_torch(); opt = Opt(params, lr=h, mass=1.0, friction=0.5)``: lr is the
        step h, the system's parameters are keyword arguments and param-group keys.
        """
        import types

        from .torch_source import class_name

        source = self.to_source(name)
        cls = name or class_name(self)
        module = types.ModuleType(f"odeopt_generated_{cls}")
        module.__file__ = f"<odeopt {cls}>"
        exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102
        made = module.__dict__[cls]
        made.source = source
        return made


def discretize(system: PortHamiltonian, scheme: str | Scheme) -> UpdateRule:
    """The update rule that ``scheme`` makes of ``system``: run the scheme on sympy symbols."""
    return UpdateRule(run_symbolic(system, get_scheme(scheme)))
