"""ScaNN configured from the catalog and tuned to a recall target against exact search.

- Below 20,000 items: brute force (exact).
- 20,000 to 100,000: asymmetric hashing (AH, 2 dimensions per block,
  anisotropic threshold 0.2) with exact re-ordering of the best candidates.
- From 100,000: a k-means tree of about sqrt(N) leaves in front of AH + reorder.

`configure` builds the searcher once, then tunes the search-time parameters
(leaves to search, re-order size). The tuning queries are split in two: on
the first half, each re-order size (`REORDERS`) gets the fewest leaves
(a geometric grid from 1 leaf) reaching Recall@10 >= 0.95 against numpy
exact search; those points are checked on the second half, which tuning never
saw (a point that misses there is replaced, in each direction, by the first of
the next 3 re-order sizes or leaf counts that holds), and the fastest one that
holds is kept (by measured search time on every core). The manifest records the held-out recall, and whether it is a
measurement (queries given: user-tower outputs, or a caller's) or an estimate
(queries made up from perturbed items).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scann.scann_ops.py import scann_ops_pybind

from mmrec.serving.format import DISTANCE

BRUTE_FORCE_MAX_ITEMS = 20_000
TREE_MIN_ITEMS = 100_000
RECALL_TARGET = 0.95
RECALL_K = 10
NUM_TUNING_QUERIES = 500
SCANN_MODES = ("auto", "brute_force", "ah", "tree_ah")
AH_CLUSTERS_PER_BLOCK = 16  # ScaNN's default; AH training needs this many items
GRID_STEP = 1.1  # leaves to search: 1, 2, ..., 10, then about 10% more each step
# re-order sizes: round numbers about 25% apart
REORDERS = (20, 25, 30, 40, 50, 60, 70, 80, 100, 120, 150, 200, 250, 300, 400, 500, 600, 800,
            1000, 1200, 1500, 2000)
HELD_OUT_SHARE = 0.5  # of the tuning queries, kept out of tuning to check the choice
_TIMING_ROUNDS = 5
_REPAIR_STEPS = 3  # a point that misses on held-out queries: neighbours tried each way
_TOP_BLOCK = 128  # columns per block of exact top-k selection (`_top_rows`)


def scann_params(num_items: int, dim: int, mode: str = "auto") -> dict[str, Any]:
  """Build parameters from catalog size and dimension (search parameters are defaults)."""
  if mode not in SCANN_MODES:
    raise ValueError(f"scann_mode={mode!r} must be one of {SCANN_MODES}")
  if mode == "auto":
    mode = ("brute_force" if num_items < BRUTE_FORCE_MAX_ITEMS else
            "ah" if num_items < TREE_MIN_ITEMS else "tree_ah")
  if mode == "brute_force":
    return {"mode": "brute_force", "num_neighbors": RECALL_K}
  if num_items < AH_CLUSTERS_PER_BLOCK:
    raise ValueError(f"scann_mode={mode!r} needs at least {AH_CLUSTERS_PER_BLOCK} items, "
                     f"got {num_items}")
  params = {"mode": mode, "num_neighbors": RECALL_K,
            "dimensions_per_block": 2 if dim > 1 else 1,
            "anisotropic_quantization_threshold": 0.2, "reorder": min(num_items, 400)}
  if mode == "tree_ah":
    num_leaves = max(2, round(math.sqrt(num_items)))
    params.update(num_leaves=num_leaves,
                  num_leaves_to_search=max(1, math.ceil(num_leaves / 10)),
                  training_sample_size=min(num_items, 250_000))
  return params


def build_searcher(embeddings: np.ndarray, params: dict[str, Any]):
  """A ScaNN searcher over `embeddings` (float32 [N, D]) built from `params`."""
  builder = scann_ops_pybind.builder(embeddings, params["num_neighbors"], DISTANCE)
  if params["mode"] == "brute_force":
    return builder.score_brute_force().build()
  if params["mode"] == "tree_ah":
    builder = builder.tree(num_leaves=params["num_leaves"],
                           num_leaves_to_search=params["num_leaves_to_search"],
                           training_sample_size=params["training_sample_size"])
  return (builder.score_ah(params["dimensions_per_block"],
                           anisotropic_quantization_threshold=params[
                               "anisotropic_quantization_threshold"])
          .reorder(params["reorder"]).build())


def held_out_queries(embeddings: np.ndarray, num: int = NUM_TUNING_QUERIES,
                     seed: int = 0) -> np.ndarray:
  """Queries near the catalog but not in it: sampled items plus Gaussian noise.

  Noise per coordinate has half the embeddings' root-mean-square coordinate,
  so a query sits near an item, as a user who likes it would.
  """
  rng = np.random.default_rng(seed)
  rows = rng.choice(len(embeddings), min(num, len(embeddings)), replace=False)
  rms = float(np.sqrt(np.mean(np.square(embeddings[rows]))))
  noise = rng.normal(0.0, 0.5 * rms, (len(rows), embeddings.shape[1]))
  return (embeddings[rows] + noise).astype(np.float32)


def exact_top(embeddings: np.ndarray, queries: np.ndarray, k: int = RECALL_K) -> np.ndarray:
  """Rows of the `k` best items per query by exact dot product, int64 `[Q, k]`, best first.

  Equal scores are listed by row; which of the items tied at the k-th score
  make the list is unspecified.
  """
  k = min(k, len(embeddings))
  out = np.empty((len(queries), k), np.int64)
  chunk = max(1, (1 << 25) // len(embeddings))
  for start in range(0, len(queries), chunk):
    out[start:start + chunk] = _top_rows(queries[start:start + chunk] @ embeddings.T, k)
  return out


def _top_rows(scores: np.ndarray, k: int) -> np.ndarray:
  """The `k` best columns of each row, best first.

  Selecting over all N columns is slow, so the columns go in blocks of
  `_TOP_BLOCK`: the k-th best column scores at least the k-th best block
  maximum, so it lies in one of the k blocks with the highest maxima (or in
  the remainder that fills no block); only those are searched.
  """
  b, n = scores.shape
  blocks = n // _TOP_BLOCK
  if blocks <= k:
    cand = np.broadcast_to(np.arange(n), (b, n))
  else:
    maxima = scores[:, :blocks * _TOP_BLOCK].reshape(b, blocks, _TOP_BLOCK).max(axis=2)
    best = np.argpartition(-maxima, k - 1, axis=1)[:, :k]
    cand = (best[:, :, None] * _TOP_BLOCK + np.arange(_TOP_BLOCK)).reshape(b, -1)
    rest = np.broadcast_to(np.arange(blocks * _TOP_BLOCK, n), (b, n - blocks * _TOP_BLOCK))
    cand = np.concatenate([cand, rest], axis=1)
  vals = np.take_along_axis(scores, cand, axis=1)
  if k < cand.shape[1]:
    keep = np.argpartition(-vals, k - 1, axis=1)[:, :k]
    cand, vals = np.take_along_axis(cand, keep, axis=1), np.take_along_axis(vals, keep, axis=1)
  order = np.lexsort((cand, -vals), axis=1)
  return np.take_along_axis(cand, order, axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
  """Mean share of each query's exact top-k found (Recall@k against exact search)."""
  k = truth.shape[1]
  return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k
                        for f, t in zip(found, truth)]))


