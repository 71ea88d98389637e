"""skorch nets as scikit-learn estimators: ``device="auto"``, private skorch state, parameters.

:class:`SkorchParamsMixin` holds what makes a skorch net follow
scikit-learn's contract and nothing about slices: ``__init__`` stores
parameters only (skorch's own state moves to private names), ``device``
keeps the user's value as the parameter while skorch reads the resolved
device, routed defaults apply where skorch reads ``prefix__name``
parameters, and old pickles still load.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from .distributed import launched_distributed

__all__ = ["SkorchParamsMixin", "resolve_device"]


def resolve_device(device: str | torch.device | None) -> str | torch.device | None:
    """Map ``"auto"`` to ``"cuda"`` when a GPU is present, else ``"cpu"``.

    Under a distributed launcher (torchrun), ``"auto"`` and ``"cuda"`` mean
    this process's own GPU, ``cuda:LOCAL_RANK``.
    """
    if not isinstance(device, str):
        return device  # a torch.device, None, or a value that fit will reject
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and launched_distributed() and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


# Set by skorch's __init__, kept private by the estimators.
_PRIVATE_SKORCH_STATE = ("history_", "initialized_", "virtual_params_")


def _private_state(name: str, default: Callable[[], Any]) -> property:
    """An attribute stored as ``_<name>`` in the instance, created on first read."""
    key = "_" + name
    return property(
        lambda self: self.__dict__.setdefault(key, default()),
        lambda self, value: self.__dict__.__setitem__(key, value),
    )


class SkorchParamsMixin:
    """scikit-learn's parameter contract for a skorch ``NeuralNet`` subclass.

    ``routed_defaults`` (a class attribute, ``{prefix: {name: value}}``) are
    skorch defaults that differ for the subclass, applied where skorch reads
    routed parameters, so that ``__init__`` stores only what the user gave.
    """

    routed_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    # -- device="auto" ---------------------------------------------------------
    # skorch reads self.device wherever it moves tensors; resolving "auto" on
    # read keeps the user's value as the parameter (get_params, clone, pickle).
    @property
    def device(self):
        return resolve_device(self.__dict__.get("device", "auto"))

    @device.setter
    def device(self, value) -> None:
        self.__dict__["device"] = value

    # -- state skorch's __init__ sets ----------------------------------------------
    # sklearn's contract is that __init__ stores parameters only; skorch's also
    # sets these three. Kept under private names, they stay out of the public
    # attributes that sklearn (and check_is_fitted) read as fitted state.
    history_ = _private_state("history_", lambda: None)
    initialized_ = _private_state("initialized_", lambda: False)
    virtual_params_ = _private_state("virtual_params_", dict)

    def get_params(self, deep: bool = True, **kwargs) -> dict[str, Any]:
        params = super().get_params(deep=deep, **kwargs)
        params["device"] = self.__dict__.get("device", "auto")
        return params

    def set_params(self, **params: Any):
        # A new callback list is stored as given and built at the next
        # initialize, like every other parameter; skorch would build it now,
        # which fails on (or runs) values that fit has not validated yet.
        if "callbacks" in params and not self.initialized_:
            self.__dict__["callbacks"] = params.pop("callbacks")
        return super().set_params(**params)

    def get_params_for(self, prefix: str) -> dict[str, Any]:
        return {**self.routed_defaults.get(prefix, {}), **super().get_params_for(prefix)}

    def _get_param_names(self) -> list[str]:
        # skorch counts every public attribute without a trailing underscore as
        # a parameter (routed ``prefix__name`` ones included); private state is
        # not one. ``module`` is fixed by the subclass: its parameters set the architecture.
        return sorted(
            name for name in super()._get_param_names() if name != "module" and name[0] != "_"
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Older pickles hold skorch's state under its public names.
        for name in _PRIVATE_SKORCH_STATE:
            if name in state:
                state["_" + name] = state.pop(name)
        requested = state.get("device")
        super().__setstate__({**state, "device": resolve_device(requested)})
        self.__dict__["device"] = requested
