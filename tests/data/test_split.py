"""Split protocols against brute-force references written independently here."""

import collections

import numpy as np
import pytest

from mmrec.data.schema import SPLITS, Interactions
from mmrec.data.split import (PROTOCOLS, options_for, protocol_options, ratio_counts, split,
                               split_leave_last_out, temporal_cuts)


def _random(seed: int, m=3000, users=300, items=80, new_fraction=0.1):
  rng = np.random.default_rng(seed)
  # Few distinct timestamps: many ties in time within a user.
  inter = Interactions(rng.integers(0, users, m), rng.integers(0, items, m),
                       rng.integers(0, 20, m))
  return inter, rng.random(items) < new_fraction


def _reference(inter: Interactions, is_new: np.ndarray) -> dict[str, list[int]]:
  """Rows (input positions) of the warm interactions per split, by a plain loop."""
  history = collections.defaultdict(list)
  for row in range(len(inter)):
    if not is_new[inter.item[row]]:
      history[int(inter.user[row])].append((int(inter.timestamp[row]), row))
  rows = {s: [] for s in SPLITS}
  for events in history.values():
    events.sort()  # By time; equal times keep input order (the later row is later).
    for k, (_, row) in enumerate(events):
      from_end = len(events) - 1 - k
      if len(events) >= 3 and from_end == 0:
        rows["test"].append(row)
      elif len(events) >= 3 and from_end == 1:
        rows["valid"].append(row)
      else:
        rows["train"].append(row)
  return {s: sorted(r) for s, r in rows.items()}


def _rows(x: Interactions) -> list[tuple[int, int, int]]:
  return sorted(zip(x.user.tolist(), x.item.tolist(), x.timestamp.tolist()))


@pytest.mark.parametrize("seed", range(5))
def test_matches_reference(seed):
  inter, is_new = _random(seed)
  splits, is_cold = split(inter, "leave_last_out", is_new, seed=seed)
  expected = _reference(inter, is_new)
  for s in SPLITS:
    warm = splits[s].take(~is_new[splits[s].item])  # Rows keep their input order.
    ref = inter.take(np.array(expected[s], int))
    for field in ("user", "item", "timestamp"):
      np.testing.assert_array_equal(getattr(warm, field), getattr(ref, field),
                                    err_msg=f"{s}.{field}")
  train_items = set(splits["train"].item.tolist())
  np.testing.assert_array_equal(is_cold, [i not in train_items for i in range(len(is_new))])
  assert is_cold[is_new].all()


@pytest.mark.parametrize("seed", range(3))
def test_new_items_held_out_and_nothing_lost(seed):
  inter, is_new = _random(seed, new_fraction=0.3)
  splits, _ = split_leave_last_out(inter, is_new, seed)
  assert not is_new[splits["train"].item].any()
  everything = Interactions(*(np.concatenate([getattr(splits[s], f) for s in SPLITS])
                              for f in ("user", "item", "timestamp")))
  assert _rows(everything) == _rows(inter)
  new_rows = int(is_new[inter.item].sum())
  in_valid = int(is_new[splits["valid"].item].sum())
  assert new_rows == in_valid + int(is_new[splits["test"].item].sum())
  assert abs(in_valid / new_rows - 0.5) < 0.1  # The coin is fair.


def test_coin_is_seeded():
  inter, is_new = _random(0, new_fraction=0.5)
  a, _ = split_leave_last_out(inter, is_new, seed=1)
  b, _ = split_leave_last_out(inter, is_new, seed=1)
  c, _ = split_leave_last_out(inter, is_new, seed=2)
  assert _rows(a["valid"]) == _rows(b["valid"])
  assert _rows(a["valid"]) != _rows(c["valid"])


def test_small_users_and_ties():
  # User 0: three warm events, the last two tied in time (input order decides);
  # user 1: two warm events (all train); item 3 is new.
  inter = Interactions(user=[0, 0, 0, 1, 1, 0], item=[0, 1, 2, 0, 1, 3],
                       timestamp=[5, 9, 9, 1, 2, 0])
  splits, is_cold = split(inter, "leave_last_out", np.array([0, 0, 0, 1], bool))
  assert _rows(splits["train"]) == [(0, 0, 5), (1, 0, 1), (1, 1, 2)]
  assert _rows(splits["valid"]) == [(0, 1, 9)] + ([(0, 3, 0)] if 3 in splits["valid"].item else [])
  assert (0, 2, 9) in _rows(splits["test"])
  np.testing.assert_array_equal(is_cold, [False, False, True, True])


