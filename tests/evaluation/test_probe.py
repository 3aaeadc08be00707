"""The linear probe against closed forms and synthetic attributes with known answers."""

import numpy as np
import pytest

from mmrec.evaluation import probe


def test_ridge_classifier_recovers_a_linearly_separable_attribute():
  rng = np.random.default_rng(0)
  n, d, classes = 600, 8, 4
  directions = rng.normal(size=(classes, d)) * 4.0
  labels = rng.integers(0, classes, n)
  x = directions[labels] + rng.normal(size=(n, d))  # clusters: a linear rule separates them
  noise = rng.normal(size=(n, d))  # features that know nothing about the label
  out = probe.linear_probe({"signal": x, "noise": noise}, {"attr": labels}, test_share=0.3)
  # The reference: nearest class mean on the same training split, which is linear too.
  train, test = probe.split_items(n, 0.3, 0)
  means = np.stack([x[train][labels[train] == c].mean(0) for c in range(classes)])
  nearest = ((x[test][:, None] - means[None]) ** 2).sum(-1).argmin(1)
  reference = (nearest == labels[test]).mean()
  assert reference > 0.97
  assert out["attr/signal"] >= reference - 0.02
  assert out["attr/noise"] < 0.45  # chance is 0.25
  values, counts = np.unique(labels[train], return_counts=True)
  assert out["attr/majority"] == pytest.approx((labels[test] == values[counts.argmax()]).mean())


def test_ridge_fit_matches_the_normal_equations():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
  w, b = probe._fit_ridge(x, y, ridge=0.1)
  design = np.c_[x, np.ones(50)]
  penalty = np.diag([0.1 * 50] * 3 + [0.0])  # the intercept is not penalised
  expected = np.linalg.solve(design.T @ design + penalty, design.T @ y)
  np.testing.assert_allclose(w, expected[:3], atol=1e-10)
  np.testing.assert_allclose(b, expected[3], atol=1e-10)


def test_split_is_a_partition_and_rejects_bad_shares():
  train, test = probe.split_items(10, 0.3, seed=4)
  assert sorted(np.r_[train, test]) == list(range(10)) and len(test) == 3
  with pytest.raises(ValueError, match="test_share"):
    probe.split_items(10, 1.5, seed=0)
  with pytest.raises(ValueError, match="one row per item"):
    probe.linear_probe({"a": np.zeros((5, 2))}, {"b": np.zeros(4, int)})
