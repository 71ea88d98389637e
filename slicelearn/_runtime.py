"""The runtime context of one fit or prediction, set on entry and restored on exit.

Each helper is a context manager with one job: :func:`seeded` draws torch's
random numbers from the estimator's ``random_state`` without touching the
caller's generator, :func:`host_memory` lets the CPU reuse freed memory
(:mod:`slicelearn.allocator`), and :func:`cudnn_autotune` turns on cuDNN's
search for the fastest convolution on CUDA. None of them outlives the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from sklearn.utils import check_random_state

from .allocator import retain_freed_memory

__all__ = ["cudnn_autotune", "host_memory", "seeded"]


def seeded(random_state: Any, device: Any) -> contextlib.AbstractContextManager:
    """Seed torch (and every CUDA device in use) from ``random_state`` inside the block.

    ``None`` leaves the generators alone. Otherwise they are forked, so the
    caller's global torch RNG is the same after the block as before.
    """
    if random_state is None:
        return contextlib.nullcontext()
    return _forked_rng(check_random_state(random_state).randint(2**31 - 1), device)


@contextlib.contextmanager
def _forked_rng(seed: int, device: Any) -> Iterator[None]:
    devices = []
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        devices = list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def host_memory(device: Any) -> contextlib.AbstractContextManager:
    """Reuse freed host memory while the CPU computes (see :mod:`slicelearn.allocator`)."""
    if str(device).startswith("cpu"):
        return retain_freed_memory()
    return contextlib.nullcontext()


def cudnn_autotune(device: Any) -> contextlib.AbstractContextManager:
    """cuDNN benchmark mode inside the block, on CUDA.

    Every batch has the same slice shape, so cuDNN's search for the fastest
    convolution pays back at once. Not when the user asked for deterministic
    algorithms, and never as a process-wide switch that outlives the call.
    """
    if not str(device).startswith("cuda") or torch.are_deterministic_algorithms_enabled():
        return contextlib.nullcontext()
    return _cudnn_benchmark()


@contextlib.contextmanager
def _cudnn_benchmark() -> Iterator[None]:
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