def test_errors():
  inter = Interactions([0, 1], [0, 5], [1, 2])
  with pytest.raises(ValueError, match="unknown split protocol 'shuffle'"):
    split(inter, "shuffle", np.zeros(6, bool))
  with pytest.raises(ValueError, match="is_new covers 3 items"):
    split(inter, "leave_last_out", np.zeros(3, bool))
  assert "leave_last_out" in PROTOCOLS


# ---- shared checks ----

def _assert_partition(inter: Interactions, splits, is_new, is_cold):
  """Every input row lands in exactly one split; new items never train; is_cold is right."""
  assert sum(len(splits[s]) for s in SPLITS) == len(inter)
  everything = Interactions(*(np.concatenate([getattr(splits[s], f) for s in SPLITS])
                              for f in ("user", "item", "timestamp")))
  assert _rows(everything) == _rows(inter)
  assert not np.asarray(is_new, bool)[splits["train"].item].any()
  train_items = set(splits["train"].item.tolist())
  np.testing.assert_array_equal(is_cold, [i not in train_items for i in range(len(is_new))])


def _per_user(x: Interactions) -> collections.Counter:
  return collections.Counter(x.user.tolist())


# ---- random ----

def _recbole_split_ids():
  """RecBole's own `Dataset._calcu_split_ids`, lifted from the installed package's source
  with ast (importing recbole needs torch); None when recbole is not installed."""
  import ast
  import importlib.util
  spec = importlib.util.find_spec("recbole")
  if spec is None:
    return None
  import pathlib
  source = (pathlib.Path(spec.origin).parent / "data" / "dataset" / "dataset.py").read_text()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.FunctionDef) and node.name == "_calcu_split_ids":
      namespace = {"np": np}
      exec(compile(ast.Module([node], []), "recbole_dataset", "exec"), namespace)
      fn = namespace["_calcu_split_ids"]
      # split_by_ratio normalises the ratios before calling it.
      return lambda n, ratios: np.diff(
          [0, *fn(None, n, [r / sum(ratios) for r in ratios]), n]).tolist()
  raise AssertionError("recbole's dataset.py has no _calcu_split_ids")


def _expected_counts(n: int) -> tuple[int, int, int]:
  """Default 8:1:1 in closed form: floor(n/10) valid and test, but one test item from
  n = 2 and one valid item from n = 3."""
  test = n // 10 if n >= 10 else int(n >= 2)
  valid = n // 10 if n >= 10 else int(n >= 3)
  return n - valid - test, valid, test


def test_ratio_counts_match_recbole_and_the_closed_form():
  recbole = _recbole_split_ids()
  for n in range(1, 400):
    assert tuple(ratio_counts(n, (0.8, 0.1, 0.1))) == _expected_counts(n), n
    for ratios in [(0.8, 0.1, 0.1), (0.7, 0.2, 0.1), (8, 1, 1), (0.8, 0.0, 0.2), (0.6, 0.2, 0.2)]:
      if recbole is not None:
        assert ratio_counts(n, ratios) == recbole(n, ratios), (n, ratios)
  if recbole is None:
    pytest.skip("recbole not installed: compared with the closed form only")


@pytest.mark.parametrize("seed", range(3))
def test_random_per_user_counts_and_partition(seed):
  # Users with 1..40 interactions (the small ones exercise the minimum rules).
  rng = np.random.default_rng(seed)
  sizes = rng.integers(1, 41, 120)
  users = np.repeat(np.arange(len(sizes)), sizes)
  rng.shuffle(users)
  inter = Interactions(users, rng.integers(0, 60, len(users)), rng.integers(0, 1000, len(users)))
  is_new = np.zeros(60, bool)
  is_new[:5] = True
  splits, is_cold = split(inter, "random", is_new, seed=seed)
  _assert_partition(inter, splits, is_new, is_cold)
  warm = inter.take(~is_new[inter.item])
  n_warm = _per_user(warm)
  got = [_per_user(splits[s].take(~is_new[splits[s].item])) for s in SPLITS]
  for user, n in n_warm.items():
    assert tuple(c[user] for c in got) == _expected_counts(n), (user, n)
  new_rows = int(is_new[inter.item].sum())
  assert sum(int(is_new[splits[s].item].sum()) for s in ("valid", "test")) == new_rows


