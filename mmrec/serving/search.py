"""The search behind `Bundle.search`: ScaNN's candidates, filtered with whole-array masks,
and exact scoring where ScaNN cannot answer. Pure numpy around the ScaNN searcher.

Row sets come as None (no constraint), one sorted row array shared by every
query (`restrict` given one list) or a list of per-query row arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EXACT_BLOCK = 1 << 25  # query x item scores per block of exact search
PARALLEL_QUERIES = 64  # batches this large search on ScaNN's threads
RESTRICT_EXACT_SHARE = 0.25  # restricted to at most this share of items: score the subset exactly


def exact(embeddings, q, f, blocked, allowed):
  """The `f` best allowed rows by raw score, best first (ties by row); -1/-inf when short."""
  shared = allowed if isinstance(allowed, np.ndarray) else None
  items = embeddings if shared is None else embeddings[shared]  # a shared subset only
  m = len(items)
  rows = np.full((len(q), f), -1, np.int64)
  scores = np.full((len(q), f), -np.inf, np.float32)
  g = min(f, m)
  block = max(1, EXACT_BLOCK // max(1, m))
  for start in range(0, len(q) if m else 0, block):
    stop = min(len(q), start + block)
    s = q[start:stop] @ items.T
    if isinstance(allowed, list):
      keep = np.zeros(s.shape, bool)
      keep[_pairs(allowed[start:stop])] = True
      s[~keep] = -np.inf
    if blocked is not None:
      at, cols = _pairs(blocked[start:stop])
      if shared is not None:  # rows -> positions in the subset
        pos = np.minimum(np.searchsorted(shared, cols), m - 1)
        inside = shared[pos] == cols
        at, cols = at[inside], pos[inside]
      s[at, cols] = -np.inf
    top = (np.argpartition(-s, g - 1, axis=1)[:, :g] if g < m
           else np.broadcast_to(np.arange(m), s.shape))
    vals = np.take_along_axis(s, top, axis=1)
    order = np.lexsort((top, -vals), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    rows[start:stop, :g] = top if shared is None else shared[top]
    scores[start:stop, :g] = np.take_along_axis(vals, order, axis=1)
  rows[scores == -np.inf] = -1
  return rows, scores


def approximate(native, knobs, embeddings, q, f, blocked, allowed):
  """ScaNN's candidates, filtered with whole-array masks; rows it leaves short go exact."""
  n, nq = len(embeddings), len(q)
  plain = blocked is None and allowed is None
  if plain:  # ScaNN's answer as it is, unless it came up short
    idx, dist = scann(native, knobs, q, f)
    if not math.isnan(np.add.reduce(dist.ravel())):  # ScaNN pads with NaN when short
      return idx, dist
  num_blocked = (np.zeros(nq, np.int64) if blocked is None
                 else np.array([len(b) for b in blocked], np.int64))
  if allowed is None:
    available, small = n - num_blocked, np.zeros(nq, bool)
  else:
    sizes = (np.full(nq, len(allowed)) if isinstance(allowed, np.ndarray)
             else np.array([len(a) for a in allowed], np.int64))
    available = sizes - _count_blocked_allowed(blocked, allowed, n, nq)
    small = sizes <= RESTRICT_EXACT_SHARE * n
    if small.all():  # restricted to small subsets: score them exactly
      return exact(embeddings, q, f, blocked, allowed)
  fetch = f + int(num_blocked.max())
  if allowed is not None:  # over-fetch by the inverse share of allowed items
    fetch = int(np.ceil(fetch * n / max(1, sizes[~small].min())))
  if not plain:
    idx, dist = scann(native, knobs, q, min(n, fetch))
  idx = idx.astype(np.int64)  # ScaNN's rows are uint32
  keep = ~np.isnan(dist)  # ScaNN pads with index 0 and score NaN when its partitions hold too few
  if blocked is not None:
    keep &= ~np.isin(_keys(np.arange(nq)[:, None], idx, n), _keys(*_pairs(blocked), n))
  if isinstance(allowed, np.ndarray):
    mask = np.zeros(n, bool)
    mask[allowed] = True
    keep &= mask[idx]
  elif allowed is not None:
    keep &= np.isin(_keys(np.arange(nq)[:, None], idx, n), _keys(*_pairs(allowed), n))
  if keep.all():  # nothing excluded or padded: ScaNN's own best f
    rows, scores = idx[:, :f], dist[:, :f]
  else:  # move the kept candidates to the front, in ScaNN's order
    first = np.argsort(~keep, axis=1, kind="stable")[:, :f]
    got = np.take_along_axis(keep, first, axis=1)
    rows = np.where(got, np.take_along_axis(idx, first, axis=1), -1)
    scores = np.where(got, np.take_along_axis(dist, first, axis=1), -np.inf).astype(np.float32)
  redo = np.flatnonzero(small | (np.minimum(keep.sum(axis=1), f) < np.minimum(f, available)))
  if len(redo):  # restricted to a small subset, or the approximate search came up short
    sub = allowed if allowed is None or isinstance(allowed, np.ndarray) else [
        allowed[r] for r in redo]
    rows, scores = rows.copy(), scores.copy()
    rows[redo], scores[redo] = exact(
        embeddings, q[redo], f, None if blocked is None else [blocked[r] for r in redo], sub)
  return rows, scores


def scann(native, knobs, q, fetch):
  """ScaNN's `fetch` best rows (uint32) and scores (float32) for `q`, NaN-padded when short."""
  reorder, leaves = knobs
  pre = max(fetch, reorder) if reorder > 0 else -1
  try:
    if len(q) == 1:
      idx, dist = native.search(q[0], fetch, pre, leaves)
      return idx[None], dist[None]  # rows uint32, scores float32
    # Large batches use ScaNN's thread pool; small ones stay on the caller's thread.
    parallel = len(q) >= PARALLEL_QUERIES
    return native.search_batched(q, fetch, pre, leaves, parallel, 256 if parallel else 0)
  except RuntimeError:
    check_finite(q)  # ScaNN refuses NaN/inf queries: say so in our words
    raise


NO_ROWS = np.zeros(0, np.int64)


def check_finite(q: np.ndarray) -> None:
  if not np.isfinite(q).all():
    raise ValueError("queries contain NaN or inf")


def _pairs(lists: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """(query index, row) of every row in per-query row lists."""
  at = np.repeat(np.arange(len(lists)), [len(r) for r in lists])
  return at, np.concatenate(lists) if len(lists) else NO_ROWS


def _keys(at, rows, n):
  return at * n + rows


def _count_blocked_allowed(blocked, allowed, n, nq) -> np.ndarray:
  """Per query, how many of its blocked rows are also allowed."""
  if blocked is None:
    return np.zeros(nq, np.int64)
  at, cols = _pairs(blocked)
  if isinstance(allowed, np.ndarray):
    inside = np.isin(cols, allowed)
  else:
    inside = np.isin(_keys(at, cols, n), _keys(*_pairs(allowed), n))
  return np.bincount(at[inside], minlength=nq)
