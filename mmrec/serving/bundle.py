"""Loads, validates and queries an index bundle (format: docs/bundle.md).

Needs only numpy, scann and the standard library: services that consume
recommendations import this without jax or flax installed.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from scann.scann_ops.py import scann_ops_pybind

SUPPORTED_FORMAT_VERSIONS = (1,)
REQUIRED_FILES = ("embeddings.npy", "item_ids.npy", "popularity.npy", "scann/scann_assets.pbtxt")
_EXACT_BLOCK = 1 << 25  # query x item scores per block of exact search


class BundleError(ValueError):
  """The bundle directory is missing, corrupt or of an unsupported format."""


class UnknownItemError(KeyError):
  """An item id that the bundle does not hold."""

  def __init__(self, item_id: str):
    super().__init__(item_id)
    self.item_id = item_id

  def __str__(self) -> str:
    return f"unknown item id {self.item_id!r}: not in the bundle's item_ids.npy"


def load_bundle(path: str | pathlib.Path, *, verify_checksums: bool = True) -> "Bundle":
  """Loads the bundle at `path`, raising `BundleError` for any defect found."""
  path = pathlib.Path(path)
  if not path.is_dir():
    raise BundleError(f"{path}: bundle directory does not exist")
  manifest = _read_manifest(path)
  _check_files(path, manifest["files"], verify_checksums)
  n, d = manifest["num_items"], manifest["dimension"]
  embeddings = _load_array(path, "embeddings.npy", np.float32, (n, d), manifest)
  item_ids = _load_array(path, "item_ids.npy", np.str_, (n,), manifest)
  popularity = _load_array(path, "popularity.npy", np.int64, (n,), manifest)
  metadata = _read_metadata(path, n) if "metadata.json" in manifest["files"] else {}
  try:
    searcher = scann_ops_pybind.load_searcher(str(path / "scann"), assets_backcompat_shim=False)
  except (RuntimeError, ValueError) as e:
    raise BundleError(f"{path}/scann: the ScaNN searcher does not load: {e}") from e
  if searcher.size() != n:
    raise BundleError(
        f"{path}/scann: the ScaNN searcher holds {searcher.size()} items, "
        f"manifest.json num_items={n}")
  return Bundle(path, manifest, embeddings, item_ids, popularity, metadata, searcher)


class Bundle:
  """A loaded bundle: item arrays, manifest, metadata and the ScaNN searcher."""

  def __init__(self, path: pathlib.Path, manifest: dict[str, Any], embeddings: np.ndarray,
               item_ids: np.ndarray, popularity: np.ndarray, metadata: dict[str, list],
               searcher):
    self.path = path
    self.manifest = manifest
    self.embeddings = embeddings  # float32 [N, D]
    self.item_ids = item_ids  # str [N]
    self.popularity = popularity  # int64 [N], training counts
    self.metadata = metadata  # name -> list aligned to items; {} without metadata.json
    self.searcher = searcher
    self._row = {item_id: i for i, item_id in enumerate(item_ids.tolist())}

  @property
  def num_items(self) -> int:
    return int(self.manifest["num_items"])

  @property
  def dimension(self) -> int:
    return int(self.manifest["dimension"])

  def index_of(self, ids: str | Sequence[str]) -> int | np.ndarray:
    """Row of one id (int), or rows of a sequence of ids (int64 array)."""
    if isinstance(ids, str):
      return self._index(ids)
    return np.array([self._index(i) for i in ids], np.int64)

  def _index(self, item_id: str) -> int:
    try:
      return self._row[item_id]
    except KeyError:
      raise UnknownItemError(item_id) from None

  def search(
      self,
      queries: np.ndarray,
      k: int,
      exclude: Sequence[Sequence[str]] | None = None,
      exact: bool = False,
  ) -> tuple[np.ndarray, np.ndarray]:
    """Top-`k` items by dot product for each query.

    Args:
      queries: float32 `[Q, D]` query embeddings (e.g. user-tower outputs).
      k: results per query, `1 <= k <= num_items`.
      exclude: per query, item ids never to return (e.g. already bought);
        ids that the bundle does not hold are ignored.
      exact: numpy brute force over all embeddings instead of ScaNN.

    Returns:
      ids str `[Q, k]` and scores float32 `[Q, k]`, best first. When the
      exclusions leave fewer than `k` items, rows end with id "" and score -inf.
    """
    q = np.ascontiguousarray(queries, np.float32)
    if q.ndim != 2 or q.shape[1] != self.dimension:
      raise ValueError(f"queries must be [Q, {self.dimension}], got shape {q.shape}")
    if not np.isfinite(q).all():
      raise ValueError("queries contain NaN or inf")
    if not 1 <= k <= self.num_items:
      raise ValueError(f"k={k} must be in [1, {self.num_items}] (the bundle's num_items)")
    if exclude is not None and len(exclude) != len(q):
      raise ValueError(f"exclude has {len(exclude)} rows for {len(q)} queries")
    exclude = exclude if exclude is not None else [()] * len(q)
    if any(isinstance(e, str) for e in exclude):
      raise ValueError("exclude must hold one list of ids per query, not bare ids")
    excl = [np.array([self._row[i] for i in e if i in self._row], np.int64) for e in exclude]
    if exact or not len(q):
      rows, scores = self._exact(q, k, excl)
    else:
      rows, scores = self._approximate(q, k, excl)
    ids = self.item_ids[np.maximum(rows, 0)]
    ids[rows < 0] = ""
    return ids, scores

  def similar(self, item_id: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` items closest to `item_id` (itself excluded): ids `[k]`, scores `[k]`."""
    row = self._index(item_id)
    ids, scores = self.search(self.embeddings[row:row + 1], k, exclude=[[item_id]])
    return ids[0], scores[0]

  def search_by_history(
      self, history_ids: Sequence[str], k: int, exclude_history: bool = True,
  ) -> tuple[np.ndarray, np.ndarray]:
    """Recommends from a history without the user tower: ids `[k]`, scores `[k]`.

    Fallback pooling: the query is the mean of the history items' embeddings,
    L2-normalised. It ignores order and recency, so it is weaker than the
    trained user tower; use it where only the bundle is available.
    """
    if isinstance(history_ids, str) or not len(history_ids):
      raise ValueError("history_ids must be a non-empty list of item ids")
    query = self.embeddings[self.index_of(history_ids)].mean(axis=0)
    norm = np.linalg.norm(query)
    if norm == 0:
      raise ValueError("the history items' embeddings average to the zero vector")
    exclude = [list(history_ids)] if exclude_history else None
    ids, scores = self.search((query / norm)[None], k, exclude=exclude)
    return ids[0], scores[0]

  def _exact(self, q, k, excl):
    rows = np.empty((len(q), k), np.int64)
    scores = np.empty((len(q), k), np.float32)
    block = max(1, _EXACT_BLOCK // self.num_items)
    for start in range(0, len(q), block):
      s = q[start:start + block] @ self.embeddings.T
      for r, e in enumerate(excl[start:start + block]):
        s[r, e] = -np.inf
      top = np.argpartition(-s, k - 1, axis=1)[:, :k]
      vals = np.take_along_axis(s, top, axis=1)
      order = np.lexsort((top, -vals), axis=1)
      rows[start:start + block] = np.take_along_axis(top, order, axis=1)
      scores[start:start + block] = np.take_along_axis(vals, order, axis=1)
    rows[scores == -np.inf] = -1
    return rows, scores

  def _approximate(self, q, k, excl):
    fetch = min(self.num_items, k + max(len(e) for e in excl))
    reorder = self.manifest["scann"].get("reorder")
    pre = max(fetch, int(reorder)) if reorder else None
    idx, dist = self.searcher.search_batched(q, fetch, pre_reorder_num_neighbors=pre)
    idx = np.asarray(idx, np.int64)
    dist = np.asarray(dist, np.float32)
    rows = np.full((len(q), k), -1, np.int64)
    scores = np.full((len(q), k), -np.inf, np.float32)
    short = []
    for r, e in enumerate(excl):
      # ScaNN pads with index 0 and score NaN when its partitions hold too few.
      keep = ~np.isnan(dist[r]) & ~np.isin(idx[r], e)
      got = np.flatnonzero(keep)[:k]
      rows[r, :len(got)], scores[r, :len(got)] = idx[r, got], dist[r, got]
      if len(got) < min(k, self.num_items - len(e)):
        short.append(r)
    if short:  # the approximate search came up short: answer those rows exactly
      rows[short], scores[short] = self._exact(q[short], k, [excl[r] for r in short])
    return rows, scores


def _read_manifest(path: pathlib.Path) -> dict[str, Any]:
  file = path / "manifest.json"
  if not file.is_file():
    raise BundleError(f"{file}: missing (not a bundle, or an interrupted copy)")
  try:
    manifest = json.loads(file.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise BundleError(f"{file}: malformed JSON: {e}") from e
  if not isinstance(manifest, dict):
    raise BundleError(f"{file}: must hold a JSON object, got {type(manifest).__name__}")
  version = manifest.get("format_version")
  if version not in SUPPORTED_FORMAT_VERSIONS or isinstance(version, bool):
    raise BundleError(
        f"{file}: format_version {version!r} is not supported by this loader "
        f"(supported: {SUPPORTED_FORMAT_VERSIONS}); upgrade mmrec.serving or re-export")
  for field, kind in (("num_items", int), ("dimension", int), ("distance", str),
                      ("model", dict), ("scann", dict), ("files", dict)):
    value = manifest.get(field)
    if not isinstance(value, kind) or isinstance(value, bool):
      raise BundleError(f"{file}: field {field!r} must be a {kind.__name__}, got {value!r}")
    if kind is int and value < 1:
      raise BundleError(f"{file}: field {field!r} must be >= 1, got {value}")
  if manifest["distance"] != "dot_product":
    raise BundleError(f"{file}: distance {manifest['distance']!r} is not supported (dot_product)")
  return manifest


def _check_files(path: pathlib.Path, files: dict[str, Any], verify: bool) -> None:
  """Every listed file present and intact; every present file listed."""
  for name in REQUIRED_FILES:
    if name not in files:
      raise BundleError(f"{path}/manifest.json: 'files' does not list required file {name}")
  for name, digest in files.items():
    if pathlib.PurePosixPath(name).is_absolute() or ".." in pathlib.PurePosixPath(name).parts:
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


def _load_array(path, name, dtype, shape, manifest) -> np.ndarray:
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


def _read_metadata(path: pathlib.Path, n: int) -> dict[str, list]:
  file = path / "metadata.json"
  try:
    metadata = json.loads(file.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise BundleError(f"{file}: malformed JSON: {e}") from e
  if not isinstance(metadata, dict):
    raise BundleError(f"{file}: must hold a JSON object of per-item lists")
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