def test_random_is_seeded_and_uniform():
  inter = Interactions(np.zeros(10, int), np.arange(10), np.arange(10))
  is_new = np.zeros(10, bool)
  assert _rows(split(inter, "random", is_new, seed=3)[0]["test"]) == \
      _rows(split(inter, "random", is_new, seed=3)[0]["test"])
  tested = collections.Counter()
  for seed in range(400):
    tested.update(split(inter, "random", is_new, seed=seed)[0]["test"].item.tolist())
  assert len(tested) == 10  # not always the same row, e.g. not the last one
  assert all(abs(tested[i] / 400 - 0.1) < 0.05 for i in range(10)), tested


def test_random_seeds_differ_and_ratios_apply():
  inter, is_new = _random(0)
  a, _ = split(inter, "random", is_new, seed=1)
  c, _ = split(inter, "random", is_new, seed=2)
  assert _rows(a["test"]) != _rows(c["test"])
  splits, _ = split(inter, "random", is_new, seed=1, ratios=(0.6, 0.2, 0.2))
  warm = inter.take(~is_new[inter.item])
  for user, n in _per_user(warm).items():
    want = ratio_counts(n, (0.6, 0.2, 0.2))
    got = [int(((splits[s].user == user) & ~is_new[splits[s].item]).sum()) for s in SPLITS]
    assert got == want and abs(got[0] - 0.6 * n) <= 2, (user, n, got)


# ---- temporal ----

def _temporal_reference(inter, is_new, quantiles):
  """Per row, by plain Python: the split by the time cuts (new items excluded)."""
  times = sorted(int(t) for t, i in zip(inter.timestamp, inter.item) if not is_new[i])
  cuts = []
  for q in quantiles:
    rank = int(np.floor(q * len(times)))
    cuts.append(times[rank] if rank < len(times) else times[-1] + 1)
  rows = {s: [] for s in SPLITS}
  for row, (t, i) in enumerate(zip(inter.timestamp.tolist(), inter.item.tolist())):
    if not is_new[i]:
      rows["test" if t >= cuts[1] else "valid" if t >= cuts[0] else "train"].append(row)
  return rows, cuts


@pytest.mark.parametrize("quantiles", [(0.8, 0.9), (0.5, 0.5), (0.0, 1.0), (0.7, 0.95)])
def test_temporal_matches_reference(quantiles):
  inter, is_new = _random(4)  # few distinct timestamps: many ties at the cuts
  splits, is_cold = split(inter, "temporal", is_new, seed=0, quantiles=quantiles)
  _assert_partition(inter, splits, is_new, is_cold)
  expected, cuts = _temporal_reference(inter, is_new, quantiles)
  for s in SPLITS:
    warm = splits[s].take(~is_new[splits[s].item])
    assert _rows(warm) == _rows(inter.take(np.array(expected[s], int))), s
  assert (splits["train"].timestamp < cuts[0]).all()
  warm_eval = [splits[s].take(~is_new[splits[s].item]) for s in ("valid", "test")]
  assert (warm_eval[0].timestamp >= cuts[0]).all() and (warm_eval[0].timestamp < cuts[1]).all()
  assert (warm_eval[1].timestamp >= cuts[1]).all()


