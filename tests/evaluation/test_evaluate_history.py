"""`evaluate(..., history="train")` against a brute-force evaluation on a tiny dataset."""

import numpy as np
import pytest

from mmrec.data.schema import Catalog, Interactions, RecDataset
from mmrec.evaluation import evaluate as eval_lib


@pytest.fixture
def data():
  rng = np.random.default_rng(0)
  users, items = 20, 30
  pairs = rng.permutation(users * items)[:240]
  split = rng.choice(3, size=len(pairs), p=[0.6, 0.2, 0.2])
  part = lambda s: Interactions(pairs[split == s] // items, pairs[split == s] % items,
                                np.zeros((split == s).sum()))
  names = np.array([f"i{j}" for j in range(items)])
  return RecDataset(Catalog(names, names, names, names, [b""] * items),
                    {"train": part(0), "valid": part(1), "test": part(2)},
                    np.zeros(items, bool), users)


def brute_force(scores, data, split, masked_splits, k):
  rows = lambda s, u: set(data.splits[s].item[data.splits[s].user == u].tolist())
  recall, ndcg = [], []
  for u in range(data.num_users):
    if not (target := rows(split, u)):
      continue
    masked = set().union(*(rows(s, u) for s in masked_splits))
    top = [i for i in sorted(range(data.num_items), key=lambda i: (-scores[u, i], i))
           if i not in masked][:k]
    recall.append(len(target & set(top)) / len(target))
    dcg = sum(1 / np.log2(r + 2) for r, i in enumerate(top) if i in target)
    ndcg.append(dcg / sum(1 / np.log2(r + 2) for r in range(min(len(target), k))))
  return np.mean(recall), np.mean(ndcg)


@pytest.mark.parametrize("split,history,masked", [
    ("valid", "train", ["train"]), ("test", "train", ["train"]),
    ("valid", "seen", ["train"]), ("test", "seen", ["train", "valid"])])
def test_history_picks_the_masked_splits(data, split, history, masked):
  scores = np.random.default_rng(1).random((data.num_users, data.num_items)).astype(np.float32)
  m = eval_lib.evaluate(lambda u: scores[u], data, split=split, ks=(5,), history=history,
                        batch_size=7)
  recall, ndcg = brute_force(scores, data, split, masked, 5)
  assert m["recall@5"] == pytest.approx(recall)
  assert m["ndcg@5"] == pytest.approx(ndcg)


@pytest.mark.parametrize("history,masked", [("train", ["train"]), ("seen", ["train", "valid"])])
def test_only_the_history_is_masked_on_test(data, history, masked):
  seen_scores = []
  def keep(scores, k):
    seen_scores.append(scores)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]

  zeros = lambda u: np.zeros((len(u), data.num_items), np.float32)
  eval_lib.evaluate(zeros, data, split="test", ks=(5,), history=history, rerank=keep,
                    batch_size=1000)
  users = np.unique(data.splits["test"].user)
  want = np.zeros((data.num_users, data.num_items), bool)
  for s in masked:
    want[data.splits[s].user, data.splits[s].item] = True
  np.testing.assert_array_equal(np.isneginf(seen_scores[0]), want[users])


def test_unknown_history_is_refused(data):
  with pytest.raises(ValueError, match="history"):
    eval_lib.seen_interactions(data, "test", history="all")
