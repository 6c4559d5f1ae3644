"""The option values of the ``odeopt`` command line, parsed and checked.

Each parser turns the text of one option into a value or raises a ValueError whose message
names the option and the bad text (the command prints it after ``odeopt:`` and exits 2,
:func:`_fail`): ``NAME=VALUE`` pairs (``--param``, ``--set``: no '=', an empty or repeated
NAME, a NAME the system does not have), finite numbers, integers ≥ 1, the names tuned by
``analyze --over`` (default: h and :data:`DEFAULT_TUNED` where the system has them), and an
output file whose directory must exist; and which named optimizer (:mod:`odeopt.optimizers`)
a NAME stands for (:func:`_resolve`).
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import zoo

if TYPE_CHECKING:
    from .optimizers import LearnedEntry, NamedOptimizer

#: the scheme a zoo system is discretized by when ``--scheme`` is not given
DEFAULT_SCHEME = "symplectic_euler"


def _pairs(items: Sequence[str], flag: str, known: Callable[[str], None]) -> dict[str, str]:
    """``FLAG NAME=VALUE`` strings as {NAME: VALUE text}; a ValueError names the bad item: no
    '=', an empty NAME, a NAME given twice, or one that ``known(NAME)`` refuses."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{flag} takes NAME=VALUE, got {flag} {item!r}")
        if key in out:
            raise ValueError(f"{flag} {key} is given twice")
        known(key)
        out[key] = value
    return out


def _parse_params(items: Sequence[str], name: str | None = None) -> dict[str, float]:
    """``--param NAME=VALUE`` strings as {NAME: float(VALUE)} (see :func:`_pairs`); when the
    zoo system ``name`` is given, a NAME must be one of its parameters."""
    known = _zoo_parameters(name) if name is not None else None

    def check(key: str) -> None:
        if known is not None and key not in known:
            listed = ", ".join(known) if known else "none"
            raise ValueError(f"{name} has no parameter {key!r}; its parameters: {listed}")

    out = {}
    for key, value in _pairs(items, "--param", check).items():
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"--param {key}: {value!r} is not a number") from None
    return out


def _zoo_parameters(name: str) -> list[str] | None:
    """The keyword parameters of the zoo system ``name`` (None: unknown system or a factory
    that takes any keyword, so nothing to check here)."""
    factory = zoo.REGISTRY.get(name)
    if factory is None:
        return None
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def _output_problem(option: str, output: str) -> str | None:
    """Why ``output`` cannot be written as a file (a message naming it), or None: it is an
    existing directory, or its directory is missing or not a directory."""
    path = Path(output)
    if path.is_dir():
        return f"{option} {output!r} is a directory; give a file name, e.g. {path / 'opt.py'}"
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        return f"{option} {output!r}: {str(parent)!r} is not a directory"
    if not parent.exists():
        return (
            f"{option} {output!r}: the directory {str(parent)!r} does not exist (create it first)"
        )
    return None


def _fail(message: str) -> int:
    """Print ``odeopt: message`` to stderr; the exit code of a usage error, 2."""
    print(f"odeopt: {message}", file=sys.stderr)
    return 2


#: parameters tuned together with the step h by default, when the system has them
DEFAULT_TUNED = ("friction",)


def _number(option: str, text: str) -> float:
    """``text`` as a finite float; a ValueError names ``option`` and the text."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{option}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{option} must be finite, got {option} {text}")
    return value


def _integer(option: str, text: str) -> int:
    """``text`` as an integer ≥ 1; a ValueError names ``option`` and the text."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{option} must be an integer ≥ 1, got {option} {text!r}") from None
    if value < 1:
        raise ValueError(f"{option} must be an integer ≥ 1, got {option} {value}")
    return value


def _parse_set(items: Sequence[str], names: Sequence[str], system: str) -> dict[str, float]:
    """``--set NAME=VALUE`` strings as {NAME: VALUE} (see :func:`_pairs`): NAME one of
    ``names`` (h and the system's keywords), VALUE a finite number."""

    def check(key: str) -> None:
        if key not in names:
            raise ValueError(
                f"--set {key}: {system} has no parameter {key!r}; its values: {', '.join(names)}"
            )

    return {k: _number(f"--set {k}", v) for k, v in _pairs(items, "--set", check).items()}


def _parse_over(
    text: str | None, names: Sequence[str], fixed: dict[str, float], system: str
) -> tuple[str, ...]:
    """The parameters to tune: ``--over`` (comma-separated), or by default h plus
    :data:`DEFAULT_TUNED` where the system has them, less the names fixed by ``--set``."""
    if text is None:
        default = ("h", *(n for n in DEFAULT_TUNED if n in names))
        return tuple(n for n in default if n not in fixed)
    over = tuple(n.strip() for n in text.split(","))
    if not all(over):
        raise ValueError(f"--over takes comma-separated names, e.g. h,friction; got {text!r}")
    for n in over:
        if n not in names:
            raise ValueError(
                f"--over {text}: {system} has no parameter {n!r}; its values: {', '.join(names)}"
            )
        if n in fixed:
            raise ValueError(f"--over {text}: {n} is also fixed by --set {n}={fixed[n]:g}")
    if len(set(over)) != len(over):
        raise ValueError(f"--over {text} names a parameter twice")
    return over


def _resolve(
    name: str, scheme: str | None, params: Sequence[str]
) -> NamedOptimizer | LearnedEntry | None:
    """The named optimizer ``name`` stands for (its system's parameters from ``--param``), or
    None: a zoo system (or an unknown name, which :func:`odeopt.zoo.get` refuses).

    A name that is both a zoo system and a named optimizer is the zoo system with ``--scheme``
    given, and without it when the two are the same rule (the system with
    :data:`DEFAULT_SCHEME`); otherwise it is ambiguous: ValueError. ``--scheme`` with a named
    optimizer (it has its own scheme) is a ValueError naming its system to use instead."""
    from . import optimizers

    entry = optimizers.REGISTRY.get(name)
    if entry is None:
        return None
    if name in zoo.REGISTRY:
        same = (
            entry.scheme is not None
            and entry.system_name == name
            and entry.scheme.name == DEFAULT_SCHEME
            and not getattr(entry, "params", None)
        )
        if scheme is not None or same:
            return None
        raise ValueError(
            f"{name!r} is ambiguous: the zoo system {name} (with --scheme, default "
            f"{DEFAULT_SCHEME}) and the named optimizer {name} ({entry.recipe}) are different "
            f"rules; pass --scheme S for the zoo system, or use "
            f"odeopt.optimizers.get({name!r}) in Python for the named optimizer"
        )
    if scheme is not None:
        if entry.scheme is None:
            raise ValueError(
                f"--scheme {scheme}: {name} is the learned optimizer, it has no scheme"
            )
        raise ValueError(
            f"--scheme {scheme}: {name} is a named optimizer with its own scheme "
            f"({entry.recipe}); drop --scheme, or export its system: "
            f"{entry.system_name} --scheme {scheme}"
        )
    if params:
        if entry.scheme is None:
            raise ValueError(f"--param: {name} is the learned optimizer; it has no parameters")
        return entry.with_params(**_parse_params(params, entry.system_name))
    return entry
