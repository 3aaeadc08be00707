"""Classical baselines, each fit on the train split and returned as a `Scorer`.

- `popularity`: train counts.
- `itemknn`: cosine similarity between item columns, top-k neighbours per item.
- `ease`: EASE (Steck 2019), the closed-form item-item linear model.
- `als`, `bpr`: implicit's CPU ALS and BPR (the optional `implicit` package).

Item-item models score a user from a history matrix (users x items, binary),
the train split by default: `scores = history[users] @ W`. Pass
`history_matrix(data, split, "seen")` to score from train + valid instead.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp

from mmrec.data.schema import Interactions, RecDataset
from mmrec.evaluation import evaluate as eval_lib
from mmrec.evaluation.evaluate import Scorer

NUM_THREADS = 2


def user_item_matrix(interactions: Interactions, num_users: int, num_items: int) -> sp.csr_matrix:
  """Binary float32 [users, items]; repeated interactions count once."""
  x = sp.csr_matrix((np.ones(len(interactions), np.float32), (interactions.user, interactions.item)),
                    shape=(num_users, num_items))
  x.data[:] = 1.0  # duplicates were summed
  return x


def train_matrix(data: RecDataset) -> sp.csr_matrix:
  return user_item_matrix(data.splits["train"], data.num_users, data.num_items)


def history_matrix(data: RecDataset, split: str, history: str = "seen") -> sp.csr_matrix:
  """The items `evaluate(..., split, history=history)` masks, as a matrix."""
  return user_item_matrix(eval_lib.seen_interactions(data, split, history=history),
                          data.num_users, data.num_items)


def item_item_scorer(weights: np.ndarray, history: sp.csr_matrix) -> Scorer:
  weights = np.asarray(weights, np.float32)
  return lambda users: np.asarray(history[users] @ weights)


def popularity(data: RecDataset) -> Scorer:
  return eval_lib.popularity_scorer(data)


def itemknn_weights(x: sp.spmatrix, k: int, shrink: float = 0.0) -> np.ndarray:
  """Cosine similarity [N, N] of item columns, `x_i.x_j / (|x_i| |x_j| + shrink)`, zero
  diagonal; each column j keeps its k largest entries (item j is scored from its k
  most similar items)."""
  x = sp.csc_matrix(x, dtype=np.float32)
  dot = np.asarray((x.T @ x).todense(), np.float32)
  norm = np.sqrt(np.diag(dot).copy())
  sim = dot / (np.outer(norm, norm) + shrink + 1e-12)
  np.fill_diagonal(sim, 0.0)
  if k < len(sim):
    drop = np.argpartition(-sim, k, axis=0)[k:]  # per column, all but the k largest
    np.put_along_axis(sim, drop, 0.0, axis=0)
  return sim


def itemknn(data: RecDataset, *, k: int = 100, shrink: float = 0.0,
            history: sp.csr_matrix | None = None) -> Scorer:
  x = train_matrix(data)
  return item_item_scorer(itemknn_weights(x, k, shrink), x if history is None else history)


def ease_weights(x: sp.spmatrix, lam: float) -> np.ndarray:
  """EASE's B [N, N]: G = X'X + lam I, P = inv(G), B = -P / diag(P), diag(B) = 0."""
  x = sp.csc_matrix(x, dtype=np.float64)
  g = np.asarray((x.T @ x).todense())
  g[np.diag_indices_from(g)] += lam
  p = np.linalg.inv(g)
  b = p / -np.diag(p)  # column j divided by -P_jj
  np.fill_diagonal(b, 0.0)
  return b


def ease(data: RecDataset, *, lam: float = 500.0, history: sp.csr_matrix | None = None) -> Scorer:
  x = train_matrix(data)
  return item_item_scorer(ease_weights(x, lam), x if history is None else history)


@contextlib.contextmanager
def _one_blas_thread():
  """implicit runs its own threads and asks BLAS for one (it warns otherwise)."""
  from threadpoolctl import threadpool_limits
  with threadpool_limits(1, "blas"):
    yield


def _factor_scorer(user_factors: np.ndarray, item_factors: np.ndarray) -> Scorer:
  user_factors, item_factors = np.asarray(user_factors), np.asarray(item_factors)
  return lambda users: user_factors[users] @ item_factors.T


def als(data: RecDataset, *, factors: int = 64, regularization: float = 0.01,
        iterations: int = 15, alpha: float = 1.0, seed: int = 0,
        history: sp.csr_matrix | None = None) -> Scorer:
  """implicit's ALS on the binary train matrix (confidence 1 + alpha). With `history`,
  user factors are re-solved from it (the item factors stay)."""
  from implicit.cpu.als import AlternatingLeastSquares
  with _one_blas_thread():
    model = AlternatingLeastSquares(factors=factors, regularization=regularization,
                                    alpha=alpha, iterations=iterations, random_state=seed,
                                    num_threads=NUM_THREADS)
    model.fit(train_matrix(data), show_progress=False)
    users = model.user_factors
    if history is not None:
      users = model.recalculate_user(np.arange(data.num_users), sp.csr_matrix(history))
  return _factor_scorer(users, model.item_factors)


def bpr(data: RecDataset, *, factors: int = 64, learning_rate: float = 0.01,
        regularization: float = 0.01, iterations: int = 100, seed: int = 0) -> Scorer:
  """implicit's BPR (an item bias is its last factor); user factors come from train. One
  thread: its parallel (Hogwild) SGD is not reproducible, and was no faster on 2 cores."""
  from implicit.cpu.bpr import BayesianPersonalizedRanking
  with _one_blas_thread():
    model = BayesianPersonalizedRanking(factors=factors, learning_rate=learning_rate,
                                        regularization=regularization, iterations=iterations,
                                        random_state=seed, num_threads=1)
    model.fit(train_matrix(data), show_progress=False)
  return _factor_scorer(model.user_factors, model.item_factors)
