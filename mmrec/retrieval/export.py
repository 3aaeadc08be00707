"""Writes the index bundle that `mmrec.serving` loads (format: docs/bundle.md).

The bundle is written into a temporary sibling directory and then renamed into
place, so an interrupted export never leaves a half bundle where the previous
one stood. Only numpy, scann and the standard library are used here.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
import shutil
import uuid
from typing import Any

import numpy as np
from scann.scann_ops.py import scann_ops_pybind

# The bundle format is defined once, by its reader.
from mmrec.serving.bundle import SUPPORTED_FORMAT_VERSIONS, file_sha256

FORMAT_VERSION = max(SUPPORTED_FORMAT_VERSIONS)
DISTANCE = "dot_product"
BRUTE_FORCE_MAX_ITEMS = 20_000
NUM_NEIGHBORS = 100
SCANN_MODES = ("auto", "brute_force", "tree_ah")
AH_CLUSTERS_PER_BLOCK = 16  # ScaNN's default; AH training needs this many items


def scann_params(num_items: int, dim: int, mode: str = "auto") -> dict[str, Any]:
  """ScaNN build parameters: exact below 20,000 items, else tree + AH + reorder."""
  if mode not in SCANN_MODES:
    raise ValueError(f"scann_mode={mode!r} must be one of {SCANN_MODES}")
  if mode == "brute_force" or (mode == "auto" and num_items < BRUTE_FORCE_MAX_ITEMS):
    return {"mode": "brute_force", "num_neighbors": NUM_NEIGHBORS}
  if num_items < AH_CLUSTERS_PER_BLOCK:
    raise ValueError(
        f"scann_mode='tree_ah' needs at least {AH_CLUSTERS_PER_BLOCK} items, got {num_items}")
  num_leaves = max(1, round(math.sqrt(num_items)))
  return {
      "mode": "tree_ah",
      "num_neighbors": NUM_NEIGHBORS,
      "num_leaves": num_leaves,
      "num_leaves_to_search": max(1, min(num_leaves, math.ceil(num_leaves / 10))),
      "training_sample_size": min(num_items, 250_000),
      "dimensions_per_block": 2 if dim > 1 else 1,
      "anisotropic_quantization_threshold": 0.2,
      "reorder": 4 * NUM_NEIGHBORS,
  }


def build_searcher(embeddings: np.ndarray, params: dict[str, Any]):
  """A ScaNN searcher over `embeddings` (float32 [N, D]) built from `params`."""
  builder = scann_ops_pybind.builder(embeddings, params["num_neighbors"], DISTANCE)
  if params["mode"] == "brute_force":
    return builder.score_brute_force().build()
  return (
      builder.tree(
          num_leaves=params["num_leaves"],
          num_leaves_to_search=params["num_leaves_to_search"],
          training_sample_size=params["training_sample_size"])
      .score_ah(
          params["dimensions_per_block"],
          anisotropic_quantization_threshold=params["anisotropic_quantization_threshold"])
      .reorder(params["reorder"])
      .build())


def export_bundle(
    out_dir: str | os.PathLike,
    embeddings: np.ndarray,
    item_ids: np.ndarray,
    popularity: np.ndarray,
    *,
    model_info: dict[str, Any],
    metadata: dict[str, list] | None = None,
    scann_mode: str = "auto",
) -> pathlib.Path:
  """Writes a bundle to `out_dir`, replacing a previous bundle there.

  Args:
    out_dir: bundle directory; if it exists it must be a bundle or empty.
    embeddings: float `[N, D]` item embeddings (stored as float32).
    item_ids: str `[N]` original item ids, unique.
    popularity: int `[N]` training interaction counts.
    model_info: JSON-serializable description (model, checkpoint, config digest).
    metadata: optional per-item lists (e.g. title, category), each of length N.
    scann_mode: "auto", "brute_force" or "tree_ah" (see `scann_params`).

  Returns:
    The absolute bundle path.
  """
  out_dir = pathlib.Path(out_dir).absolute()
  embeddings, item_ids, popularity = _validate(embeddings, item_ids, popularity)
  n, dim = embeddings.shape
  metadata = _validate_metadata(metadata, n)
  params = scann_params(n, dim, scann_mode)
  if not isinstance(model_info, dict):
    raise ValueError(f"export_bundle: model_info must be a dict, got {type(model_info).__name__}")
  _json("model_info", model_info)
  _check_replaceable(out_dir)

  out_dir.parent.mkdir(parents=True, exist_ok=True)
  tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
  try:
    tmp.mkdir()
    np.save(tmp / "embeddings.npy", embeddings, allow_pickle=False)
    np.save(tmp / "item_ids.npy", item_ids, allow_pickle=False)
    np.save(tmp / "popularity.npy", popularity, allow_pickle=False)
    if metadata is not None:
      (tmp / "metadata.json").write_text(_json("metadata", metadata), encoding="utf-8")
    (tmp / "scann").mkdir()
    # relative_path=True: the assets file names its files relative to the
    # searcher directory, so the bundle stays loadable after it is moved.
    build_searcher(embeddings, params).serialize(str(tmp / "scann"), relative_path=True)
    files = {p.relative_to(tmp).as_posix(): file_sha256(p)
             for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": model_info,
        "dimension": dim,
        "distance": DISTANCE,
        "num_items": n,
        "scann": params,
        "files": files,
    }
    (tmp / "manifest.json").write_text(_json("manifest", manifest), encoding="utf-8")
    _fsync_tree(tmp)
    _swap_into_place(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out_dir


def _validate(embeddings, item_ids, popularity):
  emb = np.asarray(embeddings)
  if emb.ndim != 2 or emb.shape[0] < 1 or emb.shape[1] < 1:
    raise ValueError(f"export_bundle: embeddings must be [N, D] with N, D >= 1, got {emb.shape}")
  if emb.dtype.kind != "f" and emb.dtype.name != "bfloat16":
    raise ValueError(f"export_bundle: embeddings must be floating point, got {emb.dtype}")
  emb = np.ascontiguousarray(emb, np.float32)
  if not np.isfinite(emb).all():
    bad = int(np.flatnonzero(~np.isfinite(emb).all(axis=1))[0])
    raise ValueError(f"export_bundle: embeddings row {bad} is not finite (NaN/inf, or overflow)")
  n = len(emb)

  ids = np.asarray(item_ids)
  if ids.dtype.kind == "O" and all(isinstance(i, str) for i in ids.ravel()):
    ids = ids.astype(str)
  if ids.dtype.kind != "U" or ids.shape != (n,):
    raise ValueError(
        f"export_bundle: item_ids must be str [{n}], got {ids.dtype} {ids.shape}")
  if (ids == "").any():
    raise ValueError(f"export_bundle: item_ids row {int(np.flatnonzero(ids == '')[0])} is empty")
  uniq, counts = np.unique(ids, return_counts=True)
  if (counts > 1).any():
    raise ValueError(f"export_bundle: item_ids repeat {str(uniq[counts > 1][0])!r}")

  pop = np.asarray(popularity)
  if pop.dtype.kind not in "iu" or pop.shape != (n,):
    raise ValueError(
        f"export_bundle: popularity must be int [{n}], got {pop.dtype} {pop.shape}")
  if (pop < 0).any():
    raise ValueError("export_bundle: popularity holds negative counts")
  return emb, ids, pop.astype(np.int64)


def _validate_metadata(metadata, n):
  if metadata is None:
    return None
  if not isinstance(metadata, dict):
    raise ValueError(f"export_bundle: metadata must be a dict of lists, got {type(metadata)}")
  out = {}
  for key, values in metadata.items():
    values = values.tolist() if isinstance(values, np.ndarray) else list(values)
    if len(values) != n:
      raise ValueError(f"export_bundle: metadata[{key!r}] has {len(values)} entries, expected {n}")
    out[str(key)] = values
  return out


def _json(what: str, obj: Any) -> str:
  try:
    return json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False)
  except (TypeError, ValueError) as e:
    raise ValueError(f"export_bundle: {what} is not JSON-serializable: {e}") from e


def _check_replaceable(out_dir: pathlib.Path) -> None:
  """Refuses to replace anything that is not a bundle or an empty directory."""
  if not out_dir.exists():
    return
  if not out_dir.is_dir():
    raise ValueError(f"export_bundle: {out_dir} exists and is not a directory")
  if any(out_dir.iterdir()) and not (out_dir / "manifest.json").is_file():
    raise ValueError(
        f"export_bundle: {out_dir} is neither empty nor a bundle (no manifest.json); "
        "refusing to replace it")


def _swap_into_place(tmp: pathlib.Path, out_dir: pathlib.Path) -> None:
  old = None
  if out_dir.exists():
    old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(out_dir, old)
  try:
    os.rename(tmp, out_dir)
  except BaseException:
    if old is not None:
      os.rename(old, out_dir)
    raise
  _fsync_dir(out_dir.parent)
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(root: pathlib.Path) -> None:
  for p in root.rglob("*"):
    if p.is_file():
      with open(p, "rb") as f:
        os.fsync(f.fileno())
  for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
    _fsync_dir(d)


def _fsync_dir(path: pathlib.Path) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)
