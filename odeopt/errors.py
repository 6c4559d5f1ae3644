"""odeopt's own exceptions."""

from __future__ import annotations

__all__ = ["StructureError"]


class StructureError(ValueError):
    """A system whose structure is invalid: J not skew, R not symmetric or not positive
    semidefinite, H not a scalar of globals, shapes that disagree, undeclared symbols.

    The message names the offending entry.
    """
