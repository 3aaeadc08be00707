"""Leave-last-out split against a per-user brute-force reference."""

import collections

import numpy as np
import pytest

from mmrec.data.schema import SPLITS, Interactions
from mmrec.data.split import PROTOCOLS, split, split_leave_last_out


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
  with pytest.raises(ValueError, match="unknown split protocol 'random'"):
    split(inter, "random", np.zeros(6, bool))
  with pytest.raises(ValueError, match="is_new covers 3 items"):
    split(inter, "leave_last_out", np.zeros(3, bool))
  assert "leave_last_out" in PROTOCOLS
