"""Input pipeline: grain batches of (user history, positive item features).

Item features (tokens, decoded image) live in an in-memory `ItemTable`; the
training interactions (next-item objective, `training_batches`) or the users
(whole-profile objective, `profile_batches`) are the grain source. A batch is a pure function of
(seed, step), so a restarted run continues with exactly the batches it would
have seen, and each process of a multi-host job reads its own disjoint shard.
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from mmrec.data.schema import Interactions, RecDataset


@dataclasses.dataclass
class ItemTable:
  """Per-item model inputs, indexed by item index."""

  tokens: np.ndarray  # int32 [N, L]
  image: np.ndarray  # uint8 [N, S, S, 3]
  warm: np.ndarray  # bool [N]: has training interactions
  log_q: np.ndarray  # float32 [N]: log probability of the item in a training batch
  # Outputs of frozen encoders per item, by batch key (mmrec.models.towers.ENCODED_KEYS)
  encoded: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  @classmethod
  def build(cls, data: RecDataset, tokens: np.ndarray, image: np.ndarray) -> "ItemTable":
    counts = data.train_counts()
    # Items never sampled in training get the probability of a single draw.
    q = np.maximum(counts, 1) / max(counts.sum(), 1)
    return cls(tokens=tokens, image=image, warm=counts > 0, log_q=np.log(q).astype(np.float32))

  def features(self, items: np.ndarray) -> dict[str, np.ndarray]:
    return {"item": items.astype(np.int32), "tokens": self.tokens[items], "image": self.image[items],
            "warm": self.warm[items], "log_q": self.log_q[items],
            **{key: values[items] for key, values in self.encoded.items()}}


class UserHistories:
  """Interactions sorted by (user, time); the history of row j is the rows before it."""

  def __init__(self, interactions: Interactions, history_len: int):
    order = np.lexsort((np.arange(len(interactions)), interactions.timestamp, interactions.user))
    self.rows = interactions.take(order)
    self.history_len = history_len
    starts = np.flatnonzero(np.r_[True, self.rows.user[1:] != self.rows.user[:-1]])
    lengths = np.diff(np.r_[starts, len(self.rows)])
    self.first_row = np.repeat(starts, lengths)  # first row of the same user, per row
    self.user_end = dict(zip(self.rows.user[starts].tolist(), (starts + lengths).tolist()))

  def __len__(self) -> int:
    return len(self.rows)

  def _window(self, end: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items at rows [max(start, end-H), end), left-padded with 0."""
    idx = end[:, None] - np.arange(self.history_len, 0, -1)[None, :]
    mask = idx >= start[:, None]
    items = np.where(mask, self.rows.item[np.clip(idx, 0, None)], 0)
    return items.astype(np.int32), mask

  def before(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Histories strictly before each of the given (sorted) rows."""
    return self._window(rows, self.first_row[rows])

  def latest(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The last H items of each user (empty for users without rows)."""
    end = np.array([self.user_end.get(int(u), 0) for u in users], np.int64)
    start = np.array([self.first_row[e - 1] if e else 0 for e in end], np.int64)
    return self._window(end, start)


def training_batches(histories: UserHistories, items: ItemTable, *, batch_size: int, seed: int,
                     process_index: int = 0, process_count: int = 1,
                     uniform_negatives: int = 0) -> grain.MapDataset:
  """An endless, per-epoch reshuffled MapDataset of training batches; `ds[step]` is batch `step`.

  Rows are dealt to processes round-robin; `batch_size` is the per-process batch. With
  `uniform_negatives` = M > 0, each batch also holds the features of M items drawn
  uniformly (with replacement) from the warm items, under "negatives".
  """
  warm = np.flatnonzero(items.warm)

  def make_batch(rows: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    history, mask = histories.before(rows)
    batch = {"history": history, "history_mask": mask,
             **items.features(histories.rows.item[rows]),
             "example": rows.astype(np.int32)}  # row in `histories`: which examples were read
    if uniform_negatives:
      batch["negatives"] = items.features(rng.choice(warm, uniform_negatives))
    return batch

  ds = grain.MapDataset.range(len(histories))[process_index::process_count]
  if len(ds) < batch_size:
    raise ValueError(f"{len(ds)} training interactions per process is less than one batch "
                     f"(train.batch_size={batch_size * process_count} over {process_count} processes)")
  return (ds.shuffle(seed=seed).repeat().batch(batch_size, drop_remainder=True)
          .random_map(make_batch, seed=seed))


def profile_batches(histories: UserHistories, *, batch_size: int, history_len: int,
                    holdout: float, targets: str = "held_out", seed: int,
                    process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """Whole-profile batches (denoising, as Mult-DAE): `ds[step]` holds `batch_size` users.

  Each user's train items are split at random: a share `holdout` (at least one item)
  become the targets, the rest the history, so the model learns to complete a profile
  from the other items of it, as it is evaluated. `targets="all"` predicts the whole
  profile (Mult-DAE's reconstruction) instead. Profiles longer than `history_len` keep a
  random `history_len` of each part. The split of a batch is a pure function of
  (seed, step).
  """
  if targets not in ("held_out", "all"):
    raise ValueError(f"train.targets={targets!r}: choose 'held_out' or 'all'")
  if not 0 < holdout < 1:
    raise ValueError(f"train.holdout={holdout} must be in (0, 1)")
  starts = np.flatnonzero(np.r_[True, histories.rows.user[1:] != histories.rows.user[:-1]])
  bounds = np.r_[starts, len(histories.rows)]
  items = histories.rows.item

  def pad(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if len(values) > history_len:
      values = rng.choice(values, history_len, replace=False)
    out = np.zeros(history_len, np.int32)
    out[:len(values)] = values
    return out, np.arange(history_len) < len(values)

  def make_batch(users: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    rows = {"history": [], "history_mask": [], "targets": [], "target_mask": []}
    for u in users:
      profile = items[bounds[u]:bounds[u + 1]]
      held = rng.random(len(profile)) < holdout
      if not held.any():
        held[rng.integers(len(profile))] = True
      if held.all() and len(profile) > 1:
        held[rng.integers(len(profile))] = False
      for key, part in (("history", profile[~held]),
                        ("targets", profile if targets == "all" else profile[held])):
        values, mask = pad(part, rng)
        rows[key].append(values)
        rows["history_mask" if key == "history" else "target_mask"].append(mask)
    return {k: np.stack(v) for k, v in rows.items()}

  ds = grain.MapDataset.range(len(starts))[process_index::process_count]
  if len(ds) < batch_size:
    raise ValueError(f"{len(ds)} training users per process is less than one batch "
                     f"(train.batch_size={batch_size * process_count} over {process_count} "
                     f"processes)")
  return (ds.shuffle(seed=seed).repeat().batch(batch_size, drop_remainder=True)
          .random_map(make_batch, seed=seed))
