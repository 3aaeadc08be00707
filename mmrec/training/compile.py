"""Ahead-of-time compilation of the real train step for a TPU topology, on a CPU machine.

`mmrec compile --config tpu:v5e_16` builds the model abstractly
(`nnx.eval_shape`, no dataset, no weights), shards its state over a mesh of
the topology's compile-only TPU devices (libtpu's topology description) and
lowers and compiles `mmrec.training.step.make_train_step`, the function `fit`
runs. It reports XLA's per-chip memory (arguments + outputs - aliased + temps)
against the chip's HBM, FLOPs per step, the step time and the implied MFU.

Step time: XLA's TPU cost model (`cost_analysis()["optimal_seconds"]`) when
it gives one, else the roofline max(FLOPs / peak, bytes accessed / HBM
bandwidth); XLA counts a loop body once, so both are scaled by the number of
gradient-accumulation micro-batches. MFU = FLOPs per chip / (step time x peak FLOP/s) with XLA's
FLOPs count of the whole step (forward, backward, optimizer), so it is an
upper bound that ignores input and host overheads.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mmrec.models.image import ImageEncoder
from mmrec.models.towers import ENCODED_KEYS, TwoTower
from mmrec.training import mesh as mesh_lib
from mmrec.training.objective import objective, two_tower_loss
from mmrec.training.optim import frozen_encoders, make_optimizer
from mmrec.training.step import make_train_step

GIB = 2 ** 30


def topology_devices(tpu: ml_collections.ConfigDict) -> list:
  """Compile-only TPU devices of `tpu.topology` (e.g. "v5e:4x4") and `tpu.num_slices`."""
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # other processes may hold libtpu
  from jax.experimental import topologies
  kwargs = dict(tpu.get("topology_kwargs", {}) or {})
  if tpu.get("num_slices", 1) > 1:
    kwargs["num_slices"] = tpu.num_slices
  try:
    desc = topologies.get_topology_desc(topology_name=tpu.topology, platform="tpu", **kwargs)
  except RuntimeError as e:
    raise RuntimeError(f"tpu.topology={tpu.topology!r}: no TPU topology description "
                       f"(is libtpu installed? pip install -e '.[tpu]'): {e}") from e
  return list(desc.devices)


def frozen_widths(config: ml_collections.ConfigDict) -> dict[str, int]:
  """Output width of each frozen encoder the item tower has (train.frozen_encoders)."""
  m = config.model
  widths = {}
  if "text" in frozen_encoders(config.train) and m.use_text:
    widths["text"] = m.text["width"]
  if "image" in frozen_encoders(config.train) and m.use_image:
    widths["image"] = nnx.eval_shape(lambda: ImageEncoder(m.image["channels"],
                                                          rngs=nnx.Rngs(0))).out_features
  return widths


def abstract_batch(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> dict:
  """ShapeDtypeStructs of one global training batch: the keys of pipeline.training_batches,
  or for `train.objective="profile"` those of pipeline.profile_batches plus the replicated
  catalog features of `config.compile.num_items` items (`batch["catalog"]`)."""
  b, d = config.train.batch_size, config.data
  encoded = frozen_widths(config)  # train.frozen_encoders' outputs

  def items(n: int, raw_image: bool) -> dict:
    return {"item": ((n,), jnp.int32), "tokens": ((n, d.max_text_len), jnp.int32),
            "image": ((n, d.image_size, d.image_size, 3) if raw_image else (n, 0), jnp.uint8),
            "warm": ((n,), jnp.bool_), "log_q": ((n,), jnp.float32),
            **{ENCODED_KEYS[part]: ((n, width), jnp.float32) for part, width in encoded.items()}}

  history = {"history": ((b, d.history_len), jnp.int32),
             "history_mask": ((b, d.history_len), jnp.bool_)}
  sharding = mesh_lib.batch_sharding(mesh)
  struct = lambda shapes, sh: {k: jax.ShapeDtypeStruct(s, t, sharding=sh)
                               for k, (s, t) in shapes.items()}
  if objective(config) == "profile":
    shapes = {**history, "targets": ((b, d.history_len), jnp.int32),
              "target_mask": ((b, d.history_len), jnp.bool_)}
    catalog = items(config.compile.num_items, raw_image="image" not in encoded)  # catalog_features
    # its compact bag (towers.compact_vocabulary): at most every id of the vocabulary
    catalog.update(bag_tokens=((config.compile.num_items, d.max_text_len), jnp.int32),
                   bag_vocab=((d.vocab_size,), jnp.int32))
    return {**struct(shapes, sharding), "catalog": struct(catalog, mesh_lib.replicated(mesh))}
  return struct({**history, **items(b, raw_image=True), "example": ((b,), jnp.int32)}, sharding)


def abstract_state(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
  """(graphdef, state of ShapeDtypeStructs, its shardings, parameter count): two-tower + optimizer."""

  def create():
    model = TwoTower(config.model, num_items=config.compile.num_items,
                     vocab_size=config.data.vocab_size, max_text_len=config.data.max_text_len,
                     history_len=config.data.history_len, rngs=nnx.Rngs(config.seed))
    return model, nnx.Optimizer(model, make_optimizer(config.train), wrt=nnx.Param)

  model, optimizer = nnx.eval_shape(create)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  graphdef, state = nnx.split((model, optimizer))
  shardings = mesh_lib.state_shardings(state, mesh, config.get("sharding"))
  state = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                       state, shardings)
  return graphdef, state, shardings, num_params


@dataclasses.dataclass
class Report:
  name: str
  topology: str
  chips: int
  mesh: dict
  batch_size: int
  params: int
  memory_gib: float  # per chip
  hbm_gib: float
  flops: float  # per chip per step
  step_seconds: float
  step_method: str
  mfu: float

  def lines(self) -> list[str]:
    fits = "fits" if self.memory_gib <= self.hbm_gib else "DOES NOT FIT"
    return [f"{self.name}: {self.topology}, {self.chips} chips, mesh {self.mesh}, "
            f"global batch {self.batch_size}, {self.params / 1e6:.1f}M parameters",
            f"  memory per chip: {self.memory_gib:.2f} GiB of {self.hbm_gib} GiB HBM ({fits})",
            f"  FLOPs per chip per step: {self.flops:.3e}",
            f"  step time: {self.step_seconds * 1e3:.2f} ms ({self.step_method}); "
            f"{self.batch_size / self.step_seconds:,.0f} examples/s",
            f"  implied MFU: {self.mfu:.1%}"]


def compile_train_step(config: ml_collections.ConfigDict, name: str = ""):
  """Lower and compile the train step for `config.tpu`; (compiled executable, Report)."""
  tpu = config.tpu
  devices = topology_devices(tpu)
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  graphdef, state, shardings, params = abstract_state(config, mesh)
  batch = abstract_batch(config, mesh)
  mesh_lib.check_batch_size(config.train.batch_size, mesh)
  key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=mesh_lib.replicated(mesh))
  step = make_train_step(graphdef, two_tower_loss(config), config, mesh, shardings)
  compiled = step.trace(state, batch, key).lower().compile()

  mem = compiled.memory_analysis()
  per_chip = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
              + mem.temp_size_in_bytes)
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  # XLA counts a loop body once: with k accumulation micro-batches (a lax.scan) the forward
  # and backward run k times per step, so scale by k (overcounts the optimizer update, small).
  k = int(config.train.get("grad_accum_steps", 1))
  flops, bytes_accessed = (k * float(cost.get(f, 0.0)) for f in ("flops", "bytes accessed"))
  peak, bandwidth = tpu.peak_tflops * 1e12, tpu.hbm_gbps * 1e9
  if cost.get("optimal_seconds", 0.0) > 0:
    seconds, method = k * float(cost["optimal_seconds"]), "XLA cost model"
  else:
    seconds, method = max(flops / peak, bytes_accessed / bandwidth), "roofline"
  if k > 1:
    method += f", x{k} micro-batches"
  report = Report(name=name or config.get("name", ""), topology=tpu.topology
                  + (f" x{tpu.num_slices}" if tpu.get("num_slices", 1) > 1 else ""),
                  chips=len(devices), mesh=dict(mesh.shape), batch_size=config.train.batch_size,
                  params=params, memory_gib=per_chip / GIB, hbm_gib=tpu.hbm_gib, flops=flops,
                  step_seconds=seconds, step_method=method,
                  mfu=flops / (seconds * peak) if seconds else 0.0)
  return compiled, report


def markdown_row(r: Report) -> str:
  return (f"| {r.name} | {r.topology} | {r.chips} | {r.mesh['data']}x{r.mesh['fsdp']}x"
          f"{r.mesh['model']} | {r.batch_size} | {r.params / 1e6:.0f}M | "
          f"{r.memory_gib:.2f} / {r.hbm_gib} | {r.flops:.2e} | {r.step_seconds * 1e3:.1f} | "
          f"{r.mfu:.0%} |")


MARKDOWN_HEADER = ("| config | topology | chips | mesh d x f x m | global batch | params | "
                   "GiB per chip / HBM | FLOPs per chip | step ms | MFU |\n"
                   "|---|---|---|---|---|---|---|---|---|---|")
