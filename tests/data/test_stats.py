"""Tests of mmrec.data.stats against hand-computed cases and brute force."""

import math

import numpy as np
import pytest

from mmrec.data import stats


def _gini_pairwise(x: np.ndarray) -> float:
  """Mean absolute difference over all ordered pairs / (2 * mean)."""
  x = np.asarray(x, np.float64)
  return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


def _top_share_brute(x: np.ndarray, fraction: float) -> float:
  """Sum of the ceil(fraction * n) largest entries / total."""
  k = math.ceil(fraction * len(x))
  return float(sum(sorted(x.tolist(), reverse=True)[:k]) / x.sum())


@pytest.mark.parametrize("counts, expected", [
    ([1, 1, 1, 1], 0.0),
    ([0, 0, 0, 4], 0.75),  # (n - 1) / n: no small-sample rescaling
    ([5], 0.0),
    ([0, 0, 0, 0], 0.0),
    ([1, 3], 0.25),  # |1 - 3| * 2 pairs / (2 * 4 * 2)
    ([0, 1, 2, 3], 5 / 12),
])
def test_gini_hand_cases(counts, expected):
  assert stats.gini(counts) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("counts, fraction, expected", [
    ([1, 1, 1, 1], 0.25, 0.25),
    ([0, 0, 0, 4], 0.2, 1.0),  # ceil(0.8) = 1 entry
    (list(range(1, 11)), 0.2, 19 / 55),
    ([3, 1, 2], 1.0, 1.0),
    ([0, 0, 0], 0.2, 0.0),
])
def test_top_share_hand_cases(counts, fraction, expected):
  assert stats.top_share(counts, fraction) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_on_random_vectors(seed):
  rng = np.random.default_rng(seed)
  x = rng.zipf(1.8, size=int(rng.integers(2, 300))).astype(np.float64)
  x[rng.random(len(x)) < 0.2] = 0
  x[0] += 1  # not all zero
  assert stats.gini(x) == pytest.approx(_gini_pairwise(x), rel=1e-9, abs=1e-12)
  for fraction in (0.01, 0.2, 0.5, 0.99):
    assert stats.top_share(x, fraction) == pytest.approx(_top_share_brute(x, fraction), rel=1e-12)
  # Invariant under permutation and scaling.
  assert stats.gini(rng.permutation(x) * 7) == pytest.approx(stats.gini(x), rel=1e-9)


def test_long_tail_stats():
  counts = np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 50])
  out = stats.long_tail_stats(counts)
  assert set(out) == {"top20_share", "gini", "num_items", "items_with_interactions"}
  assert out["num_items"] == 10
  assert out["items_with_interactions"] == 8
  assert out["top20_share"] == pytest.approx(57 / 78)
  assert out["gini"] == pytest.approx(_gini_pairwise(counts))


@pytest.mark.parametrize("bad", [[], [1, -1], [1, np.nan]])
def test_bad_counts_raise(bad):
  with pytest.raises(ValueError):
    stats.gini(bad)
  with pytest.raises(ValueError):
    stats.long_tail_stats(bad)


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_bad_fraction_raises(fraction):
  with pytest.raises(ValueError, match="fraction"):
    stats.top_share([1, 2, 3], fraction)
