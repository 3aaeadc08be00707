"""The on-device evaluation path (EmbeddingScorer: score, mask and top-k in user chunks)
against a brute-force numpy ranking and the host path, on the tiny shop."""

import numpy as np
import pytest

from mmrec.data import sources
from mmrec.evaluation import evaluate as eval_lib


@pytest.fixture
def data(tiny_config, tmp_path):
  return sources.load(tiny_config.data, tmp_path)


def tied_embeddings(data, dim=3, seed=0):
  """Small integers: every product is exact in float32, and equal scores are common."""
  rng = np.random.default_rng(seed)
  users = rng.integers(-2, 3, (data.num_users, dim)).astype(np.float32)
  items = rng.integers(-2, 3, (data.num_items, dim)).astype(np.float32)
  return users, items


def brute_force_top_k(scores, seen, k):
  """Unseen items by (score desc, index asc), then the seen ones by index."""
  out = []
  for row, excluded in zip(scores, seen):
    excluded = set(excluded.tolist())
    ranked = sorted((i for i in range(len(row)) if i not in excluded), key=lambda i: (-row[i], i))
    out.append((ranked + sorted(excluded))[:k])
  return np.array(out, np.int64)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_top_k_matches_brute_force(data, split):
  users_emb, items_emb = tied_embeddings(data)
  scorer = eval_lib.EmbeddingScorer(users_emb, items_emb)
  rows = eval_lib.seen_interactions(data, split)
  seen = eval_lib.items_by_user(rows, data.num_users)
  seen_csr = eval_lib.SeenItems(rows, data.num_users)
  users = np.array([3, 0, 17, 5, data.num_users - 1])
  got = scorer.top_k(users, seen_csr, 30, chunk=8)  # a padded chunk
  want = brute_force_top_k(users_emb[users] @ items_emb.T, [seen[u] for u in users], 30)
  np.testing.assert_array_equal(got, want)


def test_a_user_with_few_unseen_items_gets_the_seen_ones_last(data):
  """As metrics.masked_topk: a list longer than the unseen items ends with excluded ones."""
  users_emb, items_emb = tied_embeddings(data)
  n = data.num_items
  from mmrec.data.schema import Interactions
  rows = Interactions(np.zeros(n - 2), np.arange(n - 2), np.zeros(n - 2))  # user 0 saw all but 2
  got = eval_lib.EmbeddingScorer(users_emb, items_emb).top_k(
      np.array([0]), eval_lib.SeenItems(rows, data.num_users), 5, chunk=4)
  scores = users_emb[:1] @ items_emb.T
  np.testing.assert_array_equal(got, brute_force_top_k(scores, [np.arange(n - 2)], 5))
  assert set(got[0, :2]) == {n - 2, n - 1}


def test_seen_items_padded_match_the_lists(data):
  rows = eval_lib.seen_interactions(data, "test")
  seen = eval_lib.items_by_user(rows, data.num_users)
  users = np.arange(data.num_users)
  padded = eval_lib.SeenItems(rows, data.num_users).padded(users, fill=-1)
  width = padded.shape[1]
  assert width & (width - 1) == 0 and width >= max(len(s) for s in seen)
  for u in users:
    kept = padded[u][padded[u] >= 0]
    np.testing.assert_array_equal(np.sort(kept), np.sort(seen[u]))


@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_metrics_equal_the_host_path(data, beta):
  """The same numbers as numpy scores through metrics.masked_topk (ties included)."""
  users_emb, items_emb = tied_embeddings(data, seed=1)
  counts = data.train_counts()
  device = eval_lib.calibrated(eval_lib.EmbeddingScorer(users_emb, items_emb), counts, beta)
  host = eval_lib.calibrated(lambda u: users_emb[u] @ items_emb.T, counts, beta)
  for split in ("valid", "test"):
    # batch_size 7 leaves a ragged last chunk
    got = eval_lib.evaluate(device, data, split=split, ks=(5, 20), batch_size=7)
    assert got == eval_lib.evaluate(host, data, split=split, ks=(5, 20), batch_size=7)
  np.testing.assert_array_equal(device(np.array([2, 4])), host(np.array([2, 4])))


def test_popularity_scorer_scores_by_count(data):
  scores = eval_lib.popularity_scorer(data)(np.array([0, 1]))
  np.testing.assert_array_equal(scores, np.tile(data.train_counts().astype(np.float32), (2, 1)))


def test_nan_scores_are_refused(data):
  users_emb, items_emb = tied_embeddings(data)
  users_emb[4, 0] = np.nan
  scorer = eval_lib.EmbeddingScorer(users_emb, items_emb)
  with pytest.raises(ValueError, match="NaN"):
    eval_lib.evaluate(scorer, data, split="test", ks=(5,), batch_size=data.num_users)
