"""In-memory tables shared by the data builders, importers and the trainer.

Items and users are contiguous integer indices; original ids live in
`Catalog.item_id` so exports and recommendations speak them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

SPLITS = ("train", "valid", "test")


@dataclasses.dataclass
class Catalog:
  """One row per item; the row number is the item index."""

  item_id: np.ndarray  # str [N], original ids
  title: np.ndarray  # str [N]
  description: np.ndarray  # str [N]
  category: np.ndarray  # str [N]
  image: list[bytes]  # encoded PNG/JPEG, b"" when the item has none
  attributes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  attribute_values: dict[str, list[str]] = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return len(self.item_id)

  def text(self) -> list[str]:
    """The text the item tower reads: title, then description."""
    return [f"{t}. {d}" if d else str(t) for t, d in zip(self.title, self.description)]


@dataclasses.dataclass
class Interactions:
  user: np.ndarray  # int32 [M]
  item: np.ndarray  # int32 [M]
  timestamp: np.ndarray  # int64 [M], seconds

  def __post_init__(self):
    self.user = np.asarray(self.user, np.int32)
    self.item = np.asarray(self.item, np.int32)
    self.timestamp = np.asarray(self.timestamp, np.int64)
    if not len(self.user) == len(self.item) == len(self.timestamp):
      raise ValueError(
          f"Interactions columns differ in length: user={len(self.user)}, "
          f"item={len(self.item)}, timestamp={len(self.timestamp)}")

  def __len__(self) -> int:
    return len(self.user)

  def take(self, index) -> "Interactions":
    return Interactions(self.user[index], self.item[index], self.timestamp[index])


@dataclasses.dataclass
class RecDataset:
  catalog: Catalog
  splits: dict[str, Interactions]
  is_cold: np.ndarray  # bool [N]: no training interaction
  num_users: int
  tokenizer_path: str | None = None
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def num_items(self) -> int:
    return len(self.catalog)

  def train_counts(self) -> np.ndarray:
    """Training interactions per item (the popularity used by logQ and head/tail)."""
    return np.bincount(self.splits["train"].item, minlength=self.num_items)
