"""Holds the served bundle and swaps in a new one when it changes on disk.

The exporter switches the bundle path (a symlink) to a complete new version
directory; the watcher notices (the directory's and manifest's inode and mtime
change, seen through the link), loads the new bundle fully in its thread, with
its checksums verified (a reload is a deploy), and swaps it in with one
reference assignment. Requests read
`watcher.current` once and finish on that bundle. A bundle that fails to load
is logged and kept in `reload_error`; the old one keeps serving.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import logging
import os
import pathlib
import threading

from mmrec.serving.bundle import Bundle, BundleError, load_bundle

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Served:
  """One loaded bundle and what was derived from it; replaced whole on reload."""
  bundle: Bundle
  signature: tuple
  loaded_at: str
  options: dict[str, frozenset]  # query method -> the keyword options it accepts
  categories: dict[str, list[str]]  # category -> item ids; {} without metadata["category"]


def _signature(path: pathlib.Path) -> tuple | None:
  """Changes whenever the directory is swapped or the manifest rewritten; None if absent."""
  try:
    d, m = os.stat(path), os.stat(path / "manifest.json")
  except OSError:
    return None
  return d.st_dev, d.st_ino, m.st_ino, m.st_mtime_ns, m.st_size


def _load(path: pathlib.Path, verify_checksums: bool) -> Served | None:
  """Loads the bundle at `path`; None when it changed on disk during the load."""
  signature = _signature(path)
  bundle = load_bundle(path, verify_checksums=verify_checksums)
  if signature is None or _signature(path) != signature:
    return None
  categories: dict[str, list[str]] = {}
  for item_id, category in zip(bundle.item_ids.tolist(), bundle.metadata.get("category", [])):
    categories.setdefault(str(category), []).append(item_id)
  options = {name: _keywords(getattr(bundle, name), bundle.search)
             for name in ("search", "similar", "search_by_history")}
  now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  return Served(bundle, signature, now, options, categories)


def _keywords(method, forwards_to) -> frozenset:
  """Keyword options `method` accepts; with **options, also those of `forwards_to`."""
  params = inspect.signature(method).parameters
  names = frozenset(params)
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
    names |= frozenset(inspect.signature(forwards_to).parameters)
  return names


class BundleWatcher:
  """Holds the served bundle and reloads it when the directory changes on disk."""

  def __init__(self, path: str | os.PathLike, poll_seconds: float = 2.0, *,
               verify_checksums: bool = True):
    self.path = pathlib.Path(path).absolute()
    self.poll_seconds = poll_seconds
    self.verify_checksums = verify_checksums  # hash every file at start-up and each reload
    self.reloads = 0
    self.reload_failures = 0
    self.reload_error: dict[str, str] | None = None
    self._failed_signature = None
    for _ in range(5):  # retried only while an export swaps the directory under us
      self.current = _load(self.path, verify_checksums)
      if self.current is not None:
        break
    else:
      raise BundleError(f"{self.path}: the bundle kept changing on disk while loading")
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def check(self) -> bool:
    """Loads and swaps in the bundle on disk if it changed; True when it swapped."""
    signature = _signature(self.path)
    if signature in (None, self.current.signature, self._failed_signature):
      return False
    try:
      served = _load(self.path, self.verify_checksums)
    except Exception as e:  # noqa: BLE001 -- any failed load is reported, never fatal
      if _signature(self.path) != signature:
        return False  # swapped again while loading: retry at the next poll
      self._failed_signature = signature
      self.reload_failures += 1
      now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
      self.reload_error = {"at": now, "message": str(e)}
      log.error("bundle reload failed, still serving the previous bundle: %s", e)
      return False
    if served is None:
      return False
    self.current = served  # the swap: one reference assignment
    self.reloads += 1
    self.reload_error = self._failed_signature = None
    log.warning("reloaded bundle %s: %d items, version %s", self.path,
                served.bundle.num_items, served.bundle.manifest.get("version"))
    return True

  def start(self) -> None:
    self._stop.clear()
    self._thread = threading.Thread(target=self._run, name="bundle-watcher", daemon=True)
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()

  def _run(self) -> None:
    while not self._stop.wait(self.poll_seconds):
      try:
        self.check()
      except Exception:  # never let the watcher die; the old bundle keeps serving
        log.exception("bundle watcher error")
