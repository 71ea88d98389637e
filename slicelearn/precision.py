"""Floating-point precision of the forward pass: what ``precision="auto"`` means where."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["PRECISIONS", "autocast", "native_bf16", "resolve_precision"]

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


def resolve_precision(precision: str, device: str, training: bool = False) -> str:
    """The autocast precision that ``precision`` means on ``device``.

    ``"auto"`` is ``"bf16"`` on CUDA. On CPUs with native bfloat16 it is
    ``"bf16"`` for evaluation (prediction, validation) and ``"fp32"`` for
    training steps: on such a CPU (AMD EPYC with AVX512-BF16, 2 threads,
    ``benchmarks/speed/finetune_speed.py``) bf16 autocast made prediction
    1.45 times faster but the CPU fine-tuning recipe's training steps (16
    slices of the brain's box per volume) 0.70 times as fast: casting the
    weights every step outweighs the small convolutions. Elsewhere ``"auto"``
    is ``"fp32"``. Any other value is returned as it is.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"}
    device : str
        A torch device string, e.g. ``"cpu"`` or ``"cuda:0"``.
    training : bool, default=False
        Whether the pass is a training step (with gradients).

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
    >>> resolve_precision("auto", "cpu", training=True)
    'fp32'
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16"
    if device.startswith("cpu") and native_bf16() and not training:
        return "bf16"
    return "fp32"


def autocast(
    precision: str, device: str, training: bool = False
) -> contextlib.AbstractContextManager | None:
    """The forward pass's autocast context for ``precision`` on ``device``, or None for fp32.

    ``training`` as in :func:`resolve_precision`.

    Examples
    --------
    >>> from slicelearn.precision import autocast
    >>> autocast("fp32", "cpu") is None
    True
    >>> autocast("bf16", "cpu").fast_dtype
    torch.bfloat16
    """
    resolved = resolve_precision(precision, device, training)
    if resolved == "fp32":
        return None
    dtype = torch.bfloat16 if resolved == "bf16" else torch.float16
    return torch.autocast(device.split(":")[0], dtype=dtype)