def test_temporal_distinct_times_cut_exactly_and_explicit_cuts():
  rng = np.random.default_rng(0)
  m = 1000
  inter = Interactions(rng.integers(0, 50, m), rng.integers(0, 30, m), rng.permutation(m) * 7)
  is_new = np.zeros(30, bool)
  splits, _ = split(inter, "temporal", is_new, quantiles=(0.8, 0.9))
  assert [len(splits[s]) for s in SPLITS] == [800, 100, 100]
  assert temporal_cuts(inter.timestamp, (0.8, 0.9)) == (5600, 6300)
  explicit, _ = split(inter, "temporal", is_new, cut_times=(700, 6993))
  assert len(explicit["train"]) == 100 and len(explicit["test"]) == 1
  # A user whose interactions all come after the cut is still evaluated.
  late = Interactions(np.r_[inter.user, 99], np.r_[inter.item, 3], np.r_[inter.timestamp, 10**6])
  late_splits, _ = split(late, "temporal", is_new)
  assert 99 in late_splits["test"].user and 99 not in late_splits["train"].user


# ---- cold items ----

@pytest.mark.parametrize("seed", range(3))
def test_cold_items_never_train(seed):
  inter, is_new = _random(seed)
  splits, is_cold = split(inter, "cold_items", is_new, seed=seed, cold_share=0.25)
  _assert_partition(inter, splits, is_new, is_cold)
  split_of_item = collections.defaultdict(set)
  for s in SPLITS:
    for item in splits[s].item.tolist():
      split_of_item[item].add(s)
  assert all(len(v) == 1 for v in split_of_item.values())  # items are held out whole
  held = {i for i, v in split_of_item.items() if v != {"train"}}
  warm_seen = {i for i in split_of_item if not is_new[i]}
  assert len(held - set(np.flatnonzero(is_new))) == round(0.25 * len(warm_seen))
  assert held >= {i for i in split_of_item if is_new[i]}
  assert all(is_cold[i] for i in held)
  valid_items = {i for i in held if split_of_item[i] == {"valid"}}
  assert len(valid_items) == round(0.5 * len(held))
  again, _ = split(inter, "cold_items", is_new, seed=seed, cold_share=0.25)
  assert _rows(again["test"]) == _rows(splits["test"])
  other, _ = split(inter, "cold_items", is_new, seed=seed + 10, cold_share=0.25)
  assert _rows(other["test"]) != _rows(splits["test"])


# ---- options ----

def test_options_from_the_config_and_errors():
  from mmrec.configs import two_tower
  options = two_tower.get_config("tiny").data.split
  accepted = {name for p in PROTOCOLS for name in protocol_options(p)}
  assert set(options) <= accepted, set(options) - accepted
  inter, is_new = _random(1)
  given = np.where(is_new[inter.item], 2, np.arange(len(inter)) % 3)  # new items not in train
  for protocol in PROTOCOLS:
    extra = {"given": given} if protocol == "given" else {}
    splits, is_cold = split(inter, protocol, is_new, 0, **options_for(protocol, options), **extra)
    _assert_partition(inter, splits, is_new, is_cold)
  assert options_for("random", options) == {"ratios": tuple(options.ratios)}
  with pytest.raises(ValueError, match=r"'leave_last_out' takes no option \['ratios'\]"):
    split(inter, "leave_last_out", is_new, ratios=(1, 0, 0))
  with pytest.raises(ValueError, match="ratios must be"):
    split(inter, "random", is_new, ratios=(0.0, 0.5, 0.5))
  with pytest.raises(ValueError, match="quantiles must be"):
    split(inter, "temporal", is_new, quantiles=(0.9, 0.8))
  with pytest.raises(ValueError, match="is after the test cut"):
    split(inter, "temporal", is_new, cut_times=(10, 5))
  with pytest.raises(ValueError, match="'given' needs the split of every row"):
    split(inter, "given", is_new)


# ---- given ----

def test_given_keeps_each_row_where_it_is():
  inter, is_new = _random(2)
  given = np.where(is_new[inter.item], 1, np.random.default_rng(0).integers(0, 3, len(inter)))
  splits, is_cold = split(inter, "given", is_new, 0, given=given)
  for i, name in enumerate(SPLITS):
    assert _rows(splits[name]) == _rows(inter.take(given == i))
  assert is_cold.tolist() == [i not in set(inter.item[given == 0].tolist())
                              for i in range(len(is_new))]
  with pytest.raises(ValueError, match="items marked new appear in the train split"):
    split(inter, "given", is_new, given=np.zeros(len(inter), int))
  with pytest.raises(ValueError, match="split index 0..2 per row"):
    split(inter, "given", is_new, given=given[:-1])
