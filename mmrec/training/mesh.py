"""Device mesh, parameter sharding by logical-axis rules, and batch placement.

The mesh has three axes: `data` (pure data parallelism; across slices, the
DCN axis), `fsdp` (data parallelism with parameters and optimizer state
sharded) and `model` (tensor parallelism). The batch is split over data and
fsdp. Parameters get their shardings in two steps, as in MaxText:

  config.sharding.param_rules:   regex on the state path -> logical axes,
                                 e.g. ("ids/table/embedding$", ("vocab", "embed"))
  config.sharding.logical_rules: logical axis -> mesh axes,
                                 e.g. ("vocab", ("fsdp", "model")), ("embed", "fsdp")

The first matching regex wins; state that no rule matches is replicated.
Optimizer state (AdamW mu/nu) carries its parameter's path as a suffix, so
the same rules shard it like its parameter.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")
log = logging.getLogger(__name__)


def mesh_shape(cfg: ml_collections.ConfigDict, num_devices: int) -> tuple[int, int, int]:
  """(data, fsdp, model) sizes; at most one is -1 (the rest of the devices); absent axes are 1."""
  sizes = [int(cfg.get(axis, 1)) for axis in AXES]
  if sizes.count(-1) > 1:
    raise ValueError(f"mesh: only one of {AXES} may be -1, got {dict(zip(AXES, sizes))}")
  known = int(np.prod([s for s in sizes if s != -1]))
  if any(s == 0 or s < -1 for s in sizes) or num_devices % known:
    raise ValueError(f"mesh {dict(zip(AXES, sizes))} does not divide the {num_devices} devices")
  sizes = [num_devices // known if s == -1 else s for s in sizes]
  if np.prod(sizes) > num_devices:
    raise ValueError(f"mesh {dict(zip(AXES, sizes))} needs {np.prod(sizes)} devices, "
                     f"only {num_devices} are available")
  return tuple(sizes)


def make_mesh(cfg: ml_collections.ConfigDict, devices: Sequence[Any] | None = None
              ) -> jax.sharding.Mesh:
  """The (data, fsdp, model) mesh over `devices` (default: all).

  `cfg.slices > 1` builds a hybrid mesh for multi-slice TPUs: the data axis
  spans the slices over DCN, fsdp and model stay inside a slice (ICI).
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(cfg, len(devices))
  slices = int(cfg.get("slices", 1))
  axis_types = (AxisType.Auto,) * len(AXES)
  if slices == 1:
    return jax.make_mesh(shape, AXES, axis_types=axis_types, devices=devices[:int(np.prod(shape))])
  if shape[0] % slices or np.prod(shape) != len(devices):
    raise ValueError(f"mesh.slices={slices} must divide mesh.data={shape[0]}, and a multi-slice "
                     f"mesh must use all {len(devices)} devices (mesh {shape})")
  by_slice = not hasattr(devices[0], "slice_index") or devices[0].slice_index is None
  grid = mesh_utils.create_hybrid_device_mesh(
      (shape[0] // slices, *shape[1:]), (slices, 1, 1), devices, process_is_granule=by_slice,
      allow_split_physical_axes=True)
  return jax.sharding.Mesh(grid, AXES, axis_types=axis_types)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_spec(mesh: jax.sharding.Mesh | jax.sharding.AbstractMesh) -> P:
  return P(tuple(a for a in BATCH_AXES if a in mesh.axis_names))


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (example) dimension split over the data and fsdp axes."""
  return NamedSharding(mesh, batch_spec(mesh))


def batch_shards(mesh: jax.sharding.Mesh) -> int:
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES if a in mesh.shape]))


def check_batch_size(global_batch: int, mesh: jax.sharding.Mesh) -> int:
  """The per-process batch size for a global batch split over the mesh's batch axes."""
  shards = batch_shards(mesh)
  if global_batch % shards or global_batch % jax.process_count():
    raise ValueError(f"train.batch_size={global_batch} must be divisible by the {shards} "
                     f"batch shards and {jax.process_count()} processes")
  return global_batch // jax.process_count()


def shard_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Assemble a global batch from each process's local rows, split over the batch axes."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def constrain_batch(x: jax.Array) -> jax.Array:
  """Activation constraint: x's leading dim split over the batch axes of the current mesh.

  A no-op outside a mesh context (see `jax.sharding.use_abstract_mesh`) or when
  the leading dim does not divide.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or not x.ndim:
    return x
  spec = batch_spec(mesh)
  shards = int(np.prod([mesh.shape[a] for a in spec[0]]))
  if x.shape[0] % shards:
    return x
  return jax.lax.with_sharding_constraint(x, P(spec[0], *([None] * (x.ndim - 1))))


# --- parameter sharding by logical-axis rules ---------------------------------------------------

def path_str(path: tuple) -> str:
  """'0/item_tower/ids/table/embedding' from a pytree key path (nnx Variable `.value` dropped)."""
  parts = []
  for key in path:
    if isinstance(key, jax.tree_util.GetAttrKey) and key.name in ("value", "raw_value"):
      continue
    parts.append(str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key)))))
  return "/".join(parts)


def _as_axes(value) -> tuple[str, ...]:
  if value is None:
    return ()
  return (value,) if isinstance(value, str) else tuple(value)


class ShardingRules:
  """Compiled `config.sharding`: param path regex -> logical axes -> mesh axes."""

  def __init__(self, cfg: ml_collections.ConfigDict | None):
    cfg = cfg or {}
    self.param_rules = [(re.compile(pattern), tuple(axes))
                        for pattern, axes in cfg.get("param_rules", ())]
    self.logical = {name: _as_axes(axes) for name, axes in cfg.get("logical_rules", ())}

  def logical_axes(self, path: str, ndim: int) -> tuple | None:
    for pattern, axes in self.param_rules:
      if pattern.search(path):
        if len(axes) != ndim:
          raise ValueError(f"sharding.param_rules: {pattern.pattern!r} gives {len(axes)} axes "
                           f"{axes} to {path!r}, which has {ndim} dimensions")
        return axes
    return None

  def spec(self, logical: tuple, shape: tuple[int, ...], mesh, fallbacks: list | None = None,
           path: str = "") -> P:
    """PartitionSpec for `shape`; a mesh axis already used, or one whose size does not divide
    the dimension, is dropped (that dimension falls back to replication on it)."""
    used, spec = set(), []
    for dim, name in zip(shape, logical):
      keep = []
      for axis in self.logical.get(name, ()) if name else ():
        if axis not in mesh.shape:
          raise ValueError(f"sharding.logical_rules: {name!r} -> unknown mesh axis {axis!r}")
        size = mesh.shape[axis]
        if size == 1 or axis in used:
          continue
        if dim % (int(np.prod([mesh.shape[a] for a in keep])) * size):
          if fallbacks is not None:
            fallbacks.append(f"{path} dim {dim} ({name}) not divisible by {axis}={size}")
          continue
        keep.append(axis)
        used.add(axis)
      spec.append(tuple(keep) if len(keep) > 1 else (keep[0] if keep else None))
    return P(*spec)


def state_shardings(state: Any, mesh: jax.sharding.Mesh,
                    sharding_cfg: ml_collections.ConfigDict | None) -> Any:
  """A NamedSharding for every leaf of `state` (a pytree of arrays or ShapeDtypeStructs)."""
  rules, fallbacks = ShardingRules(sharding_cfg), []

  def one(path, leaf):
    shape = tuple(getattr(leaf, "shape", ()))
    name = path_str(path)
    logical = rules.logical_axes(name, len(shape)) if shape else None
    if logical is None:
      return replicated(mesh)
    return NamedSharding(mesh, rules.spec(logical, shape, mesh, fallbacks, name))

  shardings = jax.tree.map_with_path(one, state)
  if fallbacks:
    log.warning("%d sharded dimensions fell back to replication on a mesh axis, e.g. %s",
                len(fallbacks), "; ".join(fallbacks[:3]))
  return shardings


def describe(shardings: Any, state: Any) -> dict[str, str]:
  """{path: 'shape -> spec'} of the sharded leaves, for logs and docs."""
  out = {}
  for (path, s), leaf in zip(jax.tree_util.tree_flatten_with_path(shardings)[0],
                             jax.tree.leaves(state)):
    if any(p is not None for p in s.spec):
      out[path_str(path)] = f"{tuple(leaf.shape)} -> {s.spec}"
  return out
