"""Shared parameters declared once: a base ``__init__`` and the merged signatures of its estimators.

A family of estimators (the slice networks, the linear readouts) declares
and stores its shared parameters in one base ``__init__``; each estimator's
``__init__`` declares only the parameters and defaults that are its own and
passes the rest on. :func:`with_shared_parameters` gives that ``__init__`` the
full signature, so scikit-learn's checks, ``help()`` and editors still see
every parameter with its default.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

__all__ = ["with_shared_parameters"]


def with_shared_parameters(init: Callable, base_init: Callable) -> inspect.Signature:
    """``init``'s signature, completed with ``base_init``'s parameters in their order.

    ``init``'s positional parameters come first, then its own keyword-only
    ones that the base lacks, then the base's keyword-only parameters (with
    ``init``'s default where it overrides one) and the base's ``**kwargs``.
    """
    own = inspect.signature(init).parameters
    shared = inspect.signature(base_init).parameters
    keyword = inspect.Parameter.KEYWORD_ONLY
    merged = [p for p in own.values() if p.kind is not keyword and p.kind is not p.VAR_KEYWORD]
    merged += [p for name, p in own.items() if p.kind is keyword and name not in shared]
    merged += [
        own.get(name, p)
        for name, p in shared.items()
        if p.kind is keyword or p.kind is p.VAR_KEYWORD
    ]
    return inspect.Signature(merged, return_annotation=None)