def search_rows(searcher, queries, params, k=RECALL_K, leaves=None, reorder=None) -> np.ndarray:
  """Rows ScaNN finds for `queries`, searched on every core."""
  leaves = leaves or params.get("num_leaves_to_search")
  reorder = reorder or params.get("reorder")
  idx, _ = searcher.search_batched_parallel(queries, k, pre_reorder_num_neighbors=reorder,
                                            leaves_to_search=leaves)
  return np.asarray(idx, np.int64)


def geometric_grid(low: int, high: int, step: float = GRID_STEP) -> list[int]:
  """Integers from `low` to `high`: every one at first, then each about `step` times the last."""
  grid = [low]
  while grid[-1] < high:
    grid.append(min(high, max(grid[-1] + 1, round(grid[-1] * step))))
  return grid


def estimated_cost(params: dict[str, Any], num_items: int, dim: int) -> float:
  """Rough multiply-adds per query: centroids, AH lookups (1/8 of a float MAC each), reorder."""
  if params["mode"] == "brute_force":
    return float(num_items * dim)
  share = params["num_leaves_to_search"] / params["num_leaves"] if "num_leaves" in params else 1.0
  ah = share * num_items * dim / params["dimensions_per_block"] / 8
  return params.get("num_leaves", 0) * dim + ah + params["reorder"] * dim


