"""Bootstrap intervals against explicit resampling, closed forms and nominal coverage."""

import numpy as np
import pytest
import scipy.stats

from mmrec.data.stats import gini
from mmrec.evaluation import bootstrap, metrics


def test_counts_match_explicit_resampling():
  rng = np.random.default_rng(0)
  values = rng.normal(size=(30, 2))
  picks = np.random.default_rng(1).integers(0, 30, (5, 30))
  counts = bootstrap.resample_counts(30, 5, np.random.default_rng(1))
  assert (counts.sum(axis=1) == 30).all()
  want = np.stack([values[p].mean(axis=0) for p in picks])  # one resample at a time
  np.testing.assert_allclose(bootstrap.mean_statistic(values)(counts), want, rtol=1e-6)


def test_nan_marks_users_outside_a_group():
  values = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, np.nan]])
  got = bootstrap.mean_statistic(values)(np.ones((1, 3)))[0]
  np.testing.assert_allclose(got, [3.0, 4.0])


def test_gini_rows_matches_gini():
  rng = np.random.default_rng(2)
  x = rng.integers(0, 9, (6, 17)).astype(float)
  x[0] = 0
  np.testing.assert_allclose(bootstrap.gini_rows(x), [gini(r) for r in x], atol=1e-12)


def test_interval_covers_true_mean_at_nominal_rate():
  # 200 samples of 80 exponential(1) draws: the true mean is 1; a 95% interval should
  # cover it in about 95% of them (percentile intervals run a little short on skew)
  rng = np.random.default_rng(3)
  covered = 0
  for rep in range(200):
    low, high = bootstrap.mean_interval(rng.exponential(1.0, 80), draws=500, seed=rep)
    covered += low <= 1.0 <= high
  assert 0.9 <= covered / 200 <= 0.99


def test_paired_difference_covers_true_shift_and_agrees_with_scipy():
  rng = np.random.default_rng(4)
  covered, p_small = 0, 0
  for rep in range(100):
    b = rng.normal(size=60)
    a = b + 0.3 + rng.normal(scale=0.5, size=60)  # the true mean difference is 0.3
    d = bootstrap.paired_difference(a, b, draws=400, seed=rep)
    covered += d["ci_low"] <= 0.3 <= d["ci_high"]
    p_small += d["p_t"] < 0.05
    assert d["difference"] == pytest.approx(np.mean(a - b))
    assert d["p_t"] == pytest.approx(scipy.stats.ttest_rel(a, b).pvalue)
  assert 0.88 <= covered / 100 <= 1.0
  assert p_small >= 90  # 0.3 against a spread of 0.5 over 60 users: z = 4.6, power ~0.99


def test_paired_difference_of_a_model_with_itself():
  a = np.random.default_rng(5).random(50)
  d = bootstrap.paired_difference(a, a.copy())
  assert (d["difference"], d["ci_low"], d["ci_high"], d["p_t"], d["p_wilcoxon"]) == (0, 0, 0, 1, 1)
  with pytest.raises(ValueError, match="differ in length"):
    bootstrap.paired_difference(a, a[:-1])


def test_two_sample_false_positive_rate_near_nominal():
  rng = np.random.default_rng(6)
  rejected = 0
  for rep in range(200):  # two groups of users from one distribution: no true difference
    a, b = rng.binomial(1, 0.3, 70).astype(float), rng.binomial(1, 0.3, 90).astype(float)
    d = bootstrap.two_sample_difference(bootstrap.mean_statistic(a), 70,
                                        bootstrap.mean_statistic(b), 90, draws=400, seed=rep)
    rejected += not d["ci_low"][0] <= 0 <= d["ci_high"][0]
    assert d["difference"][0] == pytest.approx(a.mean() - b.mean())
  assert 0.01 <= rejected / 200 <= 0.1


def test_accumulator_keeps_per_user_values_and_is_seeded():
  rng = np.random.default_rng(7)
  lists = np.stack([rng.permutation(30)[:5] for _ in range(40)])
  targets = [rng.choice(30, 3, replace=False) for _ in range(40)]
  results = []
  for seed in (0, 0, 1):
    acc = metrics.RankingAccumulator(30, ks=(5,), bootstrap=200, seed=seed)
    acc.add(lists, targets)
    results.append(acc.result())
  first, again, other = results
  recall = first.per_user["recall@5"]
  assert recall.shape == (40,)
  want = [len(set(l) & set(t)) / 3 for l, t in zip(lists, targets)]
  np.testing.assert_allclose(recall, want)
  assert first == again and first["recall@5/ci_low"] != other["recall@5/ci_low"]
  low, high = bootstrap.mean_interval(recall, draws=200, seed=0)
  assert (first["recall@5/ci_low"], first["recall@5/ci_high"]) == pytest.approx((low, high))
  assert first["coverage@5/ci_low"] <= first["coverage@5"] <= first["coverage@5/ci_high"]
  plain = metrics.RankingAccumulator(30, ks=(5,), bootstrap=0)
  plain.add(lists, targets)
  assert not any("/ci_" in key for key in plain.result())
