"""Floating-point precision of the forward pass: what ``precision="auto"`` means where."""

from __future__ import annotations

import torch

__all__ = ["PRECISIONS", "native_bf16", "resolve_precision"]

#: The estimators' ``precision`` values.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX).

    Without either, bfloat16 is emulated and slower than float32.

    Examples
    --------
    >>> from slicelearn.precision import native_bf16
    >>> isinstance(native_bf16(), bool)
    True
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, device: str) -> str:
    """The autocast precision that ``precision`` means on ``device``.

    ``"auto"`` is ``"bf16"`` on CUDA and on CPUs with native bfloat16, and
    ``"fp32"`` elsewhere; any other value is returned as it is.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"}
    device : str
        A torch device string, e.g. ``"cpu"`` or ``"cuda:0"``.

    Returns
    -------
    str
        ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Examples
    --------
    >>> from slicelearn.precision import resolve_precision
    >>> resolve_precision("auto", "cuda:0")
    'bf16'
    >>> resolve_precision("fp32", "cuda:0")
    'fp32'
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision != "auto":
        return precision
    if device.startswith("cuda") or (device.startswith("cpu") and native_bf16()):
        return "bf16"
    return "fp32"
