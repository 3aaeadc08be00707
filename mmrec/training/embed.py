"""Embeddings from a two-tower: every item of the catalog, users from their histories.

Jitted once per model structure and input shape, with the model's (possibly sharded,
multi-host) state as an argument and a replicated result. Evaluation, retrieval (new
items, the bundle) and `mmrec.load` all embed through here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from mmrec.data.pipeline import ItemTable, UserHistories
from mmrec.models.towers import TwoTower


def _batched(fn, arrays: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
  """Apply a jitted fn over the leading axis in fixed-size (padded) batches: one compile."""
  n = len(next(iter(arrays.values())))
  out = []
  for start in range(0, n, batch_size):
    chunk = {k: v[start:start + batch_size] for k, v in arrays.items()}
    pad = batch_size - len(next(iter(chunk.values())))
    chunk = {k: np.pad(v, [(0, pad)] + [(0, 0)] * (v.ndim - 1)) for k, v in chunk.items()}
    out.append(np.asarray(fn(chunk))[:batch_size - pad])
  return np.concatenate(out)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _apply(method: Callable, graphdef: nnx.GraphDef, mesh, state, inputs):
  out = method(nnx.merge(graphdef, state), inputs)
  if mesh is not None:  # replicated: every process can read the result
    out = jax.lax.with_sharding_constraint(out, NamedSharding(mesh, PartitionSpec()))
  return out


def _model_fn(model: TwoTower, method: Callable) -> Callable:
  """`method(model, inputs)` jitted with the model's state as an argument (a multi-host
  state cannot be closed over), compiled once per model structure and input shape (the
  jit lives at module level), with a replicated result. Every process runs the same
  (padded, fixed-size) batches, so the collective calls line up."""
  graphdef, state = nnx.split(model)
  meshes = [x.sharding.mesh for x in jax.tree.leaves(state)
            if isinstance(getattr(x, "sharding", None), NamedSharding)]
  mesh = meshes[0] if meshes and meshes[0].size > 1 else None
  return lambda inputs: _apply(method, graphdef, mesh, state, inputs)


def item_embeddings(model: TwoTower, items: ItemTable) -> np.ndarray:
  """Embeddings [N, D] of every item; the ID path is used for warm items only."""
  fn = _model_fn(model, TwoTower.embed_catalog)
  return np.asarray(fn(items.features(np.arange(len(items.warm)))))


def user_embeddings(model: TwoTower, histories: UserHistories, users: np.ndarray,
                    batch_size: int = 512) -> np.ndarray:
  history, mask = histories.latest(users)
  fn = _model_fn(model, TwoTower.embed_users)
  return _batched(fn, {"history": history, "history_mask": mask}, batch_size)


def embeddings(model: TwoTower, items: ItemTable, histories: UserHistories,
               users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Every item's embedding [N, D] and `users`' embeddings [U, D] from their histories.

  Refreshes the model's item cache first: the user tower reads the history items'
  embeddings from it.
  """
  item_emb = item_embeddings(model, items)
  model.item_cache[...] = item_emb
  return item_emb, user_embeddings(model, histories, users)
