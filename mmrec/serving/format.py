"""Bundle format version 3 (docs/bundle.md): manifest and file validation.

Shared by the reader (`mmrec.serving.bundle`) and the writers
(`mmrec.retrieval.export`, `mmrec.retrieval.update`). numpy and stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import re
import stat
from typing import Any

import numpy as np

FORMAT_VERSION = 3
SUPPORTED_FORMAT_VERSIONS = (FORMAT_VERSION,)
DISTANCE = "dot_product"
VECTORS_FILE = "scann/dataset.npy"  # the item vectors, stored once: ScaNN's own copy
REQUIRED_FILES = ("item_ids.npy", "item_id_order.npy", "popularity.npy",
                  "scann/scann_assets.pbtxt", "scann/scann_config.pb", VECTORS_FILE)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pckl", ".pk")
SCANN_MODES = {  # mode -> build parameters the manifest must record
    "brute_force": ("num_neighbors",),
    "ah": ("num_neighbors", "dimensions_per_block", "anisotropic_quantization_threshold",
           "reorder"),
    "tree_ah": ("num_neighbors", "num_leaves", "num_leaves_to_search", "training_sample_size",
                "dimensions_per_block", "anisotropic_quantization_threshold", "reorder"),
}
_FIELDS = (("version", int), ("created_at", str), ("updated_at", str), ("model", dict),
           ("num_items", int), ("dimension", int), ("distance", str), ("scann", dict),
           ("recall", dict), ("popularity", dict), ("history", list), ("files", dict))
# Numeric fields, checked whenever present: (kind, lowest, highest); a str bound names
# another field ("num_items"), None is unbounded. Mode parameters are required (SCANN_MODES).
_NUMBERS = {
    "scann.num_neighbors": (int, 1, None), "scann.num_leaves": (int, 1, "num_items"),
    "scann.num_leaves_to_search": (int, 1, "scann.num_leaves"),
    "scann.training_sample_size": (int, 1, None),
    "scann.dimensions_per_block": (int, 1, "dimension"),
    "scann.anisotropic_quantization_threshold": (float, None, None),
    "scann.reorder": (int, 1, None), "scann.built_num_items": (int, 1, None),
    "scann.changed_since_build": (int, 0, None),
    "recall.recall_at_10": (float, 0, 1), "recall.target": (float, 0, 1),
    "recall.num_queries": (int, 0, None),
    "popularity.head_share": (float, 0, 1), "popularity.num_head_items": (int, 0, "num_items"),
    "popularity.head_min_popularity": (int, 0, None),
    "popularity.total_interactions": (int, 0, None),
    "model.default_beta": (float, 0, None), "model.checkpoint_step": (int, 0, None),
    "user_tower.history_len": (int, 1, None),
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK_BYTES = 1 << 20  # streamed per check: 1 MiB, so checks leave no resident memory


class BundleError(ValueError):
  """The bundle directory is missing, corrupt or of an unsupported format."""


def _reject_constant(name: str):
  raise ValueError(f"{name} is not a JSON number")


def _json_object(file: pathlib.Path, what: str) -> dict[str, Any]:
  try:
    value = json.loads(file.read_text(encoding="utf-8"), parse_constant=_reject_constant)
  except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
    raise BundleError(f"{file}: malformed JSON: {e}") from e
  if not isinstance(value, dict):
    raise BundleError(f"{file}: must hold {what}, got {type(value).__name__}")
  return value


def read_manifest(path: pathlib.Path) -> dict[str, Any]:
  """`path/manifest.json`, checked field by field."""
  file = path / "manifest.json"
  if not file.is_file():
    raise BundleError(f"{file}: missing (not a bundle, or an interrupted copy)")
  manifest = _json_object(file, "a JSON object")
  version = manifest.get("format_version")
  if version in (1, 2) and not isinstance(version, bool):
    raise BundleError(f"{file}: format_version {version} is no longer read; re-export the "
                      f"bundle (`mmrec export`) to write format_version {FORMAT_VERSION}")
  if version not in SUPPORTED_FORMAT_VERSIONS or isinstance(version, bool):
    raise BundleError(
        f"{file}: format_version {version!r} is not supported by this loader "
        f"(supported: {SUPPORTED_FORMAT_VERSIONS}); upgrade mmrec.serving or re-export")
  for field, kind in _FIELDS:
    value = manifest.get(field)
    if not isinstance(value, kind) or isinstance(value, bool):
      raise BundleError(f"{file}: field {field!r} must be a {kind.__name__}, got {value!r}")
    if kind is int and value < 1:
      raise BundleError(f"{file}: field {field!r} must be >= 1, got {value}")
  if manifest["distance"] != DISTANCE:
    raise BundleError(f"{file}: distance {manifest['distance']!r} is not supported ({DISTANCE})")
  scann = manifest["scann"]
  if scann.get("mode") not in SCANN_MODES:
    raise BundleError(
        f"{file}: scann.mode {scann.get('mode')!r} must be one of {list(SCANN_MODES)}")
  for key in SCANN_MODES[scann["mode"]]:
    if key not in scann:
      raise BundleError(f"{file}: scann.{key} is missing; mode {scann['mode']!r} needs it")
  if "recall_at_10" not in manifest["recall"]:
    raise BundleError(f"{file}: recall.recall_at_10 is missing")
  if "user_tower" in manifest and not isinstance(manifest["user_tower"], dict):
    raise BundleError(f"{file}: field 'user_tower' must be a dict")
  for name, (kind, low, high) in _NUMBERS.items():
    _check_number(file, manifest, name, kind, low, high)
  for field, value in _file_fields(manifest):
    if not isinstance(value, str) or value not in manifest["files"]:
      raise BundleError(f"{file}: {field}={value!r} is not a file listed in 'files'")
  return manifest


def _file_fields(node: dict, prefix: str = ""):
  """(dotted field, value) of every `file` / `*_file` field (user_tower.file, explain...)."""
  for key, value in node.items():
    if isinstance(value, dict) and not (prefix == "" and key == "files"):
      yield from _file_fields(value, f"{prefix}{key}.")
    elif key == "file" or key.endswith("_file"):
      yield f"{prefix}{key}", value


def _field(manifest: dict, name: str) -> Any:
  section, _, key = name.rpartition(".")
  holder = manifest.get(section, {}) if section else manifest
  return holder.get(key) if isinstance(holder, dict) else None


def _check_number(file, manifest, name, kind, low, high) -> None:
  value = _field(manifest, name)
  if value is None:
    return
  wanted = (int,) if kind is int else (int, float)
  if isinstance(value, bool) or not isinstance(value, wanted) or not math.isfinite(value):
    raise BundleError(f"{file}: {name}={value!r} must be a finite "
                      f"{'integer' if kind is int else 'number'}")
  high = _field(manifest, high) if isinstance(high, str) else high
  if (low is not None and value < low) or (high is not None and value > high):
    wanted = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise BundleError(f"{file}: {name}={value!r} must be {wanted}")


def check_name(path: pathlib.Path, name: Any) -> None:
  """A manifest file name: a plain relative POSIX path inside the bundle."""
  pure = pathlib.PurePosixPath(name) if isinstance(name, str) else None
  if (pure is None or not name or pure.is_absolute() or "\\" in name or
      any(part in ("..", ".", "") for part in name.split("/"))):
    raise BundleError(f"{path}/manifest.json: file name {name!r} points outside the bundle "
                      "(names are relative POSIX paths without '..')")


def check_files(path: pathlib.Path, files: dict[str, Any], verify: bool) -> None:
  """Every listed file present, regular and inside `path`; nothing unlisted, linked or pickled.

  `verify` also compares every file's SHA-256 with the manifest's (reads every byte).
  """
  for name in REQUIRED_FILES:
    if name not in files:
      raise BundleError(f"{path}/manifest.json: 'files' does not list required file {name}")
  for name, digest in files.items():
    check_name(path, name)
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
      raise BundleError(f"{path}/manifest.json: files[{name!r}] must be a SHA-256 hex digest")
  present = set()
  for folder, dirs, names in os.walk(path):  # never follows links
    for entry in [*dirs, *names]:
      file = pathlib.Path(folder) / entry
      if file.is_symlink():
        raise BundleError(f"{file}: a symbolic link inside the bundle; refusing to load "
                          "(copy bundles with `cp -rL`)")
    for entry in names:
      file = pathlib.Path(folder) / entry
      name = file.relative_to(path).as_posix()
      if entry.lower().endswith(PICKLE_SUFFIXES):
        raise BundleError(f"{file}: a pickle file in the bundle; refusing to load (bundles "
                          "never hold pickles, and nothing in one is ever unpickled)")
      if name != "manifest.json" and name not in files:
        raise BundleError(f"{file}: not listed in manifest.json 'files'; refusing to load")
      present.add(name)
  for name, digest in files.items():
    file = path / name
    if name not in present or not stat.S_ISREG(file.lstat().st_mode):
      raise BundleError(f"{file}: missing (listed in manifest.json)")
    if not name.endswith((".npy", ".json")) and _looks_pickled(file):
      raise BundleError(f"{file}: holds a pickle; refusing to load (nothing in a bundle is "
                        "ever unpickled)")
    if verify and file_sha256(file) != digest:
      raise BundleError(f"{file}: SHA-256 does not match manifest.json (corrupt or modified)")


def _looks_pickled(file: pathlib.Path) -> bool:
  """A pickle of protocol 2 to 5: PROTO opcode first, STOP last."""
  with open(file, "rb") as f:
    head = f.read(2)
    if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
      return False
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b"."


def load_array(path: pathlib.Path, name: str, dtype, shape: tuple | None,
               shape_from: str = "") -> np.ndarray:
  """`path/name` as a .npy of `dtype` (never unpickled) and, unless None, of `shape`,
  which `shape_from` says where it comes from in the refusal."""
  file = path / name
  try:
    array = np.load(file, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise BundleError(f"{file}: not a readable .npy without pickle: {e}") from e
  if not np.issubdtype(array.dtype, dtype):
    raise BundleError(f"{file}: dtype {array.dtype}, expected {np.dtype(dtype).name}")
  if shape is not None and array.shape != shape:
    raise BundleError(f"{file}: shape {array.shape}, expected {shape} ({shape_from})")
  return array


def npy_header(file: pathlib.Path) -> tuple[tuple, np.dtype, int]:
  """(shape, dtype, data offset) of a C-order .npy without reading its data; no objects."""
  try:
    with open(file, "rb") as f:
      version = np.lib.format.read_magic(f)
      read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
              else np.lib.format.read_array_header_2_0)
      shape, fortran, dtype = read(f)
      offset = f.tell()
  except (ValueError, OSError, EOFError) as e:
    raise BundleError(f"{file}: not a readable .npy: {e}") from e
  if dtype.hasobject or fortran:
    raise BundleError(f"{file}: holds Python objects or Fortran order; refusing to load")
  if file.stat().st_size != offset + math.prod(shape) * dtype.itemsize:
    raise BundleError(f"{file}: {file.stat().st_size} bytes, its header says shape {shape} "
                      f"of {dtype} (truncated or padded)")
  return shape, dtype, offset


def load_vectors(path: pathlib.Path, manifest: dict, mmap: bool) -> np.ndarray:
  """The item vectors `[N, D]` float32 (ScaNN's dataset.npy), checked finite, memory-mapped
  when `mmap`; streamed in chunks so the check itself adds no resident memory."""
  file, n, d = path / VECTORS_FILE, manifest["num_items"], manifest["dimension"]
  shape, dtype, offset = npy_header(file)
  if dtype != np.dtype("<f4"):
    raise BundleError(f"{file}: dtype {dtype}, expected float32")
  if shape != (n, d):
    raise BundleError(f"{file}: shape {shape} disagrees with manifest.json "
                      f"(num_items={n}, dimension={d})")
  rows = max(1, _CHUNK_BYTES // (4 * d))
  buffer = np.empty((rows, d), np.float32)
  with open(file, "rb") as f:
    f.seek(offset)
    for start in range(0, n, rows):
      chunk = buffer[:min(rows, n - start)]
      f.readinto(memoryview(chunk).cast("B"))
      # A sum is finite when every term is (or it overflowed: then look closer).
      if not np.isfinite(np.add.reduce(chunk, axis=None)) and not np.isfinite(chunk).all():
        bad = start + int(np.flatnonzero(~np.isfinite(chunk).all(axis=1))[0])
        raise BundleError(f"{file}: row {bad} (item {bad}) is NaN or infinite")
  if mmap:
    return np.memmap(file, np.float32, "r", offset, (n, d))
  return np.load(file, allow_pickle=False)


def check_item_ids(path: pathlib.Path, ids: np.ndarray, order: np.ndarray) -> None:
  """`item_id_order.npy` sorts `item_ids.npy` strictly: no duplicates, no empty id."""
  file = path / "item_id_order.npy"
  if order.min() < 0 or order.max() >= len(ids):
    raise BundleError(f"{file}: rows outside [0, num_items={len(ids)})")
  if ids[order[0]] == "":
    raise BundleError(f"{path}/item_ids.npy: row {int(order[0])} is an empty id")
  step = max(2, _CHUNK_BYTES // ids.itemsize)
  for start in range(0, len(ids) - 1, step - 1):  # chunks overlap by one id
    ordered = ids[order[start:start + step]]
    repeated = np.flatnonzero(ordered[1:] <= ordered[:-1])
    if len(repeated):
      i = repeated[0]
      if ordered[i] == ordered[i + 1]:
        raise BundleError(f"{path}/item_ids.npy: id {str(ordered[i])!r} repeats "
                          f"(rows {int(order[start + i])} and {int(order[start + i + 1])})")
      raise BundleError(f"{file}: does not sort item_ids.npy (rewritten or stale)")


def head_cut(popularity: np.ndarray, is_head: np.ndarray, share: float) -> dict:
  """The manifest's head/tail cut of an already computed split (as `tail.head_cut`)."""
  return {"head_share": share, "num_head_items": int(is_head.sum()),
          "head_min_popularity": int(popularity[is_head].min()) if is_head.any() else 0,
          "total_interactions": int(popularity.sum())}


def read_metadata(path: pathlib.Path, n: int) -> dict[str, list]:
  file = path / "metadata.json"
  metadata = _json_object(file, "a JSON object of per-item lists")
  for key, values in metadata.items():
    if not isinstance(values, list) or len(values) != n:
      raise BundleError(f"{file}: {key!r} must be a list of num_items={n} entries")
  return metadata


def file_sha256(file: pathlib.Path) -> str:
  """SHA-256 hex digest of a file, read in 1 MiB chunks (the manifest's checksums)."""
  h = hashlib.sha256()
  with open(file, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()
