"""The discrete update rule a scheme makes of a system, and what it is in torch.optim terms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sympy as sp

from ..schemes import get as get_scheme
from ..schemes.base import Scheme
from ..schemes.program import Assignment, Evaluation, Program, run_symbolic
from ..symbolic.language import Block, Gradient
from .identify import Identification
from .identify import identify as _identify

if TYPE_CHECKING:
    from ..analysis.energy import DiscreteEnergy
    from ..analysis.modified import ModifiedSystem
    from ..analysis.pep import WorstCase
    from ..analysis.quadratic import QuadraticRule
    from ..analysis.tuning import TunedRule
    from ..symbolic.system import PortHamiltonian

__all__ = ["Identification", "UpdateRule", "discretize"]


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
        """Recognise torch.optim's SGD (momentum, Nesterov, weight decay), RMSprop (with and
        without momentum) and Adagrad in this rule, or say why none (Adam/AdamW: never, the
        reason says why); see :mod:`odeopt.export.identify`."""
        return _identify(self)

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
    def to_source(
        self, name: str | None = None, parametrization: str = "ode", *, framework: str = "torch"
    ) -> str:
        """A self-contained Python module (it imports only torch) defining a
        torch.optim.Optimizer subclass that applies this rule; see :func:`to_torch`.

        ``framework="jax"``: a module importing only jax and optax, defining a function
        (``name``, default the system's and scheme's names in snake_case) that returns an
        ``optax.GradientTransformationExtraArgs``; see :meth:`to_optax`. There
        ``parametrization="sgd"`` takes optax.sgd's hyper-parameters (``…_sgd``)."""
        if framework == "jax":
            from .jax_source import to_source as to_jax_source

            return to_jax_source(self, name, parametrization)
        if framework != "torch":
            raise ValueError(f"framework must be 'torch' or 'jax', got framework={framework!r}")
        from .torch_source import to_source

        return to_source(self, name, parametrization)

    def to_optax(
        self,
        *args: Any,
        name: str | None = None,
        parametrization: str = "ode",
        **hyperparameters: Any,
    ) -> Any:
        """This rule as an ``optax.GradientTransformationExtraArgs``, built by executing
        ``to_source(framework="jax")``; the keywords are the torch optimizer's: ``lr`` the
        step h (a number or an optax schedule), the system's parameters, ``maximize``,
        ``seed``, ….

        ``tx = rule.to_optax(lr=0.1, friction=0.5); state = tx.init(params)``, then
        ``updates, state = tx.update(grads, state, params, value=loss, value_fn=loss_fn)``
        (``value`` for rules that read F, ``value_fn`` for rules that evaluate it at moved
        parameters) and ``params = optax.apply_updates(params, updates)``. Positional
        arguments are the factory's: ``rule.to_optax(0.1)`` is lr = 0.1.

        ``parametrization="sgd"`` (a rule :meth:`identify` recognises as torch.optim.SGD
        without dampening): ``rule.to_optax(learning_rate=schedule, momentum=0.9,
        parametrization="sgd")`` takes optax.sgd's hyper-parameters, converted to h and the
        system's at every update (a schedule at the state's count), its state kept as
        optax.sgd's ``trace``, so that a schedule acts exactly as on optax.sgd; a rule that
        identify() does not recognise is a ValueError giving identify()'s reason.
        """
        from .jax_source import to_optax

        return to_optax(self, *args, name=name, parametrization=parametrization, **hyperparameters)

    def to_torch(self, name: str | None = None, parametrization: str = "ode") -> type:
        """The optimizer class, built by executing :meth:`to_source`.

        ``Opt = rule.to_torch(); opt = Opt(params, lr=h, mass=1.0, friction=0.5)``: lr is the
        step h, the system's parameters are keyword arguments and param-group keys.
        ``parametrization="sgd"`` (the lower-case name of the optimizer :meth:`identify`
        recognises): ``Opt(params, lr=0.1, momentum=0.9)`` takes that optimizer's
        hyper-parameters, converted to h and the system's at every step, its state kept in
        the optimizer's variables, so schedulers act as on torch.optim.SGD; a rule that
        identify() does not recognise is a ValueError giving identify()'s reason.
        """
        from ..symbolic.codegen import exec_module
        from .torch_source import class_name

        source = self.to_source(name, parametrization=parametrization)
        cls = name or class_name(self, parametrization)
        made = exec_module(source, f"odeopt_generated_{cls}", f"<odeopt {cls}>").__dict__[cls]
        made.source = source
        return made


def discretize(system: PortHamiltonian, scheme: str | Scheme) -> UpdateRule:
    """The update rule that ``scheme`` makes of ``system``: run the scheme on sympy symbols."""
    return UpdateRule(run_symbolic(system, get_scheme(scheme)))
