"""Exports what `mmrec.serving.explain` needs to explain recommendations (docs/bundle.md).

Two optional parts, both keyed by the model's item index (the rows of
`user_tower_items.npy`), so adding and removing bundle items carries them over:

- the linear profile tower in closed form (`model.user.kind="profile"`,
  `mlp_dim=0`): the user before normalisation is
  `sum_h (item[j_h] + v_h @ map) / sqrt(n) + prior`, which numpy evaluates and
  splits exactly over the history items;
- the modality split of every item embedding: exact Shapley values of the
  text, image and ID inputs (2^G item-tower passes for G modalities), so that
  `v = base + sum_m part_m` and a score `u . v` splits the same way.
"""

from __future__ import annotations

import io
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mmrec.data.pipeline import ItemTable
from mmrec.models.towers import ENCODED_KEYS, ItemTower, ProfileTower, TwoTower
from mmrec.retrieval.user_tower import ITEMS_FILE

USER_FILES = {"item": "explain_user_item.npy", "map": "explain_user_map.npy",
              "prior": "explain_user_prior.npy"}
PARTS_FILE, BASE_FILE = "explain_modality_parts.npy", "explain_modality_base.npy"
GROUPS = {"text": ("bag", "text"), "image": ("image",), "id": ("id",)}  # modality -> parts
_CHUNK = 512


def export_explanations(model: TwoTower, items: ItemTable, embeddings: np.ndarray,
                        item_ids: np.ndarray, history_len: int) -> tuple[dict, dict[str, bytes]]:
  """(manifest description, files) of the explanation parts of `model`.

  `embeddings`: the bundle's item embeddings [N, D] (rows = the model's items);
  the modality parts are made to sum to them exactly.
  """
  files = {ITEMS_FILE: _npy(np.asarray(item_ids, np.str_))}
  description = {"items_file": ITEMS_FILE}
  linear = linear_profile_arrays(model)
  if linear is not None:
    files.update({USER_FILES[k]: _npy(v) for k, v in linear.items()})
    description["user_tower"] = {"kind": "linear_profile", "history_len": int(history_len),
                                 "normalize": bool(model.user_tower.normalize),
                                 "item_bias": bool(model.user_tower.bias),
                                 **{f"{k}_file": name for k, name in USER_FILES.items()}}
  names, base, parts = modality_shapley(model.item_tower, items, embeddings)
  files[PARTS_FILE], files[BASE_FILE] = _npy(parts), _npy(base)
  description["modalities"] = {
      "method": "shapley", "names": names, "derived": names[0],
      "parts_file": PARTS_FILE, "base_file": BASE_FILE,
      "absent": {"text": "catalog mean", "image": "catalog mean",
                 "id": "zero (the cold-item input)"}}
  description["files"] = sorted(files)
  return description, files


def linear_profile_arrays(model: TwoTower) -> dict[str, np.ndarray] | None:
  """The linear profile tower as arrays (None for any other user tower):
  item [M + 1, D'] (row M: items the model never saw), map [D, D'], prior [D'], with
  D' = D - 1 under `item_bias` (the user's last coordinate is then 1)."""
  tower = model.user_tower
  if not isinstance(tower, ProfileTower) or tower.mlp_in is not None:
    return None

  def host(x):
    return np.asarray(jax.device_get(x[...]), np.float64)

  proj, from_items = host(tower.proj.kernel), host(tower.from_items.kernel)
  proj_bias = host(tower.proj.bias) if tower.proj.bias is not None else 0.0
  item_bias = host(tower.from_items.bias) if tower.from_items.bias is not None else 0.0
  num_items = model.item_cache[...].shape[0]
  ids = (np.asarray(jax.device_get(tower.ids(jnp.arange(num_items + 1))), np.float64)
         if tower.ids is not None else np.zeros((num_items + 1, from_items.shape[1])))
  return {"item": ((ids + item_bias) @ proj).astype(np.float32),
          "map": (from_items @ proj).astype(np.float32),
          "prior": (host(tower.prior) @ proj + proj_bias).astype(np.float32)}


