"""The jitted train step shared by `mmrec.training.loop.fit` and `mmrec.training.compile`
(ahead-of-time).

One step: forward and backward (in `config.train.compute_dtype`, over
`config.train.grad_accum_steps` micro-batches), one optimizer update of the
float32 master weights.

Mixed precision (`compute_dtype: bfloat16`): float parameters are cast to
bf16 inside the loss (so gradients flow back to the f32 parameters through
the cast) and every Flax layer computes in bf16 (its `dtype` attribute is
set on the step's private copy of the model). Losses should upcast their
logits to float32 (`two_tower_loss` does).

Gradient accumulation: the global batch is split into k interleaved
micro-batches (rows j, j+k, ...: each device keeps its own rows, no
communication), gradients are summed in a `lax.scan` and averaged, and the
optimizer steps once. With in-batch negatives, each micro-batch's softmax
sees only B/k candidates, so the objective is that of batch B/k, not B.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from mmrec.training import mesh as mesh_lib

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(cfg: ml_collections.ConfigDict):
  name = cfg.get("compute_dtype", "float32")
  if name not in DTYPES:
    raise ValueError(f"train.compute_dtype={name!r}: choose from {list(DTYPES)}")
  return DTYPES[name]


def set_compute_dtype(model: nnx.Module, dtype) -> None:
  """Every Flax layer of `model` (those with `dtype` and `param_dtype`) computes in `dtype`."""
  for _, module in nnx.iter_modules(model):
    if hasattr(module, "dtype") and hasattr(module, "param_dtype"):
      module.dtype = dtype


def _cast_floats(tree: Any, dtype) -> Any:
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                      tree)


def split_micro_batches(x: jax.Array, k: int) -> jax.Array:
  """[B, ...] -> [k, B/k, ...]; micro-batch j holds rows j, j+k, j+2k, ..."""
  if x.shape[0] % k:
    raise ValueError(f"batch of {x.shape[0]} does not split into train.grad_accum_steps={k}")
  return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)


def make_grad_fn(loss_fn: Callable, dtype) -> Callable:
  """(model graphdef, params, rest, batch, key) -> ((loss, (metrics, rest')), grads wrt params)."""

  def loss_of_params(params, rest, graphdef, batch, key):
    model = nnx.merge(graphdef, _cast_floats(params, dtype) if dtype != jnp.float32 else params,
                      rest)
    if dtype != jnp.float32:
      set_compute_dtype(model, dtype)
    loss, metrics = loss_fn(model, batch, key)
    return loss.astype(jnp.float32), (metrics, nnx.state(model, nnx.Not(nnx.Param)))

  return jax.value_and_grad(loss_of_params, has_aux=True)


def make_train_step(graphdef: nnx.GraphDef, loss_fn: Callable, config: ml_collections.ConfigDict,
                    mesh: jax.sharding.Mesh, state_sharding: Any) -> Callable:
  """jit(state, batch, key) -> (state, metrics) for the state of `nnx.split((model, optimizer))`."""
  cfg = config.train
  dtype = compute_dtype(cfg)
  accum = int(cfg.get("grad_accum_steps", 1))
  if accum < 1:
    raise ValueError(f"train.grad_accum_steps={accum} must be >= 1")
  grad_fn = make_grad_fn(loss_fn, dtype)

  def gradients(model: nnx.Module, batch: dict, key: jax.Array):
    model_def, params, rest = nnx.split(model, nnx.Param, ...)
    if accum == 1:
      (_, (metrics, rest)), grads = grad_fn(params, rest, model_def, batch, key)
    else:
      micro = jax.tree.map(lambda x: split_micro_batches(x, accum), batch)

      def body(carry, xs):
        grads_sum, rest = carry
        mb, j = xs
        mb = jax.tree.map(mesh_lib.constrain_batch, mb)
        (_, (metrics, rest)), g = grad_fn(params, rest, model_def, mb, jax.random.fold_in(key, j))
        return (jax.tree.map(jnp.add, grads_sum, g), rest), metrics

      zeros = jax.tree.map(jnp.zeros_like, params)
      (grads, rest), metrics = jax.lax.scan(body, (zeros, rest), (micro, jnp.arange(accum)))
      grads = jax.tree.map(lambda g: g / accum, grads)
      metrics = jax.tree.map(lambda m: m.mean(0), metrics)
    nnx.update(model, rest)
    return grads, metrics

  def train_step(state, batch, key):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      model, optimizer = nnx.merge(graphdef, state)
      grads, metrics = gradients(model, batch, key)
      optimizer.update(model, grads)
      metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
      return nnx.state((model, optimizer)), metrics

  return jax.jit(train_step, donate_argnums=0, out_shardings=(state_sharding, None))
