"""Host memory reuse for CPU training and inference (glibc's allocator).

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every
block above ``M_MMAP_THRESHOLD`` with a fresh ``mmap`` and unmaps it on free, so
a slice model that allocates gigabytes of activations per step pays a page
fault, and the kernel's zeroing, for every 4 KiB page, at every step. On the
2-core benchmark machine that was 10 to 15 % of a ResNet-18 training step
(``benchmarks/speed/run.py``). PyTorch's CPU tuning guide suggests preloading
jemalloc or tcmalloc for this; :func:`retain_freed_memory` gets the same reuse
from glibc itself, for the duration of a block, and gives the memory back at
its end. It changes no number, only where freed memory goes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["retain_freed_memory"]

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Where glibc's own dynamic thresholds end up once a process has freed a block
# of 32 MiB or more, as any slice model does; setting them switches that
# adjustment off, so the block's end sets these.
_GLIBC_SETTLED_MMAP_THRESHOLD = 32 * 2**20
_GLIBC_SETTLED_TRIM_THRESHOLD = 64 * 2**20
# Blocks up to 1 GiB come from the reusable heap; a freed heap top is kept
# while the block runs (at most INT_MAX bytes can be asked for).
_RETAINED_MMAP_THRESHOLD = 1 << 30
_RETAINED_TRIM_THRESHOLD = 2**31 - 1

_lock = threading.Lock()
_depth = 0


def _glibc() -> ctypes.CDLL | None:
    """glibc, unless another allocator or the user's own malloc settings are in charge."""
    if not sys.platform.startswith("linux"):
        return None
    if any(name.startswith("MALLOC_") for name in os.environ) or os.environ.get("LD_PRELOAD"):
        return None
    return _loaded_glibc()


@functools.cache
def _loaded_glibc() -> ctypes.CDLL | None:
    # Looked up once: find_library runs ldconfig in a subprocess, and every
    # prediction (each epoch's validation scoring, too) enters the block below.
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    # musl and others have mallopt semantics of their own, or none.
    return libc if hasattr(libc, "gnu_get_libc_version") else None


@contextlib.contextmanager
def retain_freed_memory() -> Iterator[bool]:
    """Reuse freed host memory inside the block instead of unmapping it.

    Yields whether the setting applies: on Linux with glibc, unless a
    ``MALLOC_*`` environment variable or ``LD_PRELOAD`` (jemalloc, tcmalloc)
    already decides. Blocks nest and may run in several threads. The
    outermost one ends by returning unused memory to the system and setting
    the thresholds to where glibc's dynamic adjustment settles in a process
    that has freed large blocks (32 MiB for ``mmap``, 64 MiB for trimming).

    Examples
    --------
    >>> import torch
    >>> from slicelearn.allocator import retain_freed_memory
    >>> with retain_freed_memory():
    ...     total = sum(float(torch.ones(1024, 1024).sum()) for _ in range(3))
    >>> total
    3145728.0
    """
    global _depth
    libc = _glibc()
    if libc is None:
        yield False
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_RETAINED_MMAP_THRESHOLD))
            libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_RETAINED_TRIM_THRESHOLD))
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_GLIBC_SETTLED_MMAP_THRESHOLD))
                libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_GLIBC_SETTLED_TRIM_THRESHOLD))
                libc.malloc_trim(ctypes.c_size_t(0))
