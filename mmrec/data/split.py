"""Train/valid/test split protocols (see docs/architecture.md, "Split protocol").

Every protocol maps `(interactions, is_new, seed)` to `(splits, is_cold)`:
each input row lands in exactly one split (rows keep their input order within
a split), and `is_cold[i]` says item i has no training interaction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mmrec.data.schema import SPLITS, Interactions

Splits = dict[str, Interactions]
Protocol = Callable[[Interactions, np.ndarray, int], tuple[Splits, np.ndarray]]


def split_leave_last_out(interactions: Interactions, is_new: np.ndarray,
                         seed: int = 0) -> tuple[Splits, np.ndarray]:
  """Leave-last-out per user, with new items held out of training.

  Args:
    interactions: all interactions; ties in time keep their input order
      (the later row counts as later).
    is_new: bool `[N]`, items with no training interaction by design: each of
      their interactions goes to `valid` or `test` by a coin seeded with `seed`.
    seed: the seed of that coin.

  Returns:
    The splits and `is_cold` (bool `[N]`): the new items plus any warm item
    left without a training interaction.
  """
  is_new = np.asarray(is_new, bool)
  _check_items(interactions, is_new)
  m = len(interactions)
  split_of = np.zeros(m, np.int8)  # Index into SPLITS; 0 = train.
  new = is_new[interactions.item]
  coin = np.random.default_rng(seed).random(int(new.sum())) < 0.5
  split_of[new] = np.where(coin, SPLITS.index("valid"), SPLITS.index("test"))

  warm = np.flatnonzero(~new)
  order = warm[np.lexsort((warm, interactions.timestamp[warm], interactions.user[warm]))]
  users = interactions.user[order]
  # Position of each row counted from its user's last warm interaction (0 = last).
  is_end = np.ones(len(order), bool)
  is_end[:-1] = users[1:] != users[:-1]
  ends = np.flatnonzero(is_end)
  count = np.diff(np.concatenate([[-1], ends]))
  end_of_row = np.repeat(ends, count)
  from_last = end_of_row - np.arange(len(order))
  eligible = np.repeat(count >= 3, count)
  split_of[order[eligible & (from_last == 0)]] = SPLITS.index("test")
  split_of[order[eligible & (from_last == 1)]] = SPLITS.index("valid")
  return _finish(interactions, split_of, len(is_new))


PROTOCOLS: dict[str, Protocol] = {"leave_last_out": split_leave_last_out}


def split(interactions: Interactions, protocol: str, is_new: np.ndarray,
          seed: int = 0) -> tuple[Splits, np.ndarray]:
  """Splits with the named protocol (one of `PROTOCOLS`)."""
  if protocol not in PROTOCOLS:
    raise ValueError(f"unknown split protocol {protocol!r}; known: {sorted(PROTOCOLS)}")
  return PROTOCOLS[protocol](interactions, is_new, seed)


def _check_items(interactions: Interactions, is_new: np.ndarray):
  if is_new.ndim != 1:
    raise ValueError(f"is_new must be 1-D bool [num_items], got shape {is_new.shape}")
  item = interactions.item
  if len(item) and (item.min() < 0 or item.max() >= len(is_new)):
    raise ValueError(f"interaction items span [{item.min()}, {item.max()}] but is_new covers "
                     f"{len(is_new)} items; clean the data first (mmrec.data.clean.validate)")


def _finish(interactions: Interactions, split_of: np.ndarray,
            num_items: int) -> tuple[Splits, np.ndarray]:
  splits = {name: interactions.take(split_of == i) for i, name in enumerate(SPLITS)}
  is_cold = np.bincount(splits["train"].item, minlength=num_items) == 0
  return splits, is_cold
