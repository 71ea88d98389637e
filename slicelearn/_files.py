"""Writing files atomically, so a crash never leaves a complete-looking partial file.

Every file slicelearn writes for later reading (cached volumes, model files,
training checkpoints) goes through :func:`write_atomic`: the content goes to a
temporary file in the same folder, is flushed to disk, and is renamed over
the target in one step. A reader sees the old file or the new one, never a
half-written one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomic"]


def _default_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process's umask (0o644 usually)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary file, then rename it to ``path``.

    The parent folder is created if needed; on any error the temporary file
    is removed and ``path`` is left as it was. The file gets the mode any
    other program's new file would (temporary files are private, 0o600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, _default_mode())
        os.replace(handle.name, path)
    finally:
        Path(handle.name).unlink(missing_ok=True)
    return path