def measured_cost(searcher, queries: np.ndarray) -> Callable[[list[dict[str, Any]]], list[float]]:
  """Seconds per query of each setting on every core (best of a few interleaved rounds)."""
  def cost(trials):
    best = [math.inf] * len(trials)
    for _ in range(_TIMING_ROUNDS):
      for i, trial in enumerate(trials):
        start = time.perf_counter()
        search_rows(searcher, queries, trial)
        best[i] = min(best[i], (time.perf_counter() - start) / len(queries))
    return best
  return cost


def split_queries(queries: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(tuning, held-out) halves of `queries`, shuffled with `seed`."""
  if len(queries) < 2:
    raise ValueError(f"tuning needs at least 2 queries (half to tune, half to check), "
                     f"got {len(queries)}")
  order = np.random.default_rng(seed).permutation(len(queries))
  cut = min(len(queries) - 1, max(1, int(round(len(queries) * (1 - HELD_OUT_SHARE)))))
  return queries[order[:cut]], queries[order[cut:]]


def tune(searcher, params: dict[str, Any], embeddings: np.ndarray, queries: np.ndarray,
         target: float = RECALL_TARGET, *, seed: int = 0,
         cost: Callable[[list[dict[str, Any]]], list[float]] | None = None,
         ) -> tuple[dict[str, Any], float]:
  """The fastest (leaves to search, reorder) reaching `target` on held-out queries.

  Returns (params, Recall@10 on the held-out half of `queries`); see `tune_report`.
  """
  tuned = tune_report(searcher, params, embeddings, queries, target, seed=seed, cost=cost)
  return tuned["params"], tuned["held_out_recall"]


def tune_report(searcher, params, embeddings, queries, target=RECALL_TARGET, *, seed=0,
                cost=None) -> dict[str, Any]:
  """Tunes on one half of `queries` and checks on the other (module docstring).

  `cost` maps a list of candidate settings to their costs (default: measured
  seconds per query on the tuning half). Returns params, held_out_recall,
  tuning_recall, num_tuning and num_held_out queries, and the candidates tried.
  """
  tune_q, check_q = split_queries(np.ascontiguousarray(queries, np.float32), seed)
  tune_truth, check_truth = exact_top(embeddings, tune_q), exact_top(embeddings, check_q)
  out = {"num_tuning": len(tune_q), "num_held_out": len(check_q)}
  if params["mode"] == "brute_force":
    got = recall(search_rows(searcher, check_q, params), check_truth)
    return {**out, "params": params, "held_out_recall": got,
            "tuning_recall": recall(search_rows(searcher, tune_q, params), tune_truth)}
  frontier, fallback = _frontier(searcher, params, embeddings, tune_q, tune_truth, target)
  held_out = lambda trial: recall(search_rows(searcher, check_q, trial), check_truth)
  checked = [(trial, got, held_out(trial)) for trial, got in frontier]
  holding = [c for c in checked if c[2] >= target]
  grids = _grids(params, len(embeddings))
  for trial, _, held in checked:  # a point that misses on held-out queries: try its neighbours
    for steps in (_steps_up(trial, *grids) if held < target else ()):
      for step in steps:
        if (held := held_out(step)) >= target:
          holding.append((step, recall(search_rows(searcher, tune_q, step), tune_truth), held))
          break
  if holding:
    costs = (cost or measured_cost(searcher, tune_q))([c[0] for c in holding])
    trial, got, held = holding[int(np.argmin(costs))]
  else:  # nothing holds on held-out queries: the setting most accurate on the tuning half
    trial, got = fallback
    held = recall(search_rows(searcher, check_q, trial), check_truth)
  return {**out, "params": trial, "held_out_recall": held, "tuning_recall": got,
          "candidates": len(holding)}


def _grids(params, n) -> tuple[list[int], list[int | None]]:
  """(re-order sizes, leaves to search) tuning chooses from."""
  leaves = geometric_grid(1, params["num_leaves"]) if "num_leaves" in params else [None]
  return sorted({min(n, r) for r in REORDERS}), leaves


def _steps_up(trial, reorders, leaf_grid) -> list[list[dict[str, Any]]]:
  """The next `_REPAIR_STEPS` settings above `trial` in re-order size, and in leaves."""
  r, leaves = reorders.index(trial["reorder"]), trial.get("num_leaves_to_search")
  up = [[{**trial, "reorder": bigger} for bigger in reorders[r + 1:r + 1 + _REPAIR_STEPS]]]
  if leaves is not None:
    i = leaf_grid.index(leaves)
    up.append([{**trial, "num_leaves_to_search": more}
               for more in leaf_grid[i + 1:i + 1 + _REPAIR_STEPS]])
  return up


def _frontier(searcher, params, embeddings, queries, truth, target):
  """For each re-order size, the fewest leaves reaching `target` on `queries`.

  Points whose leaves do not drop below a smaller re-order's are dropped (they
  cost more for nothing). Also returns the most accurate point tried (the first of ties).
  """
  reorders, leaf_grid = _grids(params, len(embeddings))
  seen = {}

  def trial_at(reorder, i):
    trial = {**params, "reorder": reorder}
    if leaf_grid[i] is not None:
      trial["num_leaves_to_search"] = leaf_grid[i]
    if (reorder, i) not in seen:
      seen[(reorder, i)] = (trial, recall(search_rows(searcher, queries, trial), truth))
    return seen[(reorder, i)]

  frontier, upper = [], len(leaf_grid)  # a larger reorder never needs more leaves
  for reorder in reorders:
    if trial_at(reorder, upper - 1)[1] < target:
      continue
    lo, hi = 0, upper - 1  # binary search for the first leaves index reaching the target
    while lo < hi:
      mid = (lo + hi) // 2
      lo, hi = (lo, mid) if trial_at(reorder, mid)[1] >= target else (mid + 1, hi)
    if hi < upper - 1 or not frontier:
      frontier.append(trial_at(reorder, hi))
    upper = hi + 1
    if hi == 0:
      break
  return frontier, max(seen.values(), key=lambda c: c[1])


def configure(embeddings: np.ndarray, mode: str = "auto", queries: np.ndarray | None = None,
              target: float = RECALL_TARGET, seed: int = 0, query_source: str | None = None):
  """Builds and tunes a searcher for `embeddings`.

  Args:
    embeddings: float32 `[N, D]`.
    mode: see `scann_params`.
    queries: tuning queries `[Q, D]` like the ones served (user-tower outputs);
      default `held_out_queries`, and then the recall is only an estimate.
    target: Recall@10 to reach against exact search.
    query_source: how the queries were made, for the manifest.

  Returns:
    (searcher, params, recall report for the manifest).
  """
  if not 0 < target <= 1:
    raise ValueError(f"recall target={target} must be in (0, 1]")
  n, d = embeddings.shape
  params = scann_params(n, d, mode)
  searcher = build_searcher(embeddings, params)
  estimate = queries is None
  if estimate:
    queries, query_source = held_out_queries(embeddings, seed=seed), "perturbed_items"
  tuned = tune_report(searcher, params, embeddings, queries, target, seed=seed)
  report = recall_report(tuned["held_out_recall"], target, len(queries),
                         query_source or "given", estimate)
  report.update(tuning_recall_at_10=round(tuned["tuning_recall"], 4),
                num_held_out=tuned["num_held_out"])
  return searcher, tuned["params"], report


def recall_report(measured: float, target: float, num_queries: int, source: str,
                  estimate: bool) -> dict[str, Any]:
  """The manifest's `recall` field: `target_met` is null when the queries were made up."""
  return {"recall_at_10": round(measured, 4), "target": target,
          "target_met": None if estimate else bool(measured >= target), "estimate": estimate,
          "num_queries": int(num_queries), "queries": source,
          "reference": "numpy exact dot product"}


def measure(searcher, params, embeddings, queries) -> float:
  """Recall@10 of the searcher with its recorded search parameters."""
  return recall(search_rows(searcher, queries, params), exact_top(embeddings, queries))
