"""Atomic file writes: a crash or Ctrl-C leaves either the old file or the new one, never a
half-written one. Everything the package saves for a user (skill libraries, results, run
state, reports, plots, models) goes through :func:`atomic_write`.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.json"
    >>> _ = atomic_write_text(p, "{}\\n")
    >>> p.read_text()
    '{}\\n'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file in ``path``'s folder, then rename it to
    ``path``. The file gets the mode a plain ``open()`` would give it (0666 & ~umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_append_text(path: str | os.PathLike, text: str) -> Path:
    """Append ``text`` to ``path`` (created if missing) by rewriting the whole file through
    :func:`atomic_write_text`, so a crash leaves the old rows or all of the new ones. Meant
    for small row files (one JSON line per finished round); the cost grows with the file."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    return atomic_write_text(path, old + text)