def modality_shapley(tower: ItemTower, items: ItemTable, embeddings: np.ndarray
                     ) -> tuple[list[str], np.ndarray, np.ndarray]:
  """(modality names, base [D] float32, parts [N, G - 1, D] float16).

  A modality left out of a coalition gets its catalog mean (ID: zero, the input
  cold items get). The parts of names[1:] are stored; names[0]'s is the rest,
  `v - base - sum(stored)`, so the split always sums to the bundle embedding.
  """
  graphdef, state = nnx.split(tower)
  n = len(embeddings)
  features = items.features(np.arange(n))
  probe = _parts(graphdef, state, _chunk(features, 0, min(n, _CHUNK)))
  names = [g for g, members in GROUPS.items() if any(m in probe for m in members)]
  sums = {name: 0.0 for name in probe}
  for start in range(0, n, _CHUNK):
    for name, value in _parts(graphdef, state, _chunk(features, start, _CHUNK)).items():
      real = min(_CHUNK, n - start)  # padding rows left out of the mean
      sums[name] = sums[name] + np.asarray(value, np.float64)[:real].sum(0)
  absent = {name: jnp.zeros_like(jnp.asarray(total)) if name == "id"
            else jnp.asarray(total / n, jnp.float32) for name, total in sums.items()}
  order = [p for p in ("bag", "text", "image", "id") if p in probe]  # fuse's order (jit sorts)
  chunks = [_shapley(graphdef, state, _chunk(features, s, _CHUNK), absent, tuple(order),
                     tuple(names)) for s in range(0, n, _CHUNK)]
  base = np.asarray(chunks[0][0][0], np.float32)
  phi = np.concatenate([np.asarray(c[1]) for c in chunks])[:n]  # [N, G, D]
  stored = phi[:, 1:].astype(np.float16)
  return names, base, stored


def _chunk(features: dict, start: int, size: int) -> dict:
  """Rows start:start+size of every feature, zero-padded to `size` rows (one compiled shape)."""
  def take(a):
    part = a[start:start + size]
    return np.concatenate([part, np.zeros((size - len(part), *a.shape[1:]), a.dtype)])
  return {k: take(v) for k, v in features.items()}


def _inputs(batch):
  encoded = {part: batch[key] for part, key in ENCODED_KEYS.items() if key in batch}
  return batch["item"], batch["tokens"], batch["image"], batch["warm"], encoded


@jax.jit(static_argnums=0)
def _parts(graphdef, state, batch):
  return nnx.merge(graphdef, state).modality_parts(*_inputs(batch))


def _shapley_weight(size: int, players: int) -> float:
  return math.factorial(size) * math.factorial(players - size - 1) / math.factorial(players)


def _shapley_impl(graphdef, state, batch, absent, order, names):
  """Shapley values [B, G, D] of the modality groups `names`, and f(empty) [B, D]."""
  tower = nnx.merge(graphdef, state)
  real = tower.modality_parts(*_inputs(batch))
  size = batch["item"].shape[0]

  def embed(coalition):
    on = {part for g in coalition for part in GROUPS[g]}
    return tower.fuse([real[p] if p in on else jnp.broadcast_to(absent[p], real[p].shape)
                       for p in order])

  value = {c: embed(c) for r in range(len(names) + 1)
           for c in itertools.combinations(names, r)}
  phi = []
  for g in names:
    others = [x for x in names if x != g]
    total = jnp.zeros((size, value[()].shape[-1]))
    for r in range(len(others) + 1):
      for c in itertools.combinations(others, r):
        with_g = tuple(x for x in names if x in c or x == g)
        total += _shapley_weight(r, len(names)) * (value[with_g] - value[c])
    phi.append(total)
  return value[()], jnp.stack(phi, axis=1)


_shapley = jax.jit(_shapley_impl, static_argnums=(0, 4, 5))


def _npy(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  np.save(buffer, array, allow_pickle=False)
  return buffer.getvalue()
