"""Calls a bundle's exported user tower (`mmrec.retrieval.user_tower`); needs jaxlib.

jax is imported only here and only when a history is embedded, so the rest of
`mmrec.serving` keeps working with numpy and scann alone.
"""

from __future__ import annotations

import importlib.util
import pathlib
from collections.abc import Sequence

import numpy as np


def jax_available() -> bool:
  try:
    return importlib.util.find_spec("jax") is not None
  except ImportError:
    return False


class UserTower:
  """The exported user tower of one bundle: histories of item ids -> user embeddings."""

  def __init__(self, path: pathlib.Path, description: dict):
    from jax import export  # the caller checked jax_available()
    self.history_len = int(description["history_len"])
    self._call = export.deserialize(bytearray((path / description["file"]).read_bytes())).call
    items = np.load(path / description["items_file"], allow_pickle=False)
    self._model_index = {item_id: i for i, item_id in enumerate(items.tolist())}
    self._unseen = len(items)  # items added after training: an index the model never saw

  def embed(self, histories: Sequence[Sequence[str]], rows_of, embeddings: np.ndarray
            ) -> np.ndarray:
    """float32 `[Q, D]` for lists of item ids, oldest first (the last `history_len` count).

    `rows_of(ids)` gives bundle rows (raising for unknown ids); `embeddings` are the
    bundle's item embeddings.
    """
    h = self.history_len
    index = np.zeros((len(histories), h), np.int32)
    mask = np.zeros((len(histories), h), bool)
    items = np.zeros((len(histories), h, embeddings.shape[1]), np.float32)
    for q, ids in enumerate(histories):
      ids = list(ids)[-h:]
      if not ids:
        continue
      rows = rows_of(ids)
      index[q, h - len(ids):] = [self._model_index.get(i, self._unseen) for i in ids]
      mask[q, h - len(ids):] = True
      items[q, h - len(ids):] = embeddings[rows]
    return np.asarray(self._call(index, mask, items), np.float32)
