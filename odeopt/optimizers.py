"""Named optimizers: the methods people look for by name, each a zoo system + a scheme (+ the
scheme's step controller), with a one-line description and its reference.

``odeopt.optimizers.names()`` lists them; ``get("lc_egd")`` gives one, whose ``.system``,
``.scheme``, ``.rule()`` (the discretization), ``.to_torch()`` / ``.to_source()`` (the
exported optimizer) and ``.reference`` are at hand; ``get("heavy_ball", friction=0.9)``
changes the system's parameters. ``odeopt list`` shows them beside the zoo's systems and
``odeopt export NAME -o FILE.py`` writes one. The learned optimizer is the exception: its step
is a meta-trained net, not a scheme, so it needs that net (:class:`LearnedEntry`).

Names shared with a zoo system (heavy_ball, bbi, ecdsep, braking) are that system with the
command line's default scheme, symplectic Euler: the same rule either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import zoo
from .export import discretize
from .schemes import EnergyDecrease, EulerRichardson, StepController
from .schemes import get as get_scheme
from .schemes.base import Scheme
from .symbolic.codegen import exec_module

if TYPE_CHECKING:
    from .export import UpdateRule
    from .learned import HNNOptimizerNet
    from .symbolic import PortHamiltonian

__all__ = ["REGISTRY", "LearnedEntry", "NamedOptimizer", "get", "names"]


@dataclass(frozen=True)
class NamedOptimizer:
    """A named optimizer: the zoo system ``system_name`` (with ``params``) discretized by the
    scheme ``make_scheme()`` makes; ``cls`` names its exported class."""

    name: str
    description: str
    reference: str
    system_name: str
    make_scheme: Callable[[], str | Scheme]
    cls: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def system(self) -> PortHamiltonian:
        """The zoo system, built with ``params``."""
        return zoo.get(self.system_name, **self.params)

    @property
    def scheme(self) -> Scheme:
        """The scheme (a fresh instance: adaptive ones carry a controller)."""
        return get_scheme(self.make_scheme())

    def with_params(self, **params: Any) -> NamedOptimizer:
        """This optimizer with other values of its system's parameters."""
        zoo.get(self.system_name, **{**self.params, **params})  # refuse bad ones now
        return replace(self, params={**self.params, **params})

    def rule(self) -> UpdateRule:
        """The update rule: the scheme applied to the system (:func:`odeopt.discretize`)."""
        return discretize(self.system, self.scheme)

    def to_source(self, name: str | None = None, parametrization: str = "ode") -> str:
        """The exported optimizer as a self-contained .py text (class ``name``, default
        ``cls``); see :meth:`odeopt.UpdateRule.to_torch` for ``parametrization``."""
        return self.rule().to_source(name or self.cls, parametrization=parametrization)

    def to_torch(self, name: str | None = None, parametrization: str = "ode") -> type:
        """The exported torch.optim.Optimizer class (``lr`` is the step h unless
        ``parametrization`` says otherwise)."""
        return self.rule().to_torch(name or self.cls, parametrization=parametrization)

    def to_optax(self, *args: Any, **hyperparameters: Any) -> Any:
        """The rule as an ``optax.GradientTransformationExtraArgs`` (needs jax and optax):
        :meth:`odeopt.UpdateRule.to_optax` with the same arguments (``lr`` the step h first,
        positional or keyword, then the system's keywords, ``name``, ``parametrization``)."""
        return self.rule().to_optax(*args, **hyperparameters)

    @property
    def recipe(self) -> str:
        """ "system + scheme", e.g. "gradient_flow + energy_decrease"."""
        return f"{self.system_name} + {get_scheme(self.make_scheme()).name}"

    @property
    def summary(self) -> str:
        """ "system + scheme: description", one line."""
        return f"{self.recipe}: {self.description}"

    def __str__(self) -> str:
        return f"{self.name} ({self.summary}; {self.reference})"


