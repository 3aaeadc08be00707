"""Tail-aware re-ranking of candidate lists: pure numpy, importable without jax.

Two per-request knobs, both off by default (plain top-k by score):

- `beta`, popularity calibration: each candidate's score becomes
  `score - beta * ln(popularity + 1)`, with `popularity` the item's training
  interaction count (so cold items, popularity 0, are never penalised).
- `tail_balance` = lambda in [0, 1], a greedy head/tail balance in the spirit of
  xQuAD ("smooth xQuAD", Abdollahpouri, Burke & Mobasher, FLAIRS 2019). The list
  S is built one item at a time, each step taking the candidate i that maximises

      (1 - lambda) * rel(i) + lambda * P(c(i)) * (1 - |S ∩ c(i)| / |S|)

  where c(i) is head or tail, P(head) = P(tail) = 1/2 (the bundle knows no user
  profile), the coverage term is 1 while S is empty, and rel(i) is the
  calibrated score min-max scaled to [0, 1] over the query's candidates.
  Ties go to the earlier candidate (candidates arrive best first).

Evaluation code reuses `rerank_full` on full score matrices.
"""

from __future__ import annotations

import math

import numpy as np

HEAD_SHARE = 0.2  # the head: the top 20% of the items with interactions, as in evaluation


def head_tail_split(popularity: np.ndarray, head_share: float = HEAD_SHARE) -> np.ndarray:
  """Bool `[N]`, True for head items.

  The top `head_share` of the items with interactions by count (rounded half
  up, ties by lower index); items with no interactions are never head. This
  is the serving side's own copy of the cut, so serving imports nothing from
  evaluation; `mmrec.evaluation.metrics.popularity_groups` makes the same cut
  with `is_cold = popularity == 0` (tests/serving/test_tail.py checks both).
  """
  pop = np.asarray(popularity)
  if pop.ndim != 1 or pop.dtype.kind not in "iu":
    raise ValueError(f"popularity must be a 1-D integer array, got {pop.dtype} {pop.shape}")
  if (pop < 0).any():
    raise ValueError("popularity holds negative counts")
  if not 0.0 < head_share <= 1.0:
    raise ValueError(f"head_share={head_share} must be in (0, 1]")
  warm = np.flatnonzero(pop > 0)
  head = np.zeros(len(pop), bool)
  k = int(head_share * len(warm) + 0.5)
  if k:  # linear time: every count above the k-th largest, then its ties by lower index
    counts = pop[warm]
    kth = np.partition(counts, len(counts) - k)[len(counts) - k]
    above = warm[counts > kth]
    head[above] = True
    head[warm[counts == kth][:k - len(above)]] = True
  return head


def head_cut(popularity: np.ndarray, head_share: float = HEAD_SHARE) -> dict:
  """The head/tail cut as the bundle manifest records it."""
  head = head_tail_split(popularity, head_share)
  pop = np.asarray(popularity, np.int64)
  return {"head_share": head_share, "num_head_items": int(head.sum()),
          "head_min_popularity": int(pop[head].min()) if head.any() else 0,
          "total_interactions": int(pop.sum())}


def calibrate(scores: np.ndarray, popularity: np.ndarray, beta: float) -> np.ndarray:
  """`scores - beta * ln(popularity + 1)` as float32 (-inf stays -inf)."""
  scores = np.asarray(scores, np.float32)
  if beta == 0:
    return scores.copy()
  penalty = np.float32(beta) * np.log1p(np.asarray(popularity, np.float64)).astype(np.float32)
  return scores - penalty


def check_knobs(beta: float, tail_balance: float) -> None:
  if not math.isfinite(beta) or beta < 0:
    raise ValueError(f"beta={beta} must be a finite number >= 0")
  if not 0.0 <= tail_balance <= 1.0:
    raise ValueError(f"tail_balance={tail_balance} must be in [0, 1]")


