"""Baselines against brute-force numpy on tiny matrices."""

import numpy as np
import pytest
import scipy.sparse as sp

from mmrec.data.schema import Catalog, Interactions, RecDataset
from mmrec.evaluation import baselines


def tiny_matrix(users=9, items=7, seed=0):
  x = (np.random.default_rng(seed).random((users, items)) < 0.4).astype(np.float32)
  x[0, :] = 1.0  # no empty column
  return x


def tiny_dataset(x: np.ndarray) -> RecDataset:
  n = x.shape[1]
  u, i = np.nonzero(x)
  train = Interactions(u, i, np.zeros(len(u)))
  empty = Interactions(np.zeros(0), np.zeros(0), np.zeros(0))
  names = np.array([f"i{j}" for j in range(n)])
  catalog = Catalog(names, names, names, names, [b""] * n)
  return RecDataset(catalog, {"train": train, "valid": empty, "test": empty},
                    np.zeros(n, bool), x.shape[0])


@pytest.mark.parametrize("lam", [0.5, 3.0])
def test_ease_solves_each_columns_constrained_least_squares(lam):
  x = tiny_matrix().astype(np.float64)
  b = baselines.ease_weights(sp.csr_matrix(x), lam)
  n = x.shape[1]
  for j in range(n):
    others = [i for i in range(n) if i != j]
    xo = x[:, others]  # b_j = 0: drop column j from the regressors
    want = np.linalg.solve(xo.T @ xo + lam * np.eye(n - 1), xo.T @ x[:, j])
    np.testing.assert_allclose(b[others, j], want, rtol=1e-8, atol=1e-10)
    assert b[j, j] == 0.0


@pytest.mark.parametrize("k,shrink", [(2, 0.0), (3, 1.5), (10, 0.0)])
def test_itemknn_is_cosine_with_top_k_neighbours_per_item(k, shrink):
  x = tiny_matrix(seed=1)
  s = baselines.itemknn_weights(sp.csr_matrix(x), k, shrink)
  n = x.shape[1]
  for j in range(n):
    cos = np.zeros(n)
    for i in range(n):
      if i != j:
        cos[i] = x[:, i] @ x[:, j] / (np.linalg.norm(x[:, i]) * np.linalg.norm(x[:, j]) + shrink)
    kth = sorted(cos, reverse=True)[min(k, n) - 1]  # ties at the k-th may go either way
    kept = np.flatnonzero(s[:, j])
    assert len(kept) <= k and j not in kept
    assert set(np.flatnonzero(cos > kth + 1e-6)) <= set(kept.tolist())
    assert np.all(cos[kept] >= kth - 1e-6)
    np.testing.assert_allclose(s[kept, j], cos[kept], rtol=1e-5)


def test_item_item_scorers_score_from_the_given_history():
  x = tiny_matrix()
  data = tiny_dataset(x)
  history = sp.csr_matrix(tiny_matrix(seed=5))
  users = np.array([4, 1])
  w = baselines.ease_weights(sp.csr_matrix(x), 2.0)
  np.testing.assert_allclose(baselines.ease(data, lam=2.0)(users), x[users] @ w, rtol=1e-5)
  np.testing.assert_allclose(baselines.ease(data, lam=2.0, history=history)(users),
                             history.toarray()[users] @ w, rtol=1e-5)
  w = baselines.itemknn_weights(sp.csr_matrix(x), 3)
  np.testing.assert_allclose(baselines.itemknn(data, k=3, history=history)(users),
                             history.toarray()[users] @ w, rtol=1e-5)
  np.testing.assert_array_equal(baselines.popularity(data)(users)[0], x.sum(0))


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_factor_models_are_seeded_and_score_every_item(name):
  pytest.importorskip("implicit")
  data = tiny_dataset(tiny_matrix(users=30, items=12))
  fit = getattr(baselines, name)
  users = np.arange(5)
  a, b = (fit(data, factors=4, iterations=3, seed=1)(users) for _ in range(2))
  assert a.shape == (5, 12) and np.isfinite(a).all()
  np.testing.assert_allclose(a, b, rtol=1e-5)
