"""Full-ranking metrics: top-k selection, Recall/NDCG/Hit@K, head/tail/cold splits,
catalog coverage, average percentage of long tail (APLT) and Gini of exposure.

Pure numpy. The evaluator scores batches of users against the whole catalog,
calls `masked_topk` and feeds the lists to a `RankingAccumulator`, which keeps
each user's values and list, and reports every metric with a 95% bootstrap
interval over users (`mmrec.evaluation.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmrec.data.stats import gini
from mmrec.evaluation import bootstrap as bootstrap_lib

GROUP_NAMES = ("head", "tail", "cold")
HEAD, TAIL, COLD = 0, 1, 2


def masked_topk(scores: np.ndarray, exclude: Sequence[np.ndarray] | None, k: int) -> np.ndarray:
  """Item indices of the `k` best scores per row, highest first.

  Args:
    scores: float `[B, N]`; NaN is refused.
    exclude: per row, item indices to drop first (set to -inf), e.g. the
      user's training items; None or empty arrays exclude nothing.
    k: list length, `1 <= k <= N`.

  Returns:
    int64 `[B, k]`. Equal scores are ordered by lower item index. A row with
    fewer than `k` non-excluded items is filled with excluded ones (score -inf).
  """
  scores = np.array(scores, copy=True)
  if scores.ndim != 2:
    raise ValueError(f"masked_topk: scores must be [B, N], got shape {scores.shape}")
  b, n = scores.shape
  if not 1 <= k <= n:
    raise ValueError(f"masked_topk: k={k} must be in [1, {n}] (the number of items)")
  if np.isnan(scores).any():
    raise ValueError("masked_topk: scores contain NaN")
  if exclude is not None:
    if len(exclude) != b:
      raise ValueError(f"masked_topk: exclude has {len(exclude)} rows, scores has {b}")
    cols = [np.asarray(e, np.int64).ravel() for e in exclude]
    rows = np.repeat(np.arange(b), [len(c) for c in cols])
    cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    if cols.size and (cols.min() < 0 or cols.max() >= n):
      raise ValueError(f"masked_topk: exclude holds item indices outside [0, {n})")
    scores[rows, cols] = -np.inf

  cand = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  vals = np.take_along_axis(scores, cand, axis=1)
  kth = vals.min(axis=1, keepdims=True)
  # argpartition picks arbitrary members of a tie at the k-th value; rows whose
  # tie straddles the cut are rebuilt so that the lowest indices win.
  n_eq = (scores == kth).sum(axis=1)
  n_eq_cand = (vals == kth).sum(axis=1)
  for r in np.flatnonzero(n_eq > n_eq_cand):
    above = np.flatnonzero(scores[r] > kth[r])
    ties = np.flatnonzero(scores[r] == kth[r])[:k - len(above)]
    cand[r] = np.concatenate([above, ties])
  vals = np.take_along_axis(scores, cand, axis=1)
  order = np.lexsort((cand, -vals), axis=1)
  return np.take_along_axis(cand, order, axis=1)


def popularity_groups(
    train_counts: np.ndarray, is_cold: np.ndarray, head_share: float = 0.2) -> np.ndarray:
  """Item groups: 0 = head, 1 = tail, 2 = cold.

  Cold items are those flagged `is_cold` (no training interaction). Head is
  the top `head_share` of the warm items by training count (rounded half up,
  ties by lower index); every other warm item is tail, zero counts included.
  """
  counts = np.asarray(train_counts)
  is_cold = np.asarray(is_cold, bool)
  if counts.ndim != 1 or is_cold.shape != counts.shape:
    raise ValueError(
        f"popularity_groups: train_counts {counts.shape} and is_cold {is_cold.shape} "
        "must be 1-D and the same length")
  if not 0.0 <= head_share <= 1.0:
    raise ValueError(f"popularity_groups: head_share={head_share} must be in [0, 1]")
  if (counts[is_cold] > 0).any():
    first = int(np.flatnonzero(is_cold & (counts > 0))[0])
    raise ValueError(
        f"popularity_groups: item {first} is_cold but has {counts[first]} training interactions")
  groups = np.full(counts.shape, TAIL, np.int8)
  groups[is_cold] = COLD
  warm = np.flatnonzero(~is_cold)
  n_head = int(head_share * len(warm) + 0.5)
  by_count = warm[np.lexsort((warm, -counts[warm]))]
  groups[by_count[:n_head]] = HEAD
  return groups


class Metrics(dict):
  """Flat metrics (a plain dict to JSON), with `per_user`: metric name -> float [n_users],
  one value per user in the order they were added (NaN: the user has no target in that
  metric's group), for paired comparisons (`bootstrap.paired_difference`)."""

  def __init__(self, values: dict[str, float], per_user: dict[str, np.ndarray]):
    super().__init__(values)
    self.per_user = per_user


class RankingAccumulator:
  """Ranking metrics over batches of users, with bootstrap intervals over users.

  Only users (rows) with at least one target count; rows without are ignored
  everywhere, coverage and exposure included. Keeps each user's metric values
  and list (about (8 metrics + kmax) numbers per user), for the intervals:
  `bootstrap` draws (0: none), seeded by `seed`.
  """

  def __init__(
      self,
      num_items: int,
      ks: Sequence[int] = (10, 20, 50),
      item_group: np.ndarray | None = None,
      group_names: Sequence[str] = GROUP_NAMES,
      bootstrap: int = bootstrap_lib.DRAWS,
      seed: int = 0):
    self.num_items = int(num_items)
    self.ks = tuple(sorted({int(k) for k in ks}))
    if not self.ks or self.ks[0] < 1 or self.ks[-1] > self.num_items:
      raise ValueError(f"RankingAccumulator: ks={ks} must be in [1, num_items={num_items}]")
    if bootstrap < 0:
      raise ValueError(f"RankingAccumulator: bootstrap={bootstrap} draws must be >= 0")
    self.bootstrap, self.seed = int(bootstrap), int(seed)
    self.kmax = self.ks[-1]
    self.group_names = tuple(group_names)
    self.item_group = None
    if item_group is not None:
      item_group = np.asarray(item_group)
      if item_group.shape != (self.num_items,):
        raise ValueError(
            f"RankingAccumulator: item_group has shape {item_group.shape}, "
            f"expected ({self.num_items},)")
      if item_group.min() < 0 or item_group.max() >= len(self.group_names):
        raise ValueError(
            f"RankingAccumulator: item_group values must index group_names {self.group_names}")
      self.item_group = item_group.astype(np.int64)
    self._disc = 1.0 / np.log2(np.arange(self.kmax) + 2.0)
    self._idcg = np.concatenate([[1.0], np.cumsum(self._disc)])  # [0] unused
    self._values: list[dict[str, np.ndarray]] = []  # per batch: metric -> [b]
    self._lists: list[np.ndarray] = []  # per batch: int32 [b, kmax]

  def add(self, topk: np.ndarray, targets: Sequence[np.ndarray]) -> None:
    """Adds one batch: `topk` int `[B, >=max(ks)]`, `targets` one index array per row."""
    topk = np.asarray(topk)
    if topk.ndim != 2 or topk.shape[1] < self.kmax:
      raise ValueError(f"RankingAccumulator.add: topk must be [B, >={self.kmax}], got {topk.shape}")
    if len(targets) != len(topk):
      raise ValueError(
          f"RankingAccumulator.add: {len(targets)} target rows for {len(topk)} topk rows")
    topk = topk[:, :self.kmax].astype(np.int64)
    if topk.size and (topk.min() < 0 or topk.max() >= self.num_items):
      raise ValueError(f"RankingAccumulator.add: topk holds indices outside [0, {self.num_items})")
    srt = np.sort(topk, axis=1)
    if (srt[:, 1:] == srt[:, :-1]).any():
      raise ValueError("RankingAccumulator.add: a topk row repeats an item")

    targets = [np.unique(np.asarray(t, np.int64).ravel()) for t in targets]
    keep = np.array([len(t) > 0 for t in targets], bool)
    if not keep.any():
      return
    topk = topk[keep]
    targets = [t for t, k in zip(targets, keep) if k]
    b = len(topk)
    t_rows = np.repeat(np.arange(b), [len(t) for t in targets])
    t_items = np.concatenate(targets)
    if t_items.min() < 0 or t_items.max() >= self.num_items:
      raise ValueError(
          f"RankingAccumulator.add: targets hold indices outside [0, {self.num_items})")
    n = self.num_items
    hits = np.isin(np.arange(b)[:, None] * n + topk, t_rows * n + t_items)
    n_targets = np.bincount(t_rows, minlength=b)

    values = self._ranking(hits, n_targets, "")
    if self.item_group is not None:
      long_tail = np.cumsum(self.item_group[topk] != HEAD, axis=1)
      for k in self.ks:
        values[f"aplt@{k}"] = long_tail[:, k - 1] / k
      values.update(self._groups(topk, hits, t_rows, t_items))
    self._values.append(values)
    self._lists.append(topk.astype(np.int32))

  def _ranking(self, hits: np.ndarray, n_targets: np.ndarray, suffix: str) -> dict:
    """Per-user recall, ndcg (and hit, for all targets) at every k."""
    cum_hits = np.cumsum(hits, axis=1)
    cum_dcg = np.cumsum(hits * self._disc, axis=1)
    out = {}
    for k in self.ks:
      out[f"recall@{k}{suffix}"] = cum_hits[:, k - 1] / n_targets
      out[f"ndcg@{k}{suffix}"] = cum_dcg[:, k - 1] / self._idcg[np.minimum(n_targets, k)]
      if not suffix:
        out[f"hit@{k}"] = (cum_hits[:, k - 1] > 0).astype(np.float64)
    return out

  def _groups(self, topk, hits, t_rows, t_items) -> dict:
    """Per-user group recall/ndcg; NaN for a user without a target in the group."""
    b = len(topk)
    top_group = self.item_group[topk]
    t_group = self.item_group[t_items]
    out = {}
    for g, name in enumerate(self.group_names):
      n_g = np.bincount(t_rows[t_group == g], minlength=b)
      with np.errstate(invalid="ignore", divide="ignore"):
        values = self._ranking(hits & (top_group == g), n_g, f"/{name}")
      out.update({key: np.where(n_g > 0, v, np.nan) for key, v in values.items()})
    return out

  def result(self) -> Metrics:
    """Flat metrics, each with `/ci_low` and `/ci_high` (a bootstrap over users) unless
    `bootstrap=0`; a group without users only reports `users@<group>` = 0."""
    if not self._values:
      raise ValueError("RankingAccumulator.result: no user with a target was added")
    per_user = {key: np.concatenate([v[key] for v in self._values]) for key in self._values[0]}
    lists = np.concatenate(self._lists)
    u = len(lists)
    out: dict[str, float] = {"users@all": float(u)}
    for name in self.group_names if self.item_group is not None else ():
      out[f"users@{name}"] = float((~np.isnan(per_user[f"recall@{self.ks[0]}/{name}"])).sum())
    means = [key for key, v in per_user.items() if not np.isnan(v).all()]
    for key in means:
      out[key] = float(np.nanmean(per_user[key]))
    exposure = {k: bootstrap_lib.user_item_matrix(lists[:, :k], self.num_items) for k in self.ks}
    for k in self.ks:
      counts = np.asarray(exposure[k].sum(axis=0)).ravel()
      out[f"coverage@{k}"] = float((counts > 0).sum() / self.num_items)
      out[f"gini@{k}"] = gini(counts)
    if self.bootstrap:
      self._intervals(out, per_user, means, exposure)
    return Metrics(dict(sorted(out.items())), per_user)

  def _intervals(self, out, per_user, means, exposure) -> None:
    values = np.stack([per_user[key] for key in means], axis=1)
    n = len(values)
    mean_stat = bootstrap_lib.mean_statistic(values)

    def statistic(w):
      cols = [mean_stat(w)]
      for k in self.ks:
        counts = np.asarray(exposure[k].T @ w.T).T  # resampled exposure [b, N]
        cols.append(np.stack([(counts > 0).mean(axis=1), bootstrap_lib.gini_rows(counts)], 1))
      return np.concatenate(cols, axis=1)

    corpus = [f"{m}@{k}" for k in self.ks for m in ("coverage", "gini")]
    draws = bootstrap_lib.draws_of(statistic, n, self.bootstrap, self.seed)
    low, high = bootstrap_lib.percentile_interval(draws[:, :len(means)])
    c_low, c_high = bootstrap_lib.centred_interval(
        draws[:, len(means):], np.array([out[key] for key in corpus]))
    keys, low, high = [*means, *corpus], [*low, *c_low], [*high, *c_high]
    for key, lo, hi in zip(keys, low, high):
      out[f"{key}/ci_low"], out[f"{key}/ci_high"] = float(lo), float(hi)
