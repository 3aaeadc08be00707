"""Device mesh from the config and placement of host batches on it."""

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data",)


def make_mesh(cfg: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """A mesh with a `data` axis; `cfg.data == -1` takes every device."""
  n = jax.device_count()
  data = n if cfg.data == -1 else cfg.data
  if data < 1 or n % data:
    raise ValueError(f"mesh.data={cfg.data} does not divide the {n} available devices")
  return jax.make_mesh((data,), BATCH_AXES, axis_types=(AxisType.Auto,),
                       devices=jax.devices()[:data])


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def check_batch_size(global_batch: int, mesh: jax.sharding.Mesh) -> int:
  """The per-process batch size for a global batch split over the mesh's batch axes."""
  shards = int(np.prod([mesh.shape[a] for a in BATCH_AXES]))
  if global_batch % shards or global_batch % jax.process_count():
    raise ValueError(f"train.batch_size={global_batch} must be divisible by the {shards} "
                     f"batch shards and {jax.process_count()} processes")
  return global_batch // jax.process_count()


def shard_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Assemble a global batch from each process's local rows, split over the batch axes."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
