"""Write files so that a reader sees either nothing or the whole file, never a part."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], keep_suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    The temp file lives in the same directory so the final ``os.replace`` is atomic on
    POSIX file systems. It is hidden and marked ``.tmp`` so listings skip it; ``keep_suffix``
    is appended for writers that insist on a file ending (Keras wants ``.weights.h5``). On
    any exception the temp file is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}{TMP_SUFFIX}{keep_suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(final.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry is; some file systems refuse.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform lets a directory be opened; durability is best-effort
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
