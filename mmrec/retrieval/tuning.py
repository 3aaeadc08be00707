"""ScaNN configured from the catalog and tuned to a recall target against exact search.

- Below 20,000 items: brute force (exact).
- 20,000 to 100,000: asymmetric hashing (AH, 2 dimensions per block,
  anisotropic threshold 0.2) with exact re-ordering of the best candidates.
- From 100,000: a k-means tree of about sqrt(N) leaves in front of AH + reorder.

`configure` builds the searcher once, then picks the search-time parameters
(leaves to search, re-order size) that reach Recall@10 >= 0.95 against numpy
exact search on held-out queries at the lowest estimated cost; the bundle's
manifest records them with the measured recall.
"""

from __future__ import annotations

import math
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
_LEAF_FRACTIONS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
_REORDERS = (20, 40, 80, 160, 320, 640, 1280)


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
  """Rows of the `k` best items per query by exact dot product, int64 `[Q, k]`."""
  k = min(k, len(embeddings))
  out = np.empty((len(queries), k), np.int64)
  block = max(1, (1 << 25) // len(embeddings))
  for start in range(0, len(queries), block):
    s = queries[start:start + block] @ embeddings.T
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
    out[start:start + block] = np.take_along_axis(top, order, axis=1)
  return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
  """Mean share of each query's exact top-k found (Recall@k against exact search)."""
  k = truth.shape[1]
  return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k
                        for f, t in zip(found, truth)]))


def search_rows(searcher, queries, params, k=RECALL_K, leaves=None, reorder=None) -> np.ndarray:
  leaves = leaves or params.get("num_leaves_to_search")
  reorder = reorder or params.get("reorder")
  idx, _ = searcher.search_batched(queries, k, pre_reorder_num_neighbors=reorder,
                                   leaves_to_search=leaves)
  return np.asarray(idx, np.int64)


def estimated_cost(params: dict[str, Any], num_items: int, dim: int) -> float:
  """Rough multiply-adds per query: centroids, AH lookups (1/8 of a float MAC each), reorder."""
  if params["mode"] == "brute_force":
    return float(num_items * dim)
  share = params["num_leaves_to_search"] / params["num_leaves"] if "num_leaves" in params else 1.0
  ah = share * num_items * dim / params["dimensions_per_block"] / 8
  return params.get("num_leaves", 0) * dim + ah + params["reorder"] * dim


def tune(searcher, params: dict[str, Any], embeddings: np.ndarray, queries: np.ndarray,
         target: float = RECALL_TARGET) -> tuple[dict[str, Any], float]:
  """Cheapest (leaves to search, reorder) reaching `target`; returns (params, recall)."""
  truth = exact_top(embeddings, queries)
  if params["mode"] == "brute_force":
    return params, recall(search_rows(searcher, queries, params), truth)
  n, d = embeddings.shape
  reorders = sorted({min(n, r) for r in _REORDERS})
  if "num_leaves" in params:
    num_leaves = params["num_leaves"]
    leaf_grid = sorted({max(1, min(num_leaves, math.ceil(f * num_leaves)))
                        for f in _LEAF_FRACTIONS})
  else:
    leaf_grid = [None]
  best, best_recall, fallback = None, -1.0, None
  upper = len(leaf_grid)  # a larger reorder never needs more leaves
  for reorder in reorders:
    for i, leaves in enumerate(leaf_grid[:upper]):
      got = recall(search_rows(searcher, queries, params, leaves=leaves, reorder=reorder), truth)
      trial = {**params, "reorder": reorder}
      if leaves is not None:
        trial["num_leaves_to_search"] = leaves
      if fallback is None or got > fallback[1]:
        fallback = (trial, got)
      if got >= target:
        upper = i + 1
        if best is None or estimated_cost(trial, n, d) < estimated_cost(best, n, d):
          best, best_recall = trial, got
        break
  return (best, best_recall) if best is not None else fallback


def configure(embeddings: np.ndarray, mode: str = "auto", queries: np.ndarray | None = None,
              target: float = RECALL_TARGET, seed: int = 0, query_source: str | None = None):
  """Builds and tunes a searcher for `embeddings`.

  Args:
    embeddings: float32 `[N, D]`.
    mode: see `scann_params`.
    queries: held-out tuning queries `[Q, D]`; default `held_out_queries`.
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
  if queries is None:
    queries, query_source = held_out_queries(embeddings, seed=seed), "perturbed_items"
  queries = np.ascontiguousarray(queries, np.float32)
  params, measured = tune(searcher, params, embeddings, queries, target)
  report = {"recall_at_10": round(measured, 4), "target": target,
            "target_met": bool(measured >= target), "num_queries": int(len(queries)),
            "queries": query_source or "given", "reference": "numpy exact dot product"}
  return searcher, params, report


def measure(searcher, params, embeddings, queries) -> float:
  """Recall@10 of the searcher with its recorded search parameters."""
  return recall(search_rows(searcher, queries, params), exact_top(embeddings, queries))
