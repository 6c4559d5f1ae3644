"""Argument checks shared across odeopt: each raises at once with a message that names the
argument as the caller wrote it and its value (``"h must be > 0, got h=0"``; with ``where``
the function first, ``"meta_train: lr must be finite, got lr=nan"``), and says "finite" for
NaN/inf. TypeError for a value of the wrong kind (a string, a bool, a complex number),
ValueError for a value of the right kind out of range.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_count", "check_positive", "check_problem", "check_real", "check_starts"]


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def check_real(
    name: str, value: Any, where: str = "", allow_inf: bool = False, finite: bool = True
) -> float:
    """``value`` as a float: a real number (bools and complex refused; a 0-d real numpy array
    or torch tensor is taken), never NaN, finite unless ``allow_inf`` (with ``finite=False``
    only the kind is checked: the caller words the finiteness error itself)."""
    if getattr(value, "ndim", None) == 0 and getattr(value, "dtype", None) is not None:
        kind = getattr(value.dtype, "kind", None)  # numpy
        floating = getattr(value.dtype, "is_floating_point", False)  # torch
        if kind in ("i", "u", "f") or floating:
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_prefix(where)}{name} must be a real number, got {name}={value!r}")
    v = float(value)
    if finite and (math.isnan(v) or (math.isinf(v) and not allow_inf)):
        raise ValueError(f"{_prefix(where)}{name} must be finite, got {name}={v}")
    return v


def check_positive(
    name: str, value: Any, where: str = "", allow_zero: bool = False, allow_inf: bool = False
) -> float:
    """A real ``value`` > 0 (≥ 0 with ``allow_zero``), finite unless ``allow_inf``."""
    v = check_real(name, value, where, allow_inf)
    if v < 0 or (v == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{_prefix(where)}{name} must be {bound}, got {name}={v:g}")
    return v


def check_count(
    name: str, value: Any, minimum: int = 1, where: str = "", integral_floats: bool = True
) -> int:
    """An integer ≥ ``minimum``; with ``integral_floats`` a float such as 1e5 is taken, 2.7
    never is (2.7 steps are not silently 2). Bools and strings are refused."""
    msg = f"{_prefix(where)}{name} must be an integer ≥ {minimum}, got {name}={value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(msg)
    if isinstance(value, numbers.Integral):
        v = int(value)
    elif integral_floats and math.isfinite(value) and float(value).is_integer():
        v = int(value)
    else:
        raise ValueError(msg)
    if v < minimum:
        raise ValueError(f"{_prefix(where)}{name} must be an integer ≥ {minimum}, got {name}={v}")
    return v


def check_problem(problem: Any, where: str = "") -> None:
    """A problem is a batched objective: it has ``value_and_grad(theta) -> (F, ∇F)``."""
    if not hasattr(problem, "value_and_grad"):
        raise TypeError(
            f"{_prefix(where)}the problem must have value_and_grad(theta) -> (F, ∇F) (see "
            f"odeopt.problems), got {type(problem).__name__}"
        )


def check_starts(x0: Any, where: str = "") -> None:
    """Starts are a mapping of block names to (batch, n) arrays."""
    from collections.abc import Mapping

    if not isinstance(x0, Mapping):
        raise TypeError(
            f"{_prefix(where)}x0 maps block names to arrays of shape (batch, n), e.g. "
            f"{{'theta': theta0}}; got {type(x0).__name__}"
        )
