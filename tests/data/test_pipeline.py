"""Batches against a brute-force history reference; determinism; process shards."""

import numpy as np

from mmrec.data.pipeline import ItemTable, UserHistories, training_batches
from mmrec.data.schema import Interactions


def random_interactions(seed=0, users=6, items=30, rows=80):
  rng = np.random.default_rng(seed)
  return Interactions(rng.integers(0, users, rows), rng.integers(0, items, rows),
                      rng.integers(0, 20, rows))  # repeated timestamps: ties keep input order


def brute_history(inter, row, h):
  """Items of the same user strictly earlier in (time, input order), most recent last."""
  u, t = inter.user[row], inter.timestamp[row]
  earlier = [j for j in range(len(inter))
             if inter.user[j] == u and (inter.timestamp[j], j) < (t, row)]
  earlier.sort(key=lambda j: (inter.timestamp[j], j))
  return [int(inter.item[j]) for j in earlier][-h:]


def item_table(n=30, length=4, size=2):
  tokens = np.arange(n * length, dtype=np.int32).reshape(n, length)
  image = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, size, size, 3), np.uint8)
  warm = np.arange(n) % 3 != 0
  return ItemTable(tokens, image, warm, np.log(np.full(n, 1 / n, np.float32)))


def test_histories_match_brute_force():
  inter = random_interactions()
  hist = UserHistories(inter, history_len=5)
  order = np.lexsort((np.arange(len(inter)), inter.timestamp, inter.user))
  items, mask = hist.before(np.arange(len(inter)))
  for sorted_row, original_row in enumerate(order):
    expected = brute_history(inter, original_row, 5)
    assert items[sorted_row][mask[sorted_row]].tolist() == expected
    assert mask[sorted_row].tolist() == [False] * (5 - len(expected)) + [True] * len(expected)
    assert (items[sorted_row][~mask[sorted_row]] == 0).all()


def test_latest_is_the_last_items_of_each_user():
  inter = random_interactions(1)
  hist = UserHistories(inter, history_len=4)
  users = np.array([0, 3, 99])  # 99 has no interactions
  items, mask = hist.latest(users)
  for row, u in enumerate(users):
    rows = sorted((j for j in range(len(inter)) if inter.user[j] == u),
                  key=lambda j: (inter.timestamp[j], j))
    assert items[row][mask[row]].tolist() == [int(inter.item[j]) for j in rows][-4:]
  assert not mask[2].any()


def test_batches_are_deterministic_and_cover_an_epoch():
  inter = random_interactions(2)
  hist = UserHistories(inter, history_len=3)
  table = item_table()
  ds = training_batches(hist, table, batch_size=8, seed=5)
  batch = ds[3]
  assert {k: v.shape for k, v in batch.items()} == {
      "history": (8, 3), "history_mask": (8, 3), "item": (8,), "tokens": (8, 4),
      "image": (8, 2, 2, 3), "warm": (8,), "log_q": (8,), "example": (8,)}
  assert batch["history"].dtype == np.int32 and batch["image"].dtype == np.uint8
  assert batch["tokens"].dtype == np.int32 and batch["log_q"].dtype == np.float32
  np.testing.assert_array_equal(batch["tokens"], table.tokens[batch["item"]])
  np.testing.assert_array_equal(batch["image"], table.image[batch["item"]])
  np.testing.assert_array_equal(batch["warm"], table.warm[batch["item"]])
  again = training_batches(hist, table, batch_size=8, seed=5)[3]
  for k in batch:
    np.testing.assert_array_equal(batch[k], again[k])
  # One epoch (10 batches of 8 = 80 rows) visits every interaction exactly once.
  epoch = np.sort(np.concatenate([ds[s]["item"] for s in range(10)]))
  np.testing.assert_array_equal(epoch, np.sort(inter.item))
  rows = np.concatenate([ds[s]["example"] for s in range(10)])  # each row of `hist` once
  np.testing.assert_array_equal(np.sort(rows), np.arange(len(hist)))
  np.testing.assert_array_equal(hist.rows.item[rows], np.concatenate([ds[s]["item"] for s in range(10)]))
  assert not all((ds[s]["item"] == ds[s + 10]["item"]).all() for s in range(10))  # reshuffled


def test_processes_read_disjoint_shards_that_cover_the_data():
  rows = 80
  inter = Interactions(np.arange(rows) % 5, np.arange(rows), np.arange(rows))  # item = row id
  hist = UserHistories(inter, history_len=2)
  table = item_table(n=rows)
  seen = []
  for p in range(2):
    ds = training_batches(hist, table, batch_size=4, seed=0, process_index=p, process_count=2)
    seen.append(np.concatenate([ds[s]["item"] for s in range(10)]))  # one epoch of 40 rows
  assert not set(seen[0]) & set(seen[1])
  assert sorted(np.concatenate(seen).tolist()) == list(range(rows))


def profile_interactions(seed=3, users=7, items=40):
  """Users with distinct items (a profile is a set), 1 to 15 each."""
  rng = np.random.default_rng(seed)
  rows = [(u, i) for u in range(users) for i in rng.choice(items, rng.integers(1, 16), replace=False)]
  u, i = np.array(rows).T
  return Interactions(u, i, rng.integers(0, 50, len(u)))


def test_profile_batches_split_each_profile():
  from mmrec.data.pipeline import profile_batches
  inter = profile_interactions()
  profiles = {u: set(inter.item[inter.user == u].tolist()) for u in np.unique(inter.user)}
  hist = UserHistories(inter, history_len=8)
  ds = profile_batches(hist, batch_size=3, history_len=8, holdout=0.3, seed=0)
  users_seen = []
  for step in range(7):  # 3 epochs of 7 users, 3 a batch
    batch = ds[step]
    assert batch["history"].shape == batch["targets"].shape == (3, 8)
    for row in range(3):
      history = batch["history"][row][batch["history_mask"][row]].tolist()
      targets = batch["targets"][row][batch["target_mask"][row]].tolist()
      owner = [u for u, p in profiles.items() if set(history + targets) <= p]
      assert owner, (history, targets)
      assert targets and not set(history) & set(targets)  # a split of the profile
      assert len(history) == len(set(history)) and len(targets) == len(set(targets))
      u = owner[0] if len(owner) == 1 else None
      if u is not None and len(profiles[u]) <= 8:
        assert set(history) | set(targets) == profiles[u]  # nothing lost below the cap
      users_seen.append(u)
  again = profile_batches(hist, batch_size=3, history_len=8, holdout=0.3, seed=0)[5]
  for key, value in ds[5].items():  # a batch is a pure function of (seed, step)
    np.testing.assert_array_equal(value, again[key])


def test_profile_batches_all_targets_reconstruct_the_profile():
  from mmrec.data.pipeline import profile_batches
  inter = profile_interactions(seed=4)
  hist = UserHistories(inter, history_len=16)
  batch = profile_batches(hist, batch_size=7, history_len=16, holdout=0.5, targets="all",
                          seed=1)[0]
  got = sorted(sorted(t[m].tolist()) for t, m in zip(batch["targets"], batch["target_mask"]))
  want = sorted(sorted(inter.item[inter.user == u].tolist()) for u in np.unique(inter.user))
  assert got == want
