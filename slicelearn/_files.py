"""Where slicelearn keeps its files, and writing them atomically.

:func:`data_home` is the one place that resolves the data home
(``$SLICELEARN_DATA``, else ``~/slicelearn_data``): downloads and the
preprocessed-volume cache both live under it.

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

__all__ = ["data_home", "write_atomic"]


def data_home(data_home: str | os.PathLike | None = None, create: bool = False) -> Path:
    """The data home: ``data_home``, else ``$SLICELEARN_DATA`` if not empty, else
    ``~/slicelearn_data`` (created when ``create``)."""
    home = data_home or os.environ.get("SLICELEARN_DATA") or os.path.join("~", "slicelearn_data")
    path = Path(home).expanduser()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


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