def rerank(scores: np.ndarray, popularity: np.ndarray, is_head: np.ndarray, k: int, *,
           beta: float = 0.0, tail_balance: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """Re-ranks candidate lists.

  Args:
    scores: float `[Q, F]` raw scores of each query's candidates; -inf marks
      an empty slot (never chosen).
    popularity: int `[Q, F]` training counts of those candidates.
    is_head: bool `[Q, F]`, head membership of those candidates.
    k: list length.
    beta, tail_balance: see the module docstring.

  Returns:
    positions int64 `[Q, k]` into the candidate axis (-1 where fewer than k
    candidates are available) and their calibrated scores float32 `[Q, k]`
    (-inf in empty slots), in list order.
  """
  check_knobs(beta, tail_balance)
  cal = calibrate(scores, popularity, beta)
  valid = np.isfinite(cal)
  if tail_balance == 0:  # plain sort by calibrated score; ties by candidate position
    order = np.argsort(-np.where(valid, cal, -np.inf), axis=1, kind="stable")[:, :k]
  else:
    order = _smooth_xquad(cal, valid, np.asarray(is_head, bool), k, float(tail_balance))
  if order.shape[1] < k:  # fewer candidates than k: pad with empty slots
    order = np.pad(order, ((0, 0), (0, k - order.shape[1])), constant_values=-1)
  got = np.take_along_axis(cal, np.maximum(order, 0), axis=1)
  picked = np.take_along_axis(valid, np.maximum(order, 0), axis=1) & (order >= 0)
  order = np.where(picked, order, -1).astype(np.int64)
  return order, np.where(picked, got, -np.inf).astype(np.float32)


def _smooth_xquad(cal, valid, is_head, k, lam):
  q, f = cal.shape
  lo = np.where(valid, cal, np.inf).min(axis=1, keepdims=True)
  hi = np.where(valid, cal, -np.inf).max(axis=1, keepdims=True)
  span = hi - lo
  with np.errstate(invalid="ignore"):
    rel = np.where(span > 0, (cal - lo) / np.where(span > 0, span, 1), 1.0)
  rel = np.where(valid, rel, 0.0)
  available = valid.copy()
  chosen = np.full((q, min(k, f)), -1, np.int64)
  n_head = np.zeros((q, 1))
  n_tail = np.zeros((q, 1))
  rows = np.arange(q)
  for step in range(chosen.shape[1]):
    size = step
    if size == 0:
      cover_head = cover_tail = np.ones((q, 1))
    else:
      cover_head, cover_tail = 1 - n_head / size, 1 - n_tail / size
    gain = (1 - lam) * rel + lam * 0.5 * np.where(is_head, cover_head, cover_tail)
    gain = np.where(available, gain, -np.inf)
    best = np.argmax(gain, axis=1)
    ok = available[rows, best]
    chosen[:, step] = np.where(ok, best, -1)
    available[rows[ok], best[ok]] = False
    n_head[ok, 0] += is_head[rows[ok], best[ok]]
    n_tail[ok, 0] += ~is_head[rows[ok], best[ok]]
  return chosen


def rerank_full(scores: np.ndarray, popularity: np.ndarray, is_head: np.ndarray, k: int, *,
                candidates: int | None = None, beta: float = 0.0,
                tail_balance: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """Re-ranked top-`k` item rows from a full score matrix `[Q, N]`.

  The candidates are each query's `candidates` best items by raw score
  (default `default_candidates(k, beta, tail_balance)`; -inf marks items not
  allowed, e.g. already seen). Returns rows int64 `[Q, k]` (-1 when short)
  and calibrated scores float32 `[Q, k]`, as `Bundle.search(..., exact=True)`.
  """
  scores = np.asarray(scores, np.float32)
  n = scores.shape[1]
  f = min(n, candidates or default_candidates(k, beta, tail_balance))
  if f < n:
    top = np.argpartition(-scores, f - 1, axis=1)[:, :f]
  else:
    top = np.tile(np.arange(n), (len(scores), 1))
  vals = np.take_along_axis(scores, top, axis=1)
  order = np.lexsort((top, -vals), axis=1)  # best first, ties by item row
  top = np.take_along_axis(top, order, axis=1)
  vals = np.take_along_axis(vals, order, axis=1)
  pos, out = rerank(vals, np.asarray(popularity)[top], np.asarray(is_head)[top], k,
                    beta=beta, tail_balance=tail_balance)
  rows = np.where(pos >= 0, np.take_along_axis(top, np.maximum(pos, 0), axis=1), -1)
  return rows, out


def default_candidates(k: int, beta: float = 0.0, tail_balance: float = 0.0) -> int:
  """How many candidates to re-rank: `k` for plain search, else `max(10 k, 100)`."""
  return k if beta == 0 and tail_balance == 0 else max(10 * k, 100)
