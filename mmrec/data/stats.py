"""Concentration statistics of popularity counts (long tail, Gini).

Used by the embedded shop, the data report and the evaluation metrics (gini@K).
"""

from __future__ import annotations

import math

import numpy as np


def _counts(counts) -> np.ndarray:
  x = np.asarray(counts, np.float64).ravel()
  if x.size == 0:
    raise ValueError("counts is empty")
  if np.any(x < 0) or not np.all(np.isfinite(x)):
    raise ValueError("counts must be finite and non-negative")
  return x


def gini(counts) -> float:
  """Gini coefficient of a non-negative count vector (0 = all equal).

  Closed form on the ascending sort x_(1..n):
    G = 2 * sum_i i * x_(i) / (n * sum x) - (n + 1) / n,
  equal to the mean absolute difference over all ordered pairs divided by twice
  the mean. It is not rescaled by n / (n - 1): one entry holding everything
  gives (n - 1) / n, e.g. [0, 0, 0, 4] -> 0.75. All zeros give 0.
  """
  x = np.sort(_counts(counts))
  total = x.sum()
  if total == 0:
    return 0.0
  n = x.size
  rank = np.arange(1, n + 1, dtype=np.float64)
  return float(2.0 * np.dot(rank, x) / (n * total) - (n + 1) / n)


def top_share(counts, fraction: float = 0.2) -> float:
  """Share of the total held by the top ceil(fraction * n) entries (0 if all zero)."""
  if not 0 < fraction <= 1:
    raise ValueError(f"fraction must be in (0, 1], got {fraction}")
  x = _counts(counts)
  total = x.sum()
  if total == 0:
    return 0.0
  k = math.ceil(fraction * x.size)
  top = np.partition(x, x.size - k)[x.size - k:]
  return float(top.sum() / total)


def long_tail_stats(counts) -> dict:
  """Summary of an item popularity vector: top-20% share, Gini and coverage."""
  x = _counts(counts)
  return {
      "top20_share": top_share(x, 0.2),
      "gini": gini(x),
      "num_items": int(x.size),
      "items_with_interactions": int(np.count_nonzero(x)),
  }
