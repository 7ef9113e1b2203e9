"""Writing files without ever leaving a half-written one where a good one was.

Every file graphprune produces (pruned models, plans, ONNX files, reports, checkpoints, DOT/HTML views) goes
through :func:`write_atomic`: the content is written to a temporary file in the target's folder, flushed to
disk, then renamed over the target.  A rename within one folder is atomic on POSIX and Windows, so a save that
fails half way (an unpicklable module, a full disk, a killed process) leaves the old file, if any, untouched
and no temporary file behind.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["write_atomic", "write_text_atomic", "write_bytes_atomic", "atomic_path"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    The folder of ``path`` is created if missing.  Use it for writers that insist on a file name
    (``torch.onnx.export``, ``torch.save``)::

        with atomic_path("out/model.onnx") as tmp:
            torch.onnx.export(model, x, str(tmp))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # NOTE: flush to disk before the rename, or a crash can leave zeros
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))  # NOTE: mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """The replaced file's mode, or what ``open()`` would give a new file under the current umask."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and move its file onto ``path`` only if it returned without error."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))
