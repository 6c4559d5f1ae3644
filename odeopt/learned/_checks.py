"""Argument checks shared by odeopt.learned: each raises at once with a message that names the
function, the argument as the caller wrote it and its value (``"meta_train: lr must be > 0,
got lr=0.0"``), and says "finite" for NaN/inf.

TypeError for a value of the wrong kind (a string, a bool where a number is meant, a class
where an instance is meant), ValueError for a value of the right kind out of range.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import checks as _checks

__all__ = ["check_count", "check_flag", "check_float_dtype", "check_generator", "check_positive"]

# The floating dtypes the learned optimizer computes in (complex and integer ones are refused).
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_positive(where: str, name: str, value: Any) -> float:
    """``value`` as a float, required real (not bool), finite and > 0 (a 0-d real tensor or
    numpy scalar is taken)."""
    return _checks.check_positive(name, value, where)


def check_count(where: str, name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum``: integers (numpy's too) are taken; bools, strings and
    non-integral numbers (also 3.0) are refused."""
    return _checks.check_count(name, value, minimum, where, integral_floats=False)


def check_flag(where: str, name: str, value: Any) -> bool:
    """``value`` must be a bool (numpy's bool too): ``normalize="no"`` is not silently true."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise TypeError(f"{where}: {name} must be True or False, got {name}={value!r}")
    return bool(value)


def check_float_dtype(where: str, name: str, value: Any) -> torch.dtype:
    """``value`` must be a real floating torch dtype (float16, bfloat16, float32, float64)."""
    if not isinstance(value, torch.dtype):
        raise TypeError(
            f"{where}: {name} must be a torch floating dtype such as torch.float32, "
            f"got {name}={value!r}"
        )
    if value not in FLOAT_DTYPES:
        raise ValueError(
            f"{where}: {name} must be a real floating dtype (float16, bfloat16, float32, "
            f"float64), got {name}={value}"
        )
    return value


def check_generator(where: str, name: str, value: Any) -> torch.Generator:
    """``value`` must be a ``torch.Generator`` (e.g. ``torch.Generator().manual_seed(0)``)."""
    if not isinstance(value, torch.Generator):
        raise TypeError(
            f"{where}: {name} must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), "
            f"got {name}={value!r}"
        )
    return value
