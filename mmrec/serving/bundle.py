"""Loads, validates and queries an index bundle (format: docs/bundle.md).

Needs only numpy, scann and the standard library: services that consume
recommendations import this without jax or flax installed.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from scann.scann_ops.py import scann_ops_pybind

from mmrec.serving import tail
from mmrec.serving import user_tower as user_tower_lib
from mmrec.serving.format import (BundleError, check_files, load_array,
                                  read_manifest, read_metadata)

__all__ = ["Bundle", "BundleError", "UnknownItemError", "load_bundle"]
_EXACT_BLOCK = 1 << 25  # query x item scores per block of exact search
_PARALLEL_QUERIES = 64  # batches this large search on ScaNN's threads
_RESTRICT_EXACT_SHARE = 0.25  # restricted to at most this share of items: score the subset exactly


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
  manifest = read_manifest(path)
  check_files(path, manifest["files"], verify_checksums)
  n, d = manifest["num_items"], manifest["dimension"]
  embeddings = load_array(path, "embeddings.npy", np.float32, (n, d), manifest)
  item_ids = load_array(path, "item_ids.npy", np.str_, (n,), manifest)
  popularity = load_array(path, "popularity.npy", np.int64, (n,), manifest)
  if (popularity < 0).any():
    raise BundleError(f"{path}/popularity.npy: negative counts")
  cut = manifest["popularity"]
  share = cut.get("head_share", tail.HEAD_SHARE)
  if not isinstance(share, (int, float)) or not 0 < share <= 1:
    raise BundleError(f"{path}/manifest.json: popularity.head_share {share!r} must be in (0, 1]")
  if tail.head_cut(popularity, share) != cut:
    raise BundleError(f"{path}/popularity.npy: head/tail cut {tail.head_cut(popularity, share)} "
                      f"disagrees with manifest.json popularity {cut}")
  metadata = read_metadata(path, n) if "metadata.json" in manifest["files"] else {}
  try:
    searcher = scann_ops_pybind.load_searcher(str(path / "scann"), assets_backcompat_shim=False)
  except (RuntimeError, ValueError) as e:
    raise BundleError(f"{path}/scann: the ScaNN searcher does not load: {e}") from e
  if searcher.size() != n:
    raise BundleError(f"{path}/scann: the ScaNN searcher holds {searcher.size()} items, "
                      f"manifest.json num_items={n}")
  beta = manifest["model"].get("default_beta", 0.0)
  if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not np.isfinite(beta) \
      or beta < 0:
    raise BundleError(f"{path}/manifest.json: model.default_beta={beta!r} must be a finite "
                      "number >= 0")
  return Bundle(path, manifest, embeddings, item_ids, popularity, metadata, searcher)


class Bundle:
  """A loaded bundle: item arrays, manifest, metadata and the ScaNN searcher. Read-only."""

  def __init__(self, path: pathlib.Path, manifest: dict[str, Any], embeddings: np.ndarray,
               item_ids: np.ndarray, popularity: np.ndarray, metadata: dict[str, list],
               searcher):
    self.path = path
    self.manifest = manifest
    self.embeddings = embeddings  # float32 [N, D]
    self.item_ids = item_ids  # str [N]
    self.popularity = popularity  # int64 [N], training counts
    self.is_head = tail.head_tail_split(popularity, manifest["popularity"]["head_share"])
    self.metadata = metadata  # name -> list aligned to items; {} without metadata.json
    self.searcher = searcher
    # the popularity calibration searches use unless given one (checked by load_bundle)
    self.default_beta = float(manifest["model"].get("default_beta", 0.0))
    self._row = {item_id: i for i, item_id in enumerate(item_ids.tolist())}
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

  def _index(self, item_id: str) -> int:
    try:
      return self._row[item_id]
    except (KeyError, TypeError):
      raise UnknownItemError(item_id) from None

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
    if q.ndim != 2 or q.shape[1] != self.dimension:
      raise ValueError(f"queries must be [Q, {self.dimension}], got shape {q.shape}")
    if not np.isfinite(q).all():
      raise ValueError("queries contain NaN or inf")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= self.num_items:
      raise ValueError(f"k={k} must be an int in [1, {self.num_items}] (the bundle's num_items)")
    beta = self.default_beta if beta is None else beta
    tail.check_knobs(beta, tail_balance)
    f = min(self.num_items, candidates or tail.default_candidates(k, beta, tail_balance))
    if f < k:
      raise ValueError(f"candidates={candidates} must be >= k={k}")
    blocked = self._per_query_rows(exclude, len(q), "exclude")
    allowed = self._allowed_rows(restrict, len(q))
    if exact or not len(q):
      rows, scores = self._exact(q, f, blocked, allowed)
    else:
      rows, scores = self._approximate(q, f, blocked, allowed)
    safe = np.maximum(rows, 0)
    pos, scores = tail.rerank(scores, self.popularity[safe], self.is_head[safe], k,
                              beta=beta, tail_balance=tail_balance)
    rows = np.where(pos >= 0, np.take_along_axis(rows, np.maximum(pos, 0), axis=1), -1)
    ids = self.item_ids[np.maximum(rows, 0)]
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
    """Whether the bundle holds the exported user tower and jax is there to run it."""
    return "user_tower" in self.manifest and user_tower_lib.jax_available()

  def embed_histories(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
    """User embeddings float32 `[Q, D]` from the exported user tower (needs jax).

    Each history lists item ids oldest first; the tower reads the last
    `manifest["user_tower"]["history_len"]` of them.
    """
    if not self.has_user_tower:
      raise BundleError(f"{self.path}: no exported user tower to run (it needs jax and a bundle "
                        "exported with one); search_by_history falls back to pooling")
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

  def _one(self, query, k, exclude, options):
    ids, scores = self.search(query[None], k, exclude=[exclude], **options)
    return ids[0], scores[0]

  def _rows_of(self, ids) -> np.ndarray:
    return np.array(sorted({self._row[i] for i in ids if isinstance(i, str) and i in self._row}),
                    np.int64)

  def _per_query_rows(self, lists, num_queries, name) -> list[np.ndarray]:
    if lists is None:
      return [np.zeros(0, np.int64)] * num_queries
    if isinstance(lists, str) or len(lists) != num_queries:
      raise ValueError(f"{name} must hold one list of ids per query ({num_queries} queries)")
    if any(isinstance(e, str) for e in lists):
      raise ValueError(f"{name} must hold one list of ids per query, not bare ids")
    return [self._rows_of(e) for e in lists]

  def _allowed_rows(self, restrict, num_queries) -> list[np.ndarray] | None:
    if restrict is None:
      return None
    if isinstance(restrict, str):
      raise ValueError("restrict must be a list of ids (or one list per query), not one id")
    restrict = list(restrict)
    if restrict and all(isinstance(r, str) for r in restrict) or not restrict:
      return [self._rows_of(restrict)] * num_queries  # one list shared by every query
    return self._per_query_rows(restrict, num_queries, "restrict")

  def _exact(self, q, f, blocked, allowed):
    """The `f` best allowed rows by raw score, best first (ties by row); -1/-inf when short."""
    rows = np.full((len(q), f), -1, np.int64)
    scores = np.full((len(q), f), -np.inf, np.float32)
    block = max(1, _EXACT_BLOCK // self.num_items)
    for start in range(0, len(q), block):
      s = q[start:start + block] @ self.embeddings.T
      for r in range(len(s)):
        if allowed is not None:
          keep = np.full(self.num_items, -np.inf, np.float32)
          keep[allowed[start + r]] = 0
          s[r] += keep
        s[r, blocked[start + r]] = -np.inf
      top = np.argpartition(-s, f - 1, axis=1)[:, :f] if f < self.num_items else np.tile(
          np.arange(self.num_items), (len(s), 1))
      vals = np.take_along_axis(s, top, axis=1)
      order = np.lexsort((top, -vals), axis=1)
      rows[start:start + block] = np.take_along_axis(top, order, axis=1)
      scores[start:start + block] = np.take_along_axis(vals, order, axis=1)
    rows[scores == -np.inf] = -1
    return rows, scores

  def _approximate(self, q, f, blocked, allowed):
    n = self.num_items
    available = [n - len(b) if allowed is None else len(a) - np.isin(b, a).sum()
                 for b, a in zip(blocked, allowed or [None] * len(q))]
    small = [allowed is not None and len(a) <= _RESTRICT_EXACT_SHARE * n for a in allowed or ()]
    fetch = f + max(len(b) for b in blocked)
    if allowed is not None:  # over-fetch by the inverse share of allowed items
      large = [len(a) for a, s in zip(allowed, small) if not s]
      fetch = int(np.ceil(fetch * n / max(1, min(large, default=n))))
    fetch = min(n, fetch)
    if all(small) and small:
      idx = dist = None
    else:
      idx, dist = self._scann(q, fetch)
    rows = np.full((len(q), f), -1, np.int64)
    scores = np.full((len(q), f), -np.inf, np.float32)
    redo = []
    for r, b in enumerate(blocked):
      if small and small[r]:
        redo.append(r)
        continue
      # ScaNN pads with index 0 and score NaN when its partitions hold too few.
      keep = ~np.isnan(dist[r]) & ~np.isin(idx[r], b)
      if allowed is not None:
        keep &= np.isin(idx[r], allowed[r])
      got = np.flatnonzero(keep)[:f]
      rows[r, :len(got)], scores[r, :len(got)] = idx[r, got], dist[r, got]
      if len(got) < min(f, available[r]):
        redo.append(r)
    if redo:  # restricted to a small subset, or the approximate search came up short
      sub = [allowed[r] for r in redo] if allowed is not None else None
      rows[redo], scores[redo] = self._exact(q[redo], f, [blocked[r] for r in redo], sub)
    return rows, scores

  def _scann(self, q, fetch):
    params = self.manifest["scann"]
    reorder = params.get("reorder")
    pre = max(fetch, int(reorder)) if reorder else None
    leaves = params.get("num_leaves_to_search")
    # Large batches use ScaNN's thread pool; small ones stay on the caller's thread.
    search = (self.searcher.search_batched_parallel if len(q) >= _PARALLEL_QUERIES
              else self.searcher.search_batched)
    idx, dist = search(q, fetch, pre_reorder_num_neighbors=pre,
                       leaves_to_search=int(leaves) if leaves else None)
    return np.asarray(idx, np.int64), np.asarray(dist, np.float32)


def _flat(ids, name) -> list[str]:
  if isinstance(ids, str):
    raise ValueError(f"{name} must be a list of item ids, not one id")
  ids = list(ids)
  if any(not isinstance(i, str) for i in ids):
    raise ValueError(f"{name} must be a flat list of item ids (str)")
  return ids
