"""Train/valid/test split protocols (see docs/architecture.md, "Split protocols").

`split(interactions, protocol, is_new, seed, **options)` maps the interactions
to `(splits, is_cold)`: each input row lands in exactly one split (rows keep
their input order within a split), and `is_cold[i]` says item i has no
training interaction. Items marked `is_new` never reach `train` under any
protocol. The same seed gives the same split.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mmrec.data.schema import SPLITS, Interactions

Splits = dict[str, Interactions]
Protocol = Callable[..., tuple[Splits, np.ndarray]]
TRAIN, VALID, TEST = (SPLITS.index(s) for s in ("train", "valid", "test"))


def split_leave_last_out(interactions: Interactions, is_new: np.ndarray,
                         seed: int = 0) -> tuple[Splits, np.ndarray]:
  """Leave-last-out per user, with new items held out of training.

  Each user's warm interactions sorted by time (ties keep input order: the
  later row counts as later): the last goes to test, the second to last to
  valid, the rest to train; users with fewer than 3 keep all in train.
  Interactions of `is_new` items go to valid or test by a fair coin seeded with `seed`.
  """
  split_of, new = _hold_out_new(interactions, is_new, np.random.default_rng(seed))
  warm = np.flatnonzero(~new)
  order = warm[np.lexsort((warm, interactions.timestamp[warm], interactions.user[warm]))]
  rank, count = _rank_within_user(interactions.user[order])
  from_last = count - 1 - rank
  eligible = count >= 3
  split_of[order[eligible & (from_last == 0)]] = TEST
  split_of[order[eligible & (from_last == 1)]] = VALID
  return _finish(interactions, split_of, len(is_new))


def split_random(interactions: Interactions, is_new: np.ndarray, seed: int = 0,
                 ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> tuple[Splits, np.ndarray]:
  """Per user, a seeded shuffle cut by `ratios` (train, valid, test), as RecBole's `RS`.

  A user with n warm interactions gets `ratio_counts(n, ratios)` of them in
  each split; with the default 8:1:1 that is floor(n/10) valid and test, but
  at least one test item when n >= 2 and one valid item when n >= 3.
  Interactions of `is_new` items go to valid or test by a fair coin.
  """
  ratios = _check_ratios(ratios)
  rng = np.random.default_rng(seed)
  split_of, new = _hold_out_new(interactions, is_new, rng)
  warm = np.flatnonzero(~new)
  shuffled = warm[rng.permutation(len(warm))]
  order = shuffled[np.argsort(interactions.user[shuffled], kind="stable")]
  rank, count = _rank_within_user(interactions.user[order])
  sizes = np.unique(count)
  table = np.array([ratio_counts(int(n), ratios) for n in sizes], np.int64).reshape(-1, 3)
  per_row = table[np.searchsorted(sizes, count)]
  n_train, n_valid = per_row[:, 0], per_row[:, 1]
  split_of[order] = np.where(rank < n_train, TRAIN,
                             np.where(rank < n_train + n_valid, VALID, TEST))
  return _finish(interactions, split_of, len(is_new))


def ratio_counts(n: int, ratios: Sequence[float]) -> list[int]:
  """(train, valid, test) sizes of a group of n under `ratios`, exactly as RecBole's
  `Dataset._calcu_split_ids`: valid and test are rounded down, but a part with
  0 < ratio * n < 1 still gets one row (test first) while train keeps more than one."""
  total = sum(ratios)
  shares = [r / total for r in ratios]
  counts = [int(s * n) for s in shares]
  counts[0] = n - sum(counts[1:])
  for i in range(1, len(shares)):
    if counts[0] <= 1:
      break
    if 0 < shares[-i] * n < 1:
      counts[-i] += 1
      counts[0] -= 1
  return counts


def split_temporal(interactions: Interactions, is_new: np.ndarray, seed: int = 0,
                   quantiles: Sequence[float] = (0.8, 0.9),
                   cut_times: Sequence[int] | None = None) -> tuple[Splits, np.ndarray]:
  """A global time cut: train before the valid cut, valid up to the test cut, then test.

  Args:
    quantiles: (valid, test) cuts as shares of the warm interactions in time
      order: a cut at q is the timestamp of the row at rank floor(q * M) (0-based)
      of the M warm rows sorted by time (past the last row when that rank is M).
      Rows strictly before a cut fall before it, so with distinct timestamps
      exactly floor(q * M) rows are before it; rows tied at a cut all go after it.
    cut_times: explicit (valid, test) cut timestamps, used instead of `quantiles`.

  Users with no interaction before a cut are still evaluated (from an empty
  history); items first seen after the valid cut are cold. Interactions of
  `is_new` items go to valid or test by a fair coin, whatever their time.
  """
  split_of, new = _hold_out_new(interactions, is_new, np.random.default_rng(seed))
  warm = np.flatnonzero(~new)
  time = interactions.timestamp
  if cut_times is None:
    valid_cut, test_cut = temporal_cuts(time[warm], quantiles)
  else:
    if len(cut_times) != 2:
      raise ValueError(f"cut_times must be (valid_cut, test_cut), got {cut_times!r}")
    valid_cut, test_cut = (int(t) for t in cut_times)
  if valid_cut > test_cut:
    raise ValueError(f"the valid cut {valid_cut} is after the test cut {test_cut}")
  split_of[warm[time[warm] >= valid_cut]] = VALID
  split_of[warm[time[warm] >= test_cut]] = TEST
  return _finish(interactions, split_of, len(is_new))


def temporal_cuts(timestamps: np.ndarray, quantiles: Sequence[float]) -> tuple[int, int]:
  """The (valid, test) cut timestamps at the given quantiles (see `split_temporal`)."""
  if len(quantiles) != 2 or not 0 <= quantiles[0] <= quantiles[1] <= 1:
    raise ValueError(f"quantiles must be (valid, test) with 0 <= valid <= test <= 1, "
                     f"got {tuple(quantiles)!r}")
  ordered = np.sort(np.asarray(timestamps, np.int64))
  m = len(ordered)
  if not m:
    return 0, 0
  ranks = [int(np.floor(q * m)) for q in quantiles]
  return tuple(int(ordered[r]) if r < m else int(ordered[-1]) + 1 for r in ranks)


def split_cold_items(interactions: Interactions, is_new: np.ndarray, seed: int = 0,
                     cold_share: float = 0.2, cold_valid_share: float = 0.5
                     ) -> tuple[Splits, np.ndarray]:
  """Hold out whole items: every interaction of a held-out item goes to valid or test.

  `round(cold_share * K)` of the K items that have interactions and are not
  `is_new` are drawn with `seed`; together with the `is_new` items, each
  held-out item goes whole to valid (a `cold_valid_share` of them, rounded)
  or to test, so valid and test hold disjoint cold items. All interactions of
  the other items go to train: valid and test measure cold-start retrieval only.
  """
  is_new = _check_items(interactions, is_new)
  if not 0 <= cold_share <= 1 or not 0 <= cold_valid_share <= 1:
    raise ValueError(f"cold_share={cold_share} and cold_valid_share={cold_valid_share} "
                     "must lie in [0, 1]")
  rng = np.random.default_rng(seed)
  counts = np.bincount(interactions.item, minlength=len(is_new))
  candidates = np.flatnonzero((counts > 0) & ~is_new)
  held = is_new.copy()
  held[rng.choice(candidates, int(round(cold_share * len(candidates))), replace=False)] = True
  held_items = rng.permutation(np.flatnonzero(held & (counts > 0)))
  to_valid = np.zeros(len(is_new), bool)
  to_valid[held_items[:int(round(cold_valid_share * len(held_items)))]] = True
  item = interactions.item
  split_of = np.where(held[item], np.where(to_valid[item], VALID, TEST), TRAIN).astype(np.int8)
  return _finish(interactions, split_of, len(is_new))


GIVEN_FILES = ("train", "valid", "test")  # RecBole's default benchmark_filename


def split_given(interactions: Interactions, is_new: np.ndarray, seed: int = 0,
                benchmark_filename: Sequence[str] = GIVEN_FILES,
                given: np.ndarray | None = None) -> tuple[Splits, np.ndarray]:
  """The split the data came with, as RecBole's `benchmark_filename`: no row moves.

  `given[r]` is row r's split (0 train, 1 valid, 2 test), as the importer read
  it from one interaction file per split, named by `benchmark_filename`
  (train, valid, test parts; docs/data.md). `seed` is unused; `is_new` items
  may not be in train.
  """
  check_benchmark_filename(benchmark_filename)
  is_new = _check_items(interactions, is_new)
  if given is None:
    raise ValueError("split protocol 'given' needs the split of every row: import train, "
                     "valid and test files (data.source='import', format generic or recbole)")
  given = np.asarray(given)
  if given.shape != (len(interactions),) or not np.isin(given, (TRAIN, VALID, TEST)).all():
    raise ValueError(f"given must hold a split index 0..2 per row ({len(interactions)} rows), "
                     f"got shape {given.shape}")
  if (is_new[interactions.item] & (given == TRAIN)).any():
    raise ValueError("split protocol 'given': items marked new appear in the train split")
  return _finish(interactions, given, len(is_new))


def check_benchmark_filename(parts: Sequence[str]) -> tuple[str, str, str]:
  """The (train, valid, test) file parts of the `given` protocol, checked."""
  parts = tuple(str(p) for p in parts)
  if len(parts) != 3 or len(set(parts)) != 3 or not all(parts) or any("/" in p for p in parts):
    raise ValueError(f"data.split.benchmark_filename must name 3 distinct parts (train, valid, "
                     f"test) without '/', got {parts!r}")
  return parts


PROTOCOLS: dict[str, Protocol] = {
    "leave_last_out": split_leave_last_out,
    "random": split_random,
    "temporal": split_temporal,
    "cold_items": split_cold_items,
    "given": split_given,
}


def protocol_options(protocol: str) -> tuple[str, ...]:
  """The option names the protocol accepts (its keyword arguments after `seed`; `given` of
  the given protocol comes from the importer, not from the config)."""
  _check_protocol(protocol)
  return tuple(inspect.signature(PROTOCOLS[protocol]).parameters)[3:]


def options_for(protocol: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
  """The entries of `options` (e.g. `config.data.split`) that `protocol` accepts."""
  names = protocol_options(protocol)
  return {k: options[k] for k in names if options is not None and k in options}


def split(interactions: Interactions, protocol: str, is_new: np.ndarray, seed: int = 0,
          **options) -> tuple[Splits, np.ndarray]:
  """Splits with the named protocol (one of `PROTOCOLS`) and its options."""
  unknown = sorted(set(options) - set(protocol_options(protocol)))
  if unknown:
    raise ValueError(f"split protocol {protocol!r} takes no option {unknown}; "
                     f"it takes {list(protocol_options(protocol))}")
  return PROTOCOLS[protocol](interactions, is_new, seed, **options)


def _check_protocol(protocol: str):
  if protocol not in PROTOCOLS:
    raise ValueError(f"unknown split protocol {protocol!r}; known: {sorted(PROTOCOLS)}")


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
  ratios = tuple(float(r) for r in ratios)
  if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0:
    raise ValueError(f"ratios must be (train, valid, test), non-negative with train > 0, "
                     f"got {ratios!r}")
  return ratios


def _hold_out_new(interactions: Interactions, is_new: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Split index per row (0 = train), with the rows of new items sent to valid or test by
  a fair coin (the rng's first draws); and the mask of those rows."""
  is_new = _check_items(interactions, is_new)
  split_of = np.full(len(interactions), TRAIN, np.int8)
  new = is_new[interactions.item]
  coin = rng.random(int(new.sum())) < 0.5
  split_of[new] = np.where(coin, VALID, TEST)
  return split_of, new


