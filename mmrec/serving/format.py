"""Bundle format version 2 (docs/bundle.md): manifest and file validation.

Shared by the reader (`mmrec.serving.bundle`) and the writers
(`mmrec.retrieval.export`, `mmrec.retrieval.update`). numpy and stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

import numpy as np

FORMAT_VERSION = 2
SUPPORTED_FORMAT_VERSIONS = (FORMAT_VERSION,)
DISTANCE = "dot_product"
REQUIRED_FILES = ("embeddings.npy", "item_ids.npy", "popularity.npy", "scann/scann_assets.pbtxt")
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


class BundleError(ValueError):
  """The bundle directory is missing, corrupt or of an unsupported format."""


def _json_object(file: pathlib.Path, what: str) -> dict[str, Any]:
  try:
    value = json.loads(file.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
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
  if version == 1 and not isinstance(version, bool):
    raise BundleError(f"{file}: format_version 1 is no longer read; re-export the bundle "
                      f"(`mmrec export`) to write format_version {FORMAT_VERSION}")
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
    if not isinstance(scann.get(key), (int, float)) or isinstance(scann.get(key), bool):
      raise BundleError(f"{file}: scann.{key} must be a number for mode {scann['mode']!r}")
  if not isinstance(manifest["recall"].get("recall_at_10"), (int, float)):
    raise BundleError(f"{file}: recall.recall_at_10 must be a number")
  if "user_tower" in manifest and not isinstance(manifest["user_tower"], dict):
    raise BundleError(f"{file}: field 'user_tower' must be a dict")
  return manifest


def check_files(path: pathlib.Path, files: dict[str, Any], verify: bool) -> None:
  """Every listed file present and intact; every present file listed."""
  for name in REQUIRED_FILES:
    if name not in files:
      raise BundleError(f"{path}/manifest.json: 'files' does not list required file {name}")
  for name, digest in files.items():
    pure = pathlib.PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
      raise BundleError(f"{path}/manifest.json: file name {name!r} points outside the bundle")
    file = path / name
    if not file.is_file():
      raise BundleError(f"{file}: missing (listed in manifest.json)")
    if verify and file_sha256(file) != digest:
      raise BundleError(f"{file}: SHA-256 does not match manifest.json (corrupt or modified)")
  for file in sorted(path.rglob("*")):
    name = file.relative_to(path).as_posix()
    if file.is_file() and name != "manifest.json" and name not in files:
      # ScaNN would unpickle scann/scann_docids.pkl; nothing unlisted is read.
      raise BundleError(f"{file}: not listed in manifest.json 'files'; refusing to load")


def load_array(path: pathlib.Path, name: str, dtype, shape: tuple, manifest: dict) -> np.ndarray:
  file = path / name
  try:
    array = np.load(file, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise BundleError(f"{file}: not a readable .npy without pickle: {e}") from e
  if not np.issubdtype(array.dtype, dtype):
    raise BundleError(f"{file}: dtype {array.dtype}, expected {np.dtype(dtype).name}")
  if array.shape != shape:
    raise BundleError(
        f"{file}: shape {array.shape} disagrees with manifest.json "
        f"(num_items={manifest['num_items']}, dimension={manifest['dimension']})")
  return array


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