@dataclass(frozen=True)
class LearnedEntry:
    """The learned port-Hamiltonian optimizer (ALGORITHMS.md §4): its step is a meta-trained
    net's map (u, p) ← net(∇F, p), θ ← θ + lr·u, not a scheme applied to a system.

    Construct it with a trained :class:`~odeopt.learned.HNNOptimizerNet`: from Python,
    ``net = oo.learned.pretrained("hnn_quadratic").net`` (or a fresh ``meta_train``) then
    ``get("learned", net=net).to_torch()``; from the command line ``odeopt learn -o FILE.py``
    (it meta-trains the net and writes the optimizer). ``.system`` is the net's cell as a
    pH system (q = the gradient, p = the last output; d = 1 nets, ``preprocess=False``).
    """

    name: str
    description: str
    reference: str
    cls: str = "HNNOptimizer"
    net: HNNOptimizerNet | None = None
    system_name: str = "learned_cell"
    scheme: None = None

    def _net(self) -> HNNOptimizerNet:
        if self.net is None:
            raise TypeError(
                "the learned optimizer needs its meta-trained net: get('learned', net=net) with "
                "net = oo.learned.pretrained('hnn_quadratic').net, or "
                "oo.learned.meta_train(task).net (or run `odeopt learn -o FILE.py`)"
            )
        return self.net

    @property
    def system(self) -> PortHamiltonian:
        """The net's learned cell as a PortHamiltonian (:meth:`HamiltonianCell.to_system`)."""
        return self._net().cell.to_system()

    def with_params(self, **params: Any) -> LearnedEntry:
        """This entry with its net (the only parameter: ``net=``)."""
        from .learned import HNNOptimizerNet

        unknown = sorted(set(params) - {"net"})
        if unknown:
            raise TypeError(f"the learned optimizer takes net=... only, got {unknown}")
        if not isinstance(params.get("net"), HNNOptimizerNet):
            raise TypeError(
                "net must be an odeopt.learned.HNNOptimizerNet, got "
                f"{type(params.get('net')).__name__}"
            )
        return replace(self, net=params["net"])

    def rule(self) -> UpdateRule:
        """No rule: NotImplementedError saying why and what to use."""
        raise NotImplementedError(
            "the learned optimizer's step is its meta-trained net's map, not a scheme applied "
            "to a system, so it has no update rule to derive; use to_torch() or to_source()"
        )

    def to_source(self, name: str | None = None, parametrization: str = "ode") -> str:
        """The trained net written into a self-contained .py (:func:`odeopt.learned.to_source`)."""
        from .learned import to_source

        if parametrization != "ode":
            raise ValueError(
                f"parametrization={parametrization!r}: the learned optimizer is no torch.optim "
                "optimizer; use parametrization='ode' (lr is its out_mul)"
            )
        return to_source(self._net(), name or self.cls)

    def to_torch(self, name: str | None = None, parametrization: str = "ode") -> type:
        """The class of :meth:`to_source`, executed (lr is the original's out_mul)."""
        cls = name or self.cls
        source = self.to_source(cls, parametrization)
        made = exec_module(source, f"odeopt_generated_{cls}", f"<odeopt {cls}>").__dict__[cls]
        made.source = source
        return made

    def to_optax(self, **hyperparameters: Any) -> Any:
        """The trained net as an optax transformation (needs jax and optax); see
        :func:`odeopt.learned.jax_export.to_optax`."""
        from .learned.jax_export import to_optax

        return to_optax(self._net(), **hyperparameters)

    @property
    def recipe(self) -> str:
        """What it is made of: a meta-trained net."""
        return "a meta-trained net (odeopt learn)"

    @property
    def summary(self) -> str:
        """ "recipe: description", one line."""
        return f"{self.recipe}: {self.description}"

    def __str__(self) -> str:
        return f"{self.name} ({self.summary}; {self.reference})"


def _er_gd() -> Scheme:
    """Bensaid's Euler–Richardson GD: tolerance 0.01 on ½h|g(θ) − g(θ − hg)|, no growth cap,
    h ← 0.9h/√err after every trial (the reference code's controller, as in the tour)."""
    ctrl = StepController(norm="l2", rtol=0, atol=0.01, grow=float("inf"), shrink=0.0)
    return EulerRichardson("reference", controller=ctrl)


