"""The trained user tower serialized with `jax.export`, for services that have jaxlib.

The exported function is `(history, history_mask, history_items) -> users`:
history int32 `[B, H]` the model's item indices (an item's position in the
bundle file `user_tower_items.npy`), oldest first and left-padded;
history_mask bool `[B, H]`; history_items float32 `[B, H, D]` those items'
bundle embeddings; users float32 `[B, D]`, L2-normalised (with `model.item_bias`: all but
the last coordinate, which is 1). B is symbolic.
`mmrec.serving.user_tower` calls it from a bundle.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mmrec.models.towers import TwoTower

ITEMS_FILE = "user_tower_items.npy"


def export_user_tower(model: TwoTower, history_len: int,
                      item_ids: np.ndarray) -> tuple[bytes, dict, dict[str, bytes]]:
  """(serialized function, manifest description, extra files) of `model`'s user tower."""
  graphdef, state = nnx.split(model.user_tower)

  def users(history, history_mask, history_items):
    return nnx.merge(graphdef, state)(history, history_mask, history_items)

  dim = model.item_cache[...].shape[1]
  (b,) = jax.export.symbolic_shape("b")
  exported = jax.export.export(jax.jit(users))(
      jax.ShapeDtypeStruct((b, history_len), jnp.int32),
      jax.ShapeDtypeStruct((b, history_len), jnp.bool_),
      jax.ShapeDtypeStruct((b, history_len, dim), jnp.float32))
  description = {"history_len": history_len, "items_file": ITEMS_FILE,
                 "platforms": list(exported.platforms),
                 "inputs": "history int32 [B, H] (rows of items_file, oldest first, left-padded), "
                           "history_mask bool [B, H], history_items float32 [B, H, D]",
                 "output": "float32 [B, D], L2-normalised (item_bias: then a last 1)"}
  items = _npy(np.asarray(item_ids, np.str_))
  return bytes(exported.serialize()), description, {ITEMS_FILE: items}


def _npy(array: np.ndarray) -> bytes:
  import io
  buffer = io.BytesIO()
  np.save(buffer, array, allow_pickle=False)
  return buffer.getvalue()
