"""Writes the index bundle that `mmrec.serving` loads (format: docs/bundle.md).

Each bundle is written into its own version directory, and the bundle path is
a symlink switched to it in one rename (`mmrec.retrieval.publish`), so an
export killed at any point leaves the old or the new bundle loadable at the
bundle path. Only numpy, scann and the standard library are used here.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
from typing import Any

import numpy as np

from mmrec.retrieval import publish, tuning
from mmrec.serving import tail
from mmrec.serving.format import (DISTANCE, FORMAT_VERSION, PICKLE_SUFFIXES, VECTORS_FILE,
                                  file_sha256)

USER_TOWER_FILE = "user_tower.jax_export"


def export_bundle(
    out_dir: str | os.PathLike,
    embeddings: np.ndarray,
    item_ids: np.ndarray,
    popularity: np.ndarray,
    *,
    model_info: dict[str, Any],
    metadata: dict[str, list] | None = None,
    scann_mode: str = "auto",
    tuning_queries: np.ndarray | None = None,
    tuning_query_source: str | None = None,
    recall_target: float = tuning.RECALL_TARGET,
    user_tower: tuple[bytes, dict[str, Any], dict[str, bytes]] | None = None,
    explain: tuple[dict[str, Any], dict[str, bytes]] | None = None,
) -> pathlib.Path:
  """Writes a bundle (version 1) to `out_dir`, replacing a previous bundle there.

  Args:
    out_dir: bundle directory; if it exists it must be a bundle or empty.
    embeddings: float `[N, D]` item embeddings (stored as float32).
    item_ids: str `[N]` original item ids, unique.
    popularity: int `[N]` training interaction counts.
    model_info: JSON-serializable description: model name, checkpoint_step,
      config_digest, dataset.
    metadata: optional per-item lists (e.g. title, category, image), each of length N.
    scann_mode: "auto", "brute_force", "ah" or "tree_ah" (see `tuning.scann_params`).
    tuning_queries: held-out queries `[Q, D]` for tuning (e.g. user-tower
      outputs); default: perturbed items (`tuning.held_out_queries`).
    recall_target: Recall@10 against exact search that tuning must reach.
    user_tower: optional (serialized `jax.export` bytes, description, its other
      files) for services with jaxlib (`mmrec.retrieval.user_tower`).
    explain: optional (description, files) of the explanation part
      (`mmrec.retrieval.explain`), written as manifest field `explain`.

  Returns:
    The absolute bundle path.
  """
  out_dir = pathlib.Path(out_dir).absolute()
  embeddings, item_ids, popularity = _validate(embeddings, item_ids, popularity)
  metadata = _validate_metadata(metadata, len(embeddings))
  if not isinstance(model_info, dict):
    raise ValueError(f"export_bundle: model_info must be a dict, got {type(model_info).__name__}")
  _json("model_info", model_info)
  _check_replaceable(out_dir)
  if tuning_queries is not None:
    tuning_queries = np.asarray(tuning_queries, np.float32)
    if tuning_queries.ndim != 2 or tuning_queries.shape[1] != embeddings.shape[1]:
      raise ValueError(f"export_bundle: tuning_queries must be [Q, {embeddings.shape[1]}], "
                       f"got {tuning_queries.shape}")
  searcher, params, recall = tuning.configure(
      embeddings, scann_mode, tuning_queries, recall_target, query_source=tuning_query_source)
  params.update(mode_requested=scann_mode, built_num_items=len(embeddings), changed_since_build=0)
  extra_files, extra = {}, {}
  if user_tower is not None:
    data, description, files = user_tower
    extra_files[USER_TOWER_FILE] = bytes(data)
    extra_files.update(files)
    extra["user_tower"] = {"file": USER_TOWER_FILE, "format": "jax.export", **description}
  if explain is not None:
    extra["explain"], files = explain
    extra_files.update(files)
  now = _now()
  return write_bundle(
      out_dir, embeddings, item_ids, popularity, metadata, searcher,
      {"version": 1, "created_at": now, "updated_at": now, "model": model_info,
       "scann": params, "recall": recall,
       "history": [{"version": 1, "action": "export", "at": now, "num_items": len(item_ids)}],
       **extra},
      extra_files)


def write_bundle(out_dir: pathlib.Path, embeddings: np.ndarray, item_ids: np.ndarray,
                 popularity: np.ndarray, metadata: dict[str, list] | None, searcher,
                 fields: dict[str, Any], extra_files: dict[str, bytes]) -> pathlib.Path:
  """Writes validated arrays, the searcher and the manifest atomically to `out_dir`.

  `fields` supplies version, created_at, updated_at, model, scann, recall and
  history (and optional user_tower); the rest of the manifest is derived here.
  """
  n, dim = embeddings.shape

  def fill(folder: pathlib.Path) -> None:
    np.save(folder / "item_ids.npy", item_ids, allow_pickle=False)
    np.save(folder / "item_id_order.npy", np.argsort(item_ids, kind="stable").astype(np.int64),
            allow_pickle=False)
    np.save(folder / "popularity.npy", popularity, allow_pickle=False)
    if metadata is not None:
      (folder / "metadata.json").write_text(_json("metadata", metadata), encoding="utf-8")
    for name, data in extra_files.items():
      (folder / name).write_bytes(data)
    (folder / "scann").mkdir()
    # relative_path=True: the assets file names its files relative to the searcher
    # directory. No docids are given, so ScaNN writes no scann_docids.pkl.
    searcher.serialize(str(folder / "scann"), relative_path=True)
    _check_written(folder, embeddings)
    files = {p.relative_to(folder).as_posix(): file_sha256(p)
             for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest = {"format_version": FORMAT_VERSION, **fields, "dimension": dim,
                "distance": DISTANCE, "num_items": n,
                "popularity": tail.head_cut(popularity), "files": files}
    (folder / "manifest.json").write_text(_json("manifest", manifest), encoding="utf-8")

  return publish.publish(out_dir, fill)


def _check_written(folder: pathlib.Path, embeddings: np.ndarray) -> None:
  """The vectors are stored once, as ScaNN's dataset.npy: it must hold `embeddings` exactly."""
  pickles = [p.name for p in folder.rglob("*") if p.name.lower().endswith(PICKLE_SUFFIXES)]
  if pickles:
    raise RuntimeError(f"export_bundle: ScaNN wrote pickle files {pickles}; refusing them")
  stored = np.load(folder / VECTORS_FILE, mmap_mode="r", allow_pickle=False)
  if stored.shape != embeddings.shape or stored.dtype != np.float32 or not np.array_equal(
      stored, embeddings):
    raise RuntimeError(f"export_bundle: ScaNN's {VECTORS_FILE} does not hold the embeddings "
                       f"exactly ({stored.dtype} {stored.shape}); the bundle would disagree")


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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
  if out_dir.is_symlink() and not out_dir.exists():
    return  # a dangling pointer: replaced
  if not out_dir.exists():
    return
  if not out_dir.is_dir():
    raise ValueError(f"export_bundle: {out_dir} exists and is not a directory")
  if any(out_dir.iterdir()) and not (out_dir / "manifest.json").is_file():
    raise ValueError(
        f"export_bundle: {out_dir} is neither empty nor a bundle (no manifest.json); "
        "refusing to replace it")