_BENSAID = "Bensaid, deterministic optimisation from an energy view (seed 003; ALGORITHMS.md §5)"
_ECD = (
    "De Luca & Silverstein, Born–Infeld (BI) for AI: Energy-Conserving Descent (seed 004; "
    "ALGORITHMS.md §6)"
)

REGISTRY: dict[str, NamedOptimizer | LearnedEntry] = {
    e.name: e
    for e in (
        NamedOptimizer(
            "sgd",
            "gradient descent θ ← θ − h∇F = torch.optim.SGD(lr=h)",
            "Robbins & Monro (1951); the gradient flow of ALGORITHMS.md §5",
            "gradient_flow",
            lambda: "euler",
            "SGD",
        ),
        NamedOptimizer(
            "heavy_ball",
            "Polyak's momentum = torch.optim.SGD(lr=h²/m, momentum=1−γh/m)",
            "Polyak (1964); ALGORITHMS.md §1",
            "heavy_ball",
            lambda: "symplectic_euler",
            "HeavyBall",
        ),
        NamedOptimizer(
            "nag",
            "Nesterov's accelerated gradient (look-ahead drift) = SGD(nesterov=True)",
            "Nesterov (1983); Sutskever et al. (2013), torch's form",
            "heavy_ball",
            lambda: "symplectic_euler_nesterov",
            "NAG",
        ),
        NamedOptimizer(
            "lc_egd",
            "LC_EGD: a GD step kept only if F drops by ½h|∇F|² (h/2 on rejection, ×10⁴ after)",
            _BENSAID,
            "gradient_flow",
            lambda: EnergyDecrease("euler"),
            "LCEGD",
        ),
        NamedOptimizer(
            "lc_m",
            "LC_M: a momentum step kept only if H drops by ½h(γ/m²)|p'|² (h/2 on rejection)",
            _BENSAID,
            "heavy_ball",
            lambda: EnergyDecrease("symplectic_euler", rate_at="new"),
            "LCM",
        ),
        NamedOptimizer(
            "euler_richardson_gd",
            "Euler–Richardson GD: Richardson error ½h|g(θ) − g(θ − hg)| ≤ 0.01, h ← 0.9h/√err",
            _BENSAID,
            "gradient_flow",
            _er_gd,
            "EulerRichardsonGD",
        ),
        NamedOptimizer(
            "bbi",
            "BBI: Born–Infeld energy-conserving descent, stored energy and bounces",
            _ECD,
            "bbi",
            lambda: "symplectic_euler",
            "BBI",
        ),
        NamedOptimizer(
            "ecdsep",
            "ECDSep: H = η log(F − F₀) + log(s + |p|²), energy conserved, Gaussian jitter",
            "De Luca, Gatti & Silverstein, improving energy-conserving descent (seed 004; "
            "ALGORITHMS.md §6)",
            "ecdsep",
            lambda: "symplectic_euler",
            "ECDSep",
        ),
        NamedOptimizer(
            "braking",
            "goal-oriented braking: heavy ball whose friction k₀ → k₁ once F reaches a goal",
            "Who Breaks Early, Looses (seed 000, ICANN 2023; ALGORITHMS.md §2)",
            "braking",
            lambda: "symplectic_euler",
            "Braking",
        ),
        LearnedEntry(
            "learned",
            "the learned pH optimizer: a Hamiltonian cell per coordinate (needs its net)",
            "Can we learn gradients by Hamiltonian neural networks? (seed 002; ALGORITHMS.md §4)",
        ),
    )
}


def names() -> list[str]:
    """The named optimizers, in the catalogue's order."""
    return list(REGISTRY)


def get(name: str, **params: Any) -> NamedOptimizer | LearnedEntry:
    """The named optimizer ``name``; ``params`` change its system's parameters (the learned
    one: ``net=``). KeyError naming the known ones for an unknown name."""
    if name not in REGISTRY:
        hint = f" ({name} is a zoo system: odeopt.zoo.get)" if name in zoo.REGISTRY else ""
        raise KeyError(f"no named optimizer {name!r}{hint}; known: {', '.join(REGISTRY)}")
    entry = REGISTRY[name]
    return entry.with_params(**params) if params else entry
