"""Atomic writes of the files a WORKDIR holds: a killed run leaves the old file or the new
one, never a torn one. Standard library only (mmrec.serving may import it)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
  """A file to write that becomes `path` only when the block ends without an error: it is
  written beside `path` under a temporary name, flushed to disk, then renamed over it."""
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would outlive the rename
    with os.fdopen(fd, mode, **kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise
  _sync_directory(path.parent)


def _read_umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


_UMASK = _read_umask()  # read once, at import: os.umask is process-wide


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
  """`path.write_text(text)` (UTF-8), atomically."""
  with atomic_open(path, "w", encoding="utf-8") as f:
    f.write(text)


def copy_atomic(source: str | os.PathLike, path: str | os.PathLike) -> None:
  """`shutil.copyfile(source, path)`, atomically."""
  with open(source, "rb") as src, atomic_open(path, "wb") as dst:
    shutil.copyfileobj(src, dst)


def _sync_directory(directory: pathlib.Path) -> None:
  """Makes a rename in `directory` durable (where the platform allows it)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)
