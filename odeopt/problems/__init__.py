"""Objectives with known minima, batched for numpy and torch.

Every problem is a :class:`Problem`: ``value(θ)``, ``grad(θ)`` and ``value_and_grad(θ)`` on
θ of shape (batch, dim) (numpy or torch; dtype and device kept), ``minima``, ``sympy()``,
``critical_points()`` and ``sample(batch, seed, backend)``.

* Classic functions: :func:`quadratic`, :func:`least_squares` (and
  :func:`random_least_squares`), :func:`rosenbrock`, :func:`ackley`, :func:`zakharov`,
  :func:`rastrigin`, :func:`himmelblau`, :func:`beale`.
* One-neuron networks: :func:`one_neuron`, :func:`poly_two` … :func:`poly_five`.
* Your own: :func:`from_functions`, :func:`torch_module`; built on it: :func:`digits_mlp`,
  :func:`blobs` (Massaroli's two Gaussian blobs); data arriving over time: :func:`streamed`.
"""

from .base import CriticalPoint, CriticalPointsUnavailable, HessianUnavailable, Minimum, Problem
from .callables import from_functions
from .functions import ackley, beale, himmelblau, rastrigin, rosenbrock, zakharov
from .networks import one_neuron, poly_five, poly_four, poly_three, poly_two
from .quadratics import least_squares, quadratic, random_least_squares
from .streamed import Streamed, streamed
from .torch_module import blobs, digits_mlp, torch_module

__all__ = [
    "CriticalPoint",
    "CriticalPointsUnavailable",
    "HessianUnavailable",
    "Minimum",
    "Problem",
    "Streamed",
    "ackley",
    "beale",
    "blobs",
    "digits_mlp",
    "from_functions",
    "himmelblau",
    "least_squares",
    "one_neuron",
    "poly_five",
    "poly_four",
    "poly_three",
    "poly_two",
    "quadratic",
    "random_least_squares",
    "rastrigin",
    "rosenbrock",
    "streamed",
    "torch_module",
    "zakharov",
]
