"""The integrators behind :func:`odeopt.integrate`, registered by name.

A :class:`Backend` declares what it runs — odeopt's fixed-step and adaptive schemes, methods
of its own, and the features ``events``, ``gtol``, ``switches``, ``level_sets``, ``best`` —
and refuses the rest with a message that names the backends that can. integrate() checks the
arguments, groups the options into a :class:`~odeopt.integrate.options.Request` and hands it
to the backend named ``backend=`` (or the default one, :func:`choose`).

A new backend is one module here that defines a Backend subclass and calls
:func:`register` on an instance, plus its module name in :data:`MODULES`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..options import Request
    from ..trajectory import Trajectory

__all__ = ["FEATURES", "MODULES", "REGISTRY", "Backend", "choose", "get", "names", "register"]

#: what a backend may declare in :attr:`Backend.features`, and how a refusal names it
FEATURES = {
    "fixed": "odeopt's fixed-step schemes",
    "adaptive": "odeopt's adaptive schemes",
    "events": "events located per trajectory",
    "gtol": "gtol (stopping converged trajectories)",
    "switches": "systems that switch parameters at events",
    "level_sets": "level-set systems (stored energy, domain stop)",
    "best": "SaveAt(best=True) (min F over every accepted state, Trajectory.best_loss)",
}

#: the modules that register the built-in backends, in this order
MODULES = ("native", "scipy", "torchdiffeq", "numba")

REGISTRY: dict[str, Backend] = {}


class Backend:
    """An integrator of batches of trajectories (see the module's docstring)."""

    name: ClassVar[str]
    #: the array library of its states and results, "numpy" or "torch"
    arrays: ClassVar[str] = "numpy"
    #: features it runs (keys of :data:`FEATURES`)
    features: ClassVar[frozenset[str]] = frozenset()
    #: whether its own method names pick it when backend= is not given
    claims_methods: ClassVar[bool] = False

    def methods(self) -> list[str]:
        """The names of its own methods (solvers), if it has any."""
        return []

    def runs(self, feature: str) -> bool:
        return feature in self.features

    def refusal(self, feature: str, detail: str = "") -> ValueError:
        """The error for a feature it does not run, naming the backends that do."""
        able = [repr(b.name) for b in REGISTRY.values() if b.runs(feature)]
        what = FEATURES.get(feature, feature)
        alternatives = f"; use backend={' or '.join(able)}" if able else ""
        return ValueError(f"backend {self.name!r} does not run {what}{detail}{alternatives}")

    def check(self, request: Request) -> Any:
        """Refuse what it does not run (ValueError naming the backends that can); returns
        the resolved scheme or method for :meth:`run`."""
        raise NotImplementedError

    def run(self, request: Request) -> Trajectory:
        raise NotImplementedError


def register(backend: Backend) -> Backend:
    """Make ``backend`` available as ``integrate(..., backend=backend.name)``."""
    REGISTRY[backend.name] = backend
    return backend


def names() -> list[str]:
    """The registered backends' names."""
    return list(REGISTRY)


def get(name: str) -> Backend:
    """The backend registered as ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; backends are {list(REGISTRY)}")
    return REGISTRY[name]


def choose(scheme: Any, x0_is_torch: bool) -> Backend:
    """The default backend: one whose own method ``scheme`` names (when it is not also an
    odeopt scheme), else torch for tensor starts, numpy otherwise."""
    from ... import schemes as _schemes

    if isinstance(scheme, str) and scheme not in _schemes.REGISTRY:
        for b in REGISTRY.values():
            if b.claims_methods and scheme.lower() in {m.lower() for m in b.methods()}:
                return b
    return REGISTRY["torch" if x0_is_torch else "numpy"]


for _module in MODULES:  # each registers its backend(s), in this order
    importlib.import_module(f"{__name__}.{_module}")
