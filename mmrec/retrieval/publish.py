"""Puts a new bundle in place without ever leaving the bundle path empty.

Layout beside the bundle path `NAME` (docs/bundle.md, "Writing is atomic"):

    NAME -> .NAME.versions/<id>     a relative symlink: the pointer
    .NAME.versions/<id>/            one complete bundle per version

A new version is written and fsynced in its own directory, then a new symlink
is renamed over `NAME` in one `rename(2)`: a reader sees the old bundle or the
new one, and a process killed at any point leaves `NAME` loadable. The first
export over a plain bundle directory exchanges it with the pointer atomically
(`renameat2(RENAME_EXCHANGE)`). The current and the previous version are kept
(readers may still be loading it); older ones and leftovers of killed exports
are removed. One writer at a time: an exclusive `flock` on `.NAME.versions`.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pathlib
import shutil
import time
import uuid
from collections.abc import Callable, Iterator

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def versions_dir(out_dir: pathlib.Path) -> pathlib.Path:
  return out_dir.with_name(f".{out_dir.name}.versions")


def publish(out_dir: pathlib.Path, fill: Callable[[pathlib.Path], None]) -> pathlib.Path:
  """Calls `fill(new_dir)` to write a bundle, then makes `out_dir` point at it."""
  out_dir = pathlib.Path(out_dir).absolute()
  out_dir.parent.mkdir(parents=True, exist_ok=True)
  versions = versions_dir(out_dir)
  versions.mkdir(exist_ok=True)
  with _locked(versions):
    new = versions / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    new.mkdir()
    try:
      fill(new)
      fsync_tree(new)
      previous = _switch(out_dir, new)
    except BaseException:
      shutil.rmtree(new, ignore_errors=True)
      raise
    _prune(out_dir, keep={new.name, previous})
  return out_dir


@contextlib.contextmanager
def _locked(folder: pathlib.Path) -> Iterator[None]:
  fd = os.open(folder, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)  # releases the lock


def _switch(out_dir: pathlib.Path, new: pathlib.Path) -> str | None:
  """Points `out_dir` at `new` atomically; returns the version it pointed at before."""
  link = out_dir.with_name(f".{out_dir.name}.link-{uuid.uuid4().hex[:8]}")
  os.symlink(os.path.relpath(new, out_dir.parent), link)
  previous = None
  try:
    if out_dir.is_symlink() or not out_dir.exists():
      previous = pathlib.Path(os.readlink(out_dir)).name if out_dir.is_symlink() else None
      os.replace(link, out_dir)
    else:  # a plain bundle directory (an older export) or an empty one
      _exchange(link, out_dir)
      shutil.rmtree(link)  # `link` now names the old directory
  finally:
    if link.is_symlink():
      link.unlink()
  fsync_dir(out_dir.parent)
  return previous


def _exchange(a: pathlib.Path, b: pathlib.Path) -> None:
  """Swaps two paths in one step (Linux renameat2); else two renames, briefly leaving
  `b` absent (only on the first export over a plain bundle directory)."""
  rename = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
  if rename is not None:
    if rename(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
      return
    if ctypes.get_errno() not in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: no exchange here
      raise OSError(ctypes.get_errno(), f"renameat2 exchange of {a} and {b} failed")
  aside = b.with_name(f".{b.name}.old-{uuid.uuid4().hex[:8]}")
  os.rename(b, aside)
  os.replace(a, b)
  os.rename(aside, a)


def _prune(out_dir: pathlib.Path, keep: set) -> None:
  """Removes versions other than `keep` and pointers left by killed exports."""
  for entry in versions_dir(out_dir).iterdir():
    if entry.name not in keep:
      shutil.rmtree(entry, ignore_errors=True)
  for link in out_dir.parent.glob(f".{out_dir.name}.link-*"):
    if link.is_symlink():
      link.unlink(missing_ok=True)


def fsync_tree(root: pathlib.Path) -> None:
  for p in root.rglob("*"):
    if p.is_file():
      with open(p, "rb") as f:
        os.fsync(f.fileno())
  for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
    fsync_dir(d)


def fsync_dir(path: pathlib.Path) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)
