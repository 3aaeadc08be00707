"""Loads, validates and queries an index bundle (format: docs/bundle.md).

Needs only numpy, scann and the standard library: services that consume
recommendations import this without jax or flax installed.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmrec.serving import explain, scann_assets, tail
from mmrec.serving import search as search_lib
from mmrec.serving import user_tower as user_tower_lib
from mmrec.serving.format import (BundleError, check_files, check_item_ids, head_cut,
                                  load_array, load_vectors, read_manifest, read_metadata)

__all__ = ["Bundle", "BundleError", "UnknownItemError", "load_bundle"]


class UnknownItemError(KeyError):
  """An item id that the bundle does not hold."""

  def __init__(self, item_id: str):
    super().__init__(item_id)
    self.item_id = item_id

  def __str__(self) -> str:
    return f"unknown item id {self.item_id!r}: not in the bundle's item_ids.npy"


def load_bundle(path: str | os.PathLike, *, verify_checksums: bool = False,
                mmap: bool = True) -> "Bundle":
  """Loads the bundle at `path`, raising `BundleError` for any defect found.

  Always checks the structure: manifest fields and numbers, file names confined to
  the bundle, no unlisted, linked or pickle file, dtypes and shapes, finite vectors,
  unique non-empty ids, agreement between files. `verify_checksums` also hashes
  every file against the manifest (as `mmrec bundle verify` and `mmrec serve` do).
  `mmap` maps the item vectors (ScaNN's `scann/dataset.npy`) instead of reading them.
  `path` may be the pointer (symlink) the exporter switches: it is resolved once.
  """
  given = pathlib.Path(path)
  if not given.is_dir():
    raise BundleError(f"{given}: bundle directory does not exist")
  root = given.resolve()
  manifest = read_manifest(root)
  check_files(root, manifest["files"], verify_checksums)
  n = manifest["num_items"]
  counted = f"manifest.json's num_items={n}"
  assets = scann_assets.read_assets(root, manifest["files"])
  scann_assets.check_assets(root, assets, manifest)
  embeddings = load_vectors(root, manifest, mmap)
  item_ids = load_array(root, "item_ids.npy", np.str_, (n,), counted)
  order = load_array(root, "item_id_order.npy", np.int64, (n,), counted)
  check_item_ids(root, item_ids, order)
  popularity = load_array(root, "popularity.npy", np.int64, (n,), counted)
  if (popularity < 0).any():
    raise BundleError(f"{root}/popularity.npy: negative counts")
  cut = manifest["popularity"]
  share = cut.get("head_share", tail.HEAD_SHARE)
  if not isinstance(share, (int, float)) or not 0 < share <= 1:
    raise BundleError(f"{root}/manifest.json: popularity.head_share {share!r} must be in (0, 1]")
  is_head = tail.head_tail_split(popularity, share)
  if (found := head_cut(popularity, is_head, share)) != cut:
    raise BundleError(f"{root}/popularity.npy: head/tail cut {found} "
                      f"disagrees with manifest.json popularity {cut}")
  metadata = read_metadata(root, n) if "metadata.json" in manifest["files"] else {}
  searcher = scann_assets.load_searcher(root, assets)
  if searcher.size() != n:
    raise BundleError(f"{root}/scann: the ScaNN searcher holds {searcher.size()} items, "
                      f"manifest.json num_items={n}")
  bundle = Bundle(root, manifest, embeddings, item_ids, popularity, metadata, searcher, order,
                  is_head)
  explain.explainer(bundle)  # checks the optional explanation part (BundleError if broken)
  return bundle


class Bundle:
  """A loaded bundle: item arrays, manifest, metadata and the ScaNN searcher. Read-only."""

  def __init__(self, path: pathlib.Path, manifest: dict[str, Any], embeddings: np.ndarray,
               item_ids: np.ndarray, popularity: np.ndarray, metadata: dict[str, list],
               searcher, item_order: np.ndarray | None = None,
               is_head: np.ndarray | None = None):
    self.path = path
    self.manifest = manifest
    self.embeddings = embeddings  # float32 [N, D]
    self.item_ids = item_ids  # str [N]
    self.popularity = popularity  # int64 [N], training counts
    self.is_head = tail.head_tail_split(popularity, manifest["popularity"]["head_share"]) \
        if is_head is None else is_head
    self.metadata = metadata  # name -> list aligned to items; {} without metadata.json
    self.searcher = searcher
    # the popularity calibration searches use unless given one (checked by load_bundle)
    self.default_beta = float(manifest["model"].get("default_beta", 0.0))
    # rows in id order: id lookups by binary search (no per-item dict at load)
    self._order = np.argsort(item_ids, kind="stable") if item_order is None else item_order
    self._user_tower = None  # loaded on first use (needs jax)

  @property
  def num_items(self) -> int:
    return int(self.manifest["num_items"])

  @property
  def dimension(self) -> int:
    return int(self.manifest["dimension"])

  @property
  def version(self) -> int:
    """The bundle's content version: 1 at export, +1 for every add or remove."""
    return int(self.manifest["version"])

  def index_of(self, ids: str | Sequence[str]) -> int | np.ndarray:
    """Row of one id (int), or rows of a sequence of ids (int64 array)."""
    if isinstance(ids, str):
      return self._index(ids)
    return np.array([self._index(i) for i in ids], np.int64)

  def rows(self, ids: Sequence[str]) -> np.ndarray:
    """Row of each id, int64 `[len(ids)]`, -1 for an id the bundle does not hold."""
    wanted = np.array([i if isinstance(i, str) else "" for i in ids], dtype=str)  # "": unknown
    pos = np.searchsorted(self.item_ids, wanted, sorter=self._order)
    rows = self._order[np.minimum(pos, self.num_items - 1)].astype(np.int64)
    rows[self.item_ids[rows] != wanted] = -1
    return rows

  @functools.cached_property
  def _row(self) -> dict[str, int]:
    """id -> row, built on first use (prefer `rows`, which needs no dict)."""
    return {item_id: i for i, item_id in enumerate(self.item_ids.tolist())}

  def _index(self, item_id: str) -> int:
    row = int(self.rows([item_id])[0]) if isinstance(item_id, str) else -1
    if row < 0:
      raise UnknownItemError(item_id)
    return row

  def ids_where(self, **conditions) -> np.ndarray:
    """Ids whose metadata matches every condition, e.g. `ids_where(category="dress")`.

    A condition's value is one value or a list/set/tuple of accepted values.
    """
    keep = np.ones(self.num_items, bool)
    for field, wanted in conditions.items():
      if field not in self.metadata:
        raise ValueError(f"metadata has no field {field!r}; fields: {sorted(self.metadata)}")
      accepted = set(wanted) if isinstance(wanted, (list, set, tuple, frozenset)) else {wanted}
      keep &= np.fromiter((v in accepted for v in self.metadata[field]), bool, self.num_items)
    return self.item_ids[keep]

  def search(
      self,
      queries: np.ndarray,
      k: int,
      *,
      exclude: Sequence[Sequence[str]] | None = None,
      restrict: Sequence[str] | Sequence[Sequence[str]] | None = None,
      beta: float | None = None,
      tail_balance: float = 0.0,
      exact: bool = False,
      candidates: int | None = None,
  ) -> tuple[np.ndarray, np.ndarray]:
    """Top-`k` items by dot product for each query, optionally re-ranked for the tail.

    Args:
      queries: float32 `[Q, D]` query embeddings (e.g. user-tower outputs).
      k: results per query, `1 <= k <= num_items`.
      exclude: per query, item ids never to return (e.g. already bought).
      restrict: the only item ids that may be returned: one list for every
        query, or one list per query (e.g. `bundle.ids_where(category=...)`).
        Unknown ids in `exclude` and `restrict` are ignored.
      beta: popularity calibration, score - beta * ln(popularity + 1); None: the
        bundle's `default_beta` (chosen on valid at export; 0 when none was).
      tail_balance: in [0, 1], greedy head/tail balance (`mmrec.serving.tail`).
      exact: numpy brute force over all embeddings instead of ScaNN.
      candidates: how many best raw-score items to re-rank (default `k`
        when beta = tail_balance = 0, else max(10 k, 100)).

    Returns:
      ids str `[Q, k]` and scores float32 `[Q, k]` (calibrated when beta > 0),
      in ranked order. When fewer than `k` items are allowed, rows end with
      id "" and score -inf.
    """
    q = np.ascontiguousarray(queries, np.float32)
    n = self.num_items
    if q.ndim != 2 or q.shape[1] != self.dimension:
      raise ValueError(f"queries must be [Q, {self.dimension}], got shape {q.shape}")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
      raise ValueError(f"k={k} must be an int in [1, {n}] (the bundle's num_items)")
    beta = self.default_beta if beta is None else beta
    if beta != 0 or tail_balance != 0:  # (NaN != 0 too)
      tail.check_knobs(beta, tail_balance)
    f = min(n, candidates or tail.default_candidates(k, beta, tail_balance))
    if f < k:
      raise ValueError(f"candidates={candidates} must be >= k={k}")
    blocked = self._per_query_rows(exclude, len(q), "exclude")
    allowed = self._allowed_rows(restrict, len(q))
    if exact or len(q) != 1 or blocked is not None or allowed is not None:
      search_lib.check_finite(q)  # (a plain single query: ScaNN refuses NaN/inf itself)
    if exact or not len(q):
      rows, scores = search_lib.exact(self.embeddings, q, f, blocked, allowed)
    else:
      rows, scores = search_lib.approximate(self.searcher.searcher, self.search_knobs,
                                            self.embeddings, q, f, blocked, allowed)
    if beta or tail_balance:
      rows = rows.astype(np.int64, copy=False)  # ScaNN's rows are uint32
      safe = np.maximum(rows, 0)
      pos, scores = tail.rerank(scores, self.popularity[safe], self.is_head[safe], k,
                                beta=beta, tail_balance=tail_balance)
      rows = np.where(pos >= 0, np.take_along_axis(rows, np.maximum(pos, 0), axis=1), -1)
    elif f > k:  # plain top-k: the candidates arrive best first, as rerank would order them
      rows, scores = rows[:, :k], scores[:, :k]
    ids = self.item_ids[rows]  # a copy; row -1 (an empty slot) is blanked next
    if rows.dtype != np.uint32 and len(q) and rows.min() < 0:  # uint32: ScaNN's own, never -1
      ids[rows < 0] = ""
    return ids, scores

  def similar(self, item_id: str, k: int, *, exclude: Sequence[str] = (),
              **options) -> tuple[np.ndarray, np.ndarray]:
    """The `k` items closest to `item_id` (itself excluded): ids `[k]`, scores `[k]`.

    `exclude` is a flat list of ids; other options as in `search`.
    """
    row = self._index(item_id)
    return self._one(self.embeddings[row], k, [item_id, *_flat(exclude, "exclude")], options)

  @property
  def has_user_tower(self) -> bool:
    """Whether the trained user tower can run: in numpy when the bundle holds the linear
    profile tower (`mmrec.serving.explain`), else its jax export when jax is there."""
    return explain.has_linear_tower(self.manifest) or (
        "user_tower" in self.manifest and user_tower_lib.jax_available())

  def embed_histories(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
    """User embeddings float32 `[Q, D]` from the exported user tower (needs jax).

    Each history lists item ids oldest first; the tower reads the last
    `manifest["user_tower"]["history_len"]` of them.
    """
    if not self.has_user_tower:
      raise BundleError(f"{self.path}: no exported user tower to run (it needs jax and a bundle "
                        "exported with one); search_by_history falls back to pooling")
    if explain.has_linear_tower(self.manifest):  # exact, in numpy, no jax needed
      return explain.explainer(self).tower.embed(histories, self.index_of, self.embeddings)
    if self._user_tower is None:
      self._user_tower = user_tower_lib.UserTower(self.path, self.manifest["user_tower"])
    return self._user_tower.embed(histories, self.index_of, self.embeddings)

  def search_by_history(self, history_ids: Sequence[str], k: int, *, exclude_history: bool = True,
                        exclude: Sequence[str] = (), user_tower: bool | None = None,
                        **options) -> tuple[np.ndarray, np.ndarray]:
    """Recommends from a history of item ids, oldest first: ids `[k]`, scores `[k]`.

    With `user_tower` (default: when `has_user_tower`) the query is the exported
    user tower's embedding of the history. Otherwise, the pooling fallback: the
    mean of the history items' embeddings, L2-normalised, which ignores order
    and recency and is weaker than the trained tower. `exclude` is a flat list
    of ids; other options as in `search`.
    """
    if isinstance(history_ids, str) or not len(history_ids):
      raise ValueError("history_ids must be a non-empty list of item ids")
    if self.has_user_tower if user_tower is None else user_tower:
      query = self.embed_histories([history_ids])[0]
    else:
      query = self.embeddings[self.index_of(history_ids)].mean(axis=0)
      norm = np.linalg.norm(query)
      if norm == 0:
        raise ValueError("the history items' embeddings average to the zero vector")
      query = query / norm
    excluded = [*(history_ids if exclude_history else ()), *_flat(exclude, "exclude")]
    return self._one(query, k, excluded, options)

  def explain_history(self, history_ids: Sequence[str], item_ids: Sequence[str],
                      **options) -> list[dict[str, Any]]:
    """Why `search_by_history(history_ids, ...)` scored each of `item_ids` as it did:
    history items' contributions and the modality split (`mmrec.serving.explain`)."""
    return explain.explain_history(self, history_ids, item_ids, **options)

  def _one(self, query, k, exclude, options):
    ids, scores = self.search(query[None], k, exclude=[exclude], **options)
    return ids[0], scores[0]

  def _rows_of(self, ids) -> np.ndarray:
    rows = self.rows(list(ids))
    return np.unique(rows[rows >= 0])

  def _per_query_rows(self, lists, num_queries, name) -> list[np.ndarray] | None:
    """Rows of each query's ids (sorted, unique); None when no query names any."""
    if lists is None:
      return None
    if isinstance(lists, str) or len(lists) != num_queries:
      raise ValueError(f"{name} must hold one list of ids per query ({num_queries} queries)")
    if any(isinstance(e, str) for e in lists):
      raise ValueError(f"{name} must hold one list of ids per query, not bare ids")
    rows = [self._rows_of(e) if len(e) else search_lib.NO_ROWS for e in lists]
    return rows if name == "restrict" or any(len(r) for r in rows) else None

  def _allowed_rows(self, restrict, num_queries) -> np.ndarray | list[np.ndarray] | None:
    """None (all allowed), one row array shared by every query, or one per query."""
    if restrict is None:
      return None
    if isinstance(restrict, str):
      raise ValueError("restrict must be a list of ids (or one list per query), not one id")
    restrict = list(restrict)
    if restrict and all(isinstance(r, str) for r in restrict) or not restrict:
      return self._rows_of(restrict)  # one list shared by every query
    return self._per_query_rows(restrict, num_queries, "restrict")

  @functools.cached_property
  def search_knobs(self) -> tuple[int, int]:
    """(re-order size, leaves to search) from the manifest, passed on every ScaNN search;
    -1: ScaNN's default."""
    params = self.manifest["scann"]
    return int(params.get("reorder") or -1), int(params.get("num_leaves_to_search") or -1)


def _flat(ids, name) -> list[str]:
  if isinstance(ids, str):
    raise ValueError(f"{name} must be a list of item ids, not one id")
  ids = list(ids)
  if any(not isinstance(i, str) for i in ids):
    raise ValueError(f"{name} must be a flat list of item ids (str)")
  return ids
