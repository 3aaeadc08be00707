"""Full-ranking evaluation on the tiny shop against independent computations."""

import numpy as np
import pytest

from mmrec.data import sources
from mmrec.evaluation import evaluate as eval_lib


@pytest.fixture
def data(tiny_config, tmp_path):
  return sources.load(tiny_config.data, tmp_path)


def test_an_oracle_scorer_gets_perfect_recall(data):
  targets = eval_lib.items_by_user(data.splits["test"], data.num_users)

  def oracle(users):
    scores = np.zeros((len(users), data.num_items), np.float32)
    for row, u in enumerate(users):
      scores[row, targets[u]] = 1.0
    return scores

  m = eval_lib.evaluate(oracle, data, split="test", ks=(10, 20))
  for key in ("recall@20", "ndcg@20", "recall@20/head", "recall@20/tail", "recall@20/cold"):
    assert m[key] == pytest.approx(1.0), key


def test_popularity_matches_a_direct_computation(data):
  m = eval_lib.evaluate(eval_lib.popularity_scorer(data), data, split="test", ks=(20,))
  counts = data.train_counts()
  order = sorted(range(data.num_items), key=lambda i: (-counts[i], i))
  recalls = []
  for u in range(data.num_users):
    split_rows = lambda s: set(data.splits[s].item[data.splits[s].user == u].tolist())
    target = split_rows("test")
    if not target:
      continue
    seen = split_rows("train") | split_rows("valid")
    top = [i for i in order if i not in seen][:20]
    recalls.append(len(target & set(top)) / len(target))
  assert m["recall@20"] == pytest.approx(np.mean(recalls))
  assert m["recall@20/cold"] == 0.0  # cold items have no training count


def test_seen_items_are_masked(data):
  """A scorer that loves the seen items still recommends none of them."""
  seen = eval_lib.items_by_user(eval_lib.seen_interactions(data, "test"), data.num_users)

  def loves_seen(users):
    scores = np.zeros((len(users), data.num_items), np.float32)
    for row, u in enumerate(users):
      scores[row, seen[u]] = 10.0
    return scores

  m = eval_lib.evaluate(loves_seen, data, split="test", ks=(10,))
  # Seen items masked, ties among the rest go to the lowest indices: the same as scoring zeros.
  zeros = eval_lib.evaluate(lambda u: np.zeros((len(u), data.num_items), np.float32), data,
                            split="test", ks=(10,))
  assert m == zeros


def test_rerank_picks_the_lists(data):
  """A re-ranker that reverses popularity among unseen items gets the direct recall."""
  counts = data.train_counts()
  pop = eval_lib.popularity_scorer(data)
  plain_topk = lambda scores, k: np.argsort(-scores, axis=1, kind="stable")[:, :k]
  assert eval_lib.evaluate(pop, data, ks=(20,), rerank=plain_topk) == eval_lib.evaluate(
      pop, data, ks=(20,))

  def least_popular(scores, k):
    assert np.isneginf(scores).any()  # seen items arrive masked
    return np.argsort(np.where(np.isfinite(scores), counts, np.inf), axis=1, kind="stable")[:, :k]

  m = eval_lib.evaluate(pop, data, ks=(20,), rerank=least_popular)
  order = sorted(range(data.num_items), key=lambda i: (counts[i], i))
  recalls = []
  for u in range(data.num_users):
    rows = lambda s: set(data.splits[s].item[data.splits[s].user == u].tolist())
    if not (target := rows("test")):
      continue
    seen = rows("train") | rows("valid")
    recalls.append(len(target & set([i for i in order if i not in seen][:20])) / len(target))
  assert m["recall@20"] == pytest.approx(np.mean(recalls))
