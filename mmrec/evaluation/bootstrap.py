"""Bootstrap intervals over users, and paired / two-sample comparisons.

Vectorised: a bootstrap draw is a row of resampling counts `w` [n_users] (how
often each user is drawn), so B draws are a count matrix W [B, n_users] and the
resampled means of every metric at once are `W @ values / n`; ratio metrics
(a mean over the users of a group, clicks per click) are `W @ num / W @ den`;
corpus metrics (coverage, Gini of exposure) use the resampled item counts
`W @ lists` (a sparse user x item matrix). The draws are seeded; the same seed
gives the same intervals. Means get percentile intervals; corpus statistics the
bootstrap's spread centred on the observed value (`centred_interval`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse

DRAWS = 1000  # bootstrap draws
LEVEL = 0.95  # interval coverage
_CELLS = 1 << 22  # draws x users (or items) per block


def resample_counts(n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
  """float32 [draws, n]: how often each of `n` users is drawn, n draws with replacement."""
  if n < 1:
    raise ValueError("bootstrap: no users to resample")
  picks = rng.integers(0, n, (draws, n))
  picks += (np.arange(draws) * n)[:, None]
  return np.bincount(picks.ravel(), minlength=draws * n).reshape(draws, n).astype(np.float32)


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
  """Low and high percentile bounds over axis 0 (NaN draws are ignored)."""
  tail = (1.0 - level) / 2
  with np.errstate(all="ignore"):
    low, high = np.nanquantile(samples, [tail, 1.0 - tail], axis=0)
  return low, high


def centred_interval(samples: np.ndarray, point: np.ndarray,
                     level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
  """The bootstrap's spread around its median, moved to `point`: for corpus statistics
  (coverage, Gini), which resampling biases (duplicated users shrink coverage and
  concentrate exposure), so that their percentile interval can miss the observed value."""
  low, high = percentile_interval(samples, level)
  with np.errstate(all="ignore"):
    median = np.nanmedian(samples, axis=0)
  return point - (median - low), point + (high - median)


def gini_rows(counts: np.ndarray) -> np.ndarray:
  """Gini coefficient of each row of a non-negative matrix (as `mmrec.data.stats.gini`)."""
  x = np.sort(np.asarray(counts, np.float64), axis=1)
  n = x.shape[1]
  total = x.sum(axis=1)
  rank = np.arange(1, n + 1, dtype=np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    g = 2.0 * (x @ rank) / (n * total) - (n + 1) / n
  return np.where(total > 0, g, 0.0)


def user_item_matrix(lists: np.ndarray | list[np.ndarray], num_items: int,
                     weights: list[np.ndarray] | None = None) -> scipy.sparse.csr_matrix:
  """Sparse [n_users, num_items]: row u counts the items of `lists[u]` (or sums `weights`)."""
  rows = [np.asarray(r, np.int64).ravel() for r in lists]
  user = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
  item = np.concatenate(rows) if rows else np.zeros(0, np.int64)
  value = np.ones(len(item)) if weights is None else np.concatenate(weights).astype(np.float64)
  return scipy.sparse.csr_matrix((value, (user, item)), shape=(len(rows), num_items))


Statistic = Callable[[np.ndarray], np.ndarray]  # counts W [b, n] -> statistics [b, m]


def draws_of(statistic: Statistic, n: int, draws: int, seed: int) -> np.ndarray:
  """[draws, m]: `statistic` of `draws` resamples of `n` users, computed in blocks."""
  rng = np.random.default_rng(seed)
  block = max(1, min(draws, _CELLS // max(n, 1)))
  out = [statistic(resample_counts(n, min(block, draws - start), rng))
         for start in range(0, draws, block)]
  return np.concatenate(out)


def mean_statistic(values: np.ndarray) -> Statistic:
  """Means over users of the columns of `values` [n, m]; NaN marks a user outside a column's
  group (that column is the mean over the others)."""
  values = np.asarray(values, np.float64).reshape(len(values), -1)
  member = ~np.isnan(values)
  num, den = np.where(member, values, 0.0), member.astype(np.float64)

  def statistic(w):
    with np.errstate(invalid="ignore", divide="ignore"):
      return (w @ num) / (w @ den)

  return statistic


def mean_interval(values: np.ndarray, draws: int = DRAWS, seed: int = 0,
                  level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
  """Bootstrap interval of the mean of each column of `values` [n] or [n, m] (NaN: skipped)."""
  values = np.asarray(values, np.float64)
  stat = mean_statistic(values)
  low, high = percentile_interval(draws_of(stat, len(values), draws, seed), level)
  return (low[0], high[0]) if values.ndim == 1 else (low, high)


def paired_difference(a: np.ndarray, b: np.ndarray, draws: int = DRAWS, seed: int = 0,
                      level: float = LEVEL) -> dict[str, float]:
  """Mean of `a - b` over the same users (NaN in either: the user is skipped), with a paired
  bootstrap interval and the paired t-test's and Wilcoxon signed-rank test's p-values.

  `a[u]` and `b[u]` must be the same user's metric under two models.
  """
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  if a.shape != b.shape:
    raise ValueError(f"paired_difference: per-user arrays differ in length ({len(a)} vs "
                     f"{len(b)}); evaluate both models on the same users and split")
  keep = ~(np.isnan(a) | np.isnan(b))
  d = a[keep] - b[keep]
  if len(d) < 2:
    raise ValueError("paired_difference: fewer than 2 users with both values")
  low, high = mean_interval(d, draws, seed, level)
  if np.allclose(d, d[0]):  # no spread, the tests are undefined: p is 1 at 0, else 0
    t_p = w_p = float(d[0] == 0)
  else:
    import scipy.stats  # here: it costs seconds to import, and only comparisons use it
    t_p = scipy.stats.ttest_rel(a[keep], b[keep]).pvalue
    w_p = 1.0 if not d.any() else scipy.stats.wilcoxon(d).pvalue
  return {"difference": float(d.mean()), "ci_low": float(low), "ci_high": float(high),
          "p_t": float(t_p), "p_wilcoxon": float(w_p), "users": int(len(d))}


def two_sample_difference(stat_a: Statistic, n_a: int, stat_b: Statistic, n_b: int,
                          draws: int = DRAWS, seed: int = 0, level: float = LEVEL,
                          corpus: np.ndarray | None = None) -> dict:
  """Statistics of group A minus group B (different users), with intervals from resampling
  each group independently, and a two-sided bootstrap p-value (twice the smaller share of
  differences on either side of 0). Arrays over the statistics' columns; the columns
  flagged `corpus` (bool [m]) are centred on the observed difference (`centred_interval`)."""
  seeds = np.random.SeedSequence(seed).generate_state(2)
  diff = draws_of(stat_a, n_a, draws, int(seeds[0])) - draws_of(stat_b, n_b, draws, int(seeds[1]))
  point = stat_a(np.ones((1, n_a), np.float32))[0] - stat_b(np.ones((1, n_b), np.float32))[0]
  if corpus is not None and np.any(corpus):
    with np.errstate(all="ignore"):
      shift = np.where(corpus, point - np.nanmedian(diff, axis=0), 0.0)
    diff = diff + np.nan_to_num(shift)
  low, high = percentile_interval(diff, level)
  with np.errstate(invalid="ignore"):
    below = np.nanmean(diff <= 0, axis=0)
    above = np.nanmean(diff >= 0, axis=0)
  return {"difference": point, "ci_low": low, "ci_high": high,
          "p": np.minimum(1.0, 2 * np.minimum(below, above))}