def _rank_within_user(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """For rows grouped by user: each row's position in its group and the group's size."""
  is_start = np.ones(len(users), bool)
  is_start[1:] = users[1:] != users[:-1]
  starts = np.flatnonzero(is_start)
  count = np.diff(np.append(starts, len(users)))
  rank = np.arange(len(users)) - np.repeat(starts, count)
  return rank, np.repeat(count, count)


def _check_items(interactions: Interactions, is_new: np.ndarray) -> np.ndarray:
  """`is_new` as a bool array, checked against the interactions' item indices."""
  is_new = np.asarray(is_new, bool)
  if is_new.ndim != 1:
    raise ValueError(f"is_new must be 1-D bool [num_items], got shape {is_new.shape}")
  item = interactions.item
  if len(item) and (item.min() < 0 or item.max() >= len(is_new)):
    raise ValueError(f"interaction items span [{item.min()}, {item.max()}] but is_new covers "
                     f"{len(is_new)} items; clean the data first (mmrec.data.clean.validate)")
  return is_new


def _finish(interactions: Interactions, split_of: np.ndarray,
            num_items: int) -> tuple[Splits, np.ndarray]:
  splits = {name: interactions.take(split_of == i) for i, name in enumerate(SPLITS)}
  is_cold = np.bincount(splits["train"].item, minlength=num_items) == 0
  return splits, is_cold
