"""Parameter constraints, declared once per class as a table and checked at ``fit``.

As scikit-learn's ``_parameter_constraints`` (whose private module this does
not import): each estimator class declares, for each of its parameters, the
list of what it accepts, and :func:`validate_params` checks every parameter
against its list before any data is read. A value that none of them accepts
raises :class:`InvalidParameterError` (a ``ValueError`` and a ``TypeError``),
with a message that names the parameter, what it accepts and what it got.
Rules that tie several parameters together stay in the class's own code.

A constraint is ``None`` (the value ``None``), a type (``str``, ``bool``,
``VolumePreprocessor``), :class:`Interval` (numbers in a range),
:class:`Options` (a set of values) or :class:`Satisfies` (a named predicate).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Interval", "InvalidParameterError", "Options", "Satisfies", "validate_params"]


class InvalidParameterError(ValueError, TypeError):
    """A parameter outside its constraints; a ``ValueError`` and a ``TypeError``."""


class Interval:
    """Numbers of a kind within bounds.

    Parameters
    ----------
    kind : {"int", "real"}
        ``"int"``: integers (not bools); ``"real"``: any finite real number
        (ints included, bools not).
    low, high : float or None
        Bounds; ``None`` leaves that side open.
    closed : {"both", "left", "right", "neither"}, default="both"
        Which bounds belong to the interval.
    """

    def __init__(
        self, kind: str, low: float | None = None, high: float | None = None, closed: str = "both"
    ) -> None:
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def accepts(self, value: Any) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return False
        number_type = numbers.Integral if self.kind == "int" else numbers.Real
        if not isinstance(value, number_type) or not np.isfinite(value):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        noun = "an int" if self.kind == "int" else "a number"
        if self.low is not None and self.high is not None:
            left = "[" if self.closed in ("both", "left") else "("
            right = "]" if self.closed in ("both", "right") else ")"
            return f"{noun} in {left}{self.low}, {self.high}{right}"
        if self.low is not None:
            return f"{noun} {'>=' if self.closed in ('both', 'left') else '>'} {self.low}"
        if self.high is not None:
            return f"{noun} {'<=' if self.closed in ('both', 'right') else '<'} {self.high}"
        return noun


class Options:
    """One of a fixed set of values."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def accepts(self, value: Any) -> bool:
        try:
            return any(value == option and _same_kind(value, option) for option in self.values)
        except (TypeError, ValueError):  # arrays and other values without a plain ==
            return False

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class Satisfies:
    """Values for which ``predicate`` is true, described as ``description``."""

    def __init__(self, predicate: Callable[[Any], bool], description: str) -> None:
        self.predicate, self.description = predicate, description

    def accepts(self, value: Any) -> bool:
        try:
            return bool(self.predicate(value))
        except (TypeError, ValueError):
            return False

    def __str__(self) -> str:
        return self.description


def _same_kind(value: Any, option: Any) -> bool:
    # True == 1 and np.str_("mean") == "mean": only the second is the same option.
    if isinstance(option, str):
        return isinstance(value, str)
    return type(value) is type(option)


def _accepts(constraint: Any, value: Any) -> bool:
    if constraint is None:
        return value is None
    if isinstance(constraint, type):
        return isinstance(value, constraint)
    return constraint.accepts(value)


def _describe(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, type):
        article = "an" if constraint.__name__[0].lower() in "aeiou" else "a"
        return f"{article} {constraint.__name__}"
    return str(constraint)


def validate_params(
    owner: str, params: Mapping[str, Any], constraints: Mapping[str, Sequence[Any]]
) -> None:
    """Check each of ``params`` that ``constraints`` names against its list of constraints.

    Parameters
    ----------
    owner : str
        The class name, for the message.
    params : mapping
        Parameter values, e.g. ``estimator.get_params(deep=False)``.
    constraints : mapping of str to list
        What each parameter accepts; a value is valid when any entry accepts it.

    Raises
    ------
    InvalidParameterError
        Naming the first parameter that no constraint accepts.

    Examples
    --------
    >>> from slicelearn._validation import Interval, validate_params
    >>> validate_params("Model", {"n": 0}, {"n": [Interval("int", 1)]})
    Traceback (most recent call last):
    ...
    slicelearn._validation.InvalidParameterError: Model: n must be an int >= 1, got 0.
    """
    for name, allowed in constraints.items():
        if name not in params:
            continue
        value = params[name]
        if any(_accepts(constraint, value) for constraint in allowed):
            continue
        described = [_describe(constraint) for constraint in allowed]
        if len(described) > 1:
            described = [", ".join(described[:-1]) + " or " + described[-1]]
        raise InvalidParameterError(f"{owner}: {name} must be {described[0]}, got {value!r}.")


def parameter_constraints(cls: type) -> dict[str, list]:
    """``cls``'s constraints: every class's ``_parameter_constraints`` along its MRO, merged.

    Each class declares only its own parameters' entries; a subclass's entry
    for a name replaces its bases'.
    """
    merged: dict[str, list] = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get("_parameter_constraints", {}))
    return merged


def validate_estimator(estimator: Any) -> None:
    """Check ``estimator.get_params(deep=False)`` against :func:`parameter_constraints`."""
    validate_params(
        type(estimator).__name__,
        estimator.get_params(deep=False),
        parameter_constraints(type(estimator)),
    )


#: Booleans, numpy's included.
BOOLEAN = Satisfies(lambda value: isinstance(value, (bool, np.bool_)), "a bool")
#: What ``check_random_state`` takes.
RANDOM_STATE = Satisfies(
    lambda value: (
        value is None
        or isinstance(value, np.random.RandomState)
        or (isinstance(value, numbers.Integral) and not isinstance(value, bool))
    ),
    "an int, a numpy RandomState or None",
)
#: A non-empty sequence of positive numbers (penalty grids).
POSITIVE_GRID = Satisfies(
    lambda value: (
        not isinstance(value, (str, bytes))
        and len(value) > 0
        and all(Interval("real", 0, closed="neither").accepts(v) for v in value)
    ),
    "a non-empty sequence of positive numbers",
)
