"""The training loop: jit on a device mesh, optax, Orbax checkpoints, logging.

`fit` is the one loop; `train` wires it to the two-tower model and its loss.
Self-supervised pretraining reuses `fit` with its own model and loss.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
from collections.abc import Callable
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
import optax
import tensorboardX
import tqdm
from flax import nnx

from mmrec import losses, parallel
from mmrec.checkpoint import Checkpointer
from mmrec.data import sources
from mmrec.data.pipeline import ItemTable, UserHistories, training_batches
from mmrec.data.schema import RecDataset
from mmrec.data.tokenizer import Tokenizer
from mmrec.models.towers import TwoTower

LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]


def learning_rate(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up, then cosine decay to zero at `cfg.steps`."""
  return optax.warmup_cosine_decay_schedule(
      0.0, cfg.learning_rate, cfg.warmup_steps, max(cfg.steps, cfg.warmup_steps + 1))


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """AdamW with the warm-up/cosine schedule and global-norm clipping."""
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                     optax.adamw(learning_rate(cfg), weight_decay=cfg.weight_decay))


@dataclasses.dataclass
class Refresh:
  """Non-trained state recomputed every `every` steps, before that step: `fn(model, inputs)`."""

  every: int
  fn: Callable[[nnx.Module, Any], None]
  inputs: Any


def fit(model: nnx.Module, loss_fn: LossFn, batches: grain.MapDataset,
        config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
        on_log: Callable[[int, dict], None] | None = None, refresh: Refresh | None = None) -> int:
  """Train `model` in place for `config.train.steps`, resuming from WORKDIR/checkpoints.

  `batches[step]` is the process-local batch of `step`. Returns the final step.
  """
  cfg = config.train
  workdir = pathlib.Path(workdir)
  mesh = parallel.make_mesh(config.mesh)
  lead = jax.process_index() == 0
  optimizer = nnx.Optimizer(model, make_optimizer(cfg), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  state_sharding = jax.tree.map(lambda _: parallel.replicated(mesh), state)
  state = jax.device_put(state, state_sharding)

  ckpt = Checkpointer(workdir / "checkpoints", every=cfg.checkpoint_every, keep=cfg.keep_checkpoints)
  start = 0
  if (restored := ckpt.restore(state)) is not None:
    start, state, _ = restored

  @functools.partial(jax.jit, donate_argnums=0, out_shardings=(state_sharding, None))
  def train_step(state, batch, key):
    model, optimizer = nnx.merge(graphdef, state)
    (_, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch, key)
    optimizer.update(model, grads)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return nnx.state((model, optimizer)), metrics

  @functools.partial(jax.jit, donate_argnums=0, out_shardings=state_sharding)
  def refresh_step(state, inputs):
    model, optimizer = nnx.merge(graphdef, state)
    refresh.fn(model, inputs)
    return nnx.state((model, optimizer))

  if refresh:
    refresh_inputs = jax.device_put(refresh.inputs, parallel.replicated(mesh))
  key = jax.random.key(config.seed)
  writer = tensorboardX.SummaryWriter(str(workdir / "tb")) if lead else None
  read = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)
  batch_iter = iter(batches[start:].to_iter_dataset(read))
  schedule = learning_rate(cfg)
  bar = tqdm.tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not lead,
                  desc=config.get("name", "train"), dynamic_ncols=True)
  tick, examples = time.perf_counter(), 0
  try:
    for step in bar:
      if refresh and step % refresh.every == 0:
        state = refresh_step(state, refresh_inputs)
      batch = parallel.shard_batch(next(batch_iter), mesh)
      state, metrics = train_step(state, batch, jax.random.fold_in(key, step))
      examples += cfg.batch_size
      done = step + 1
      ckpt.save(done, state, {"step": done}, force=done == cfg.steps)
      if done % cfg.log_every == 0 or done == cfg.steps:
        logged = {k: float(v) for k, v in jax.device_get(metrics).items()}
        logged["learning_rate"] = float(schedule(step))
        logged["examples_per_sec"] = examples / (time.perf_counter() - tick)
        tick, examples = time.perf_counter(), 0
        bar.set_postfix(loss=f"{logged['loss']:.3f}", ex_s=f"{logged['examples_per_sec']:.0f}")
        if writer:
          for k, v in logged.items():
            writer.add_scalar(f"train/{k}", v, done)
        if on_log:
          on_log(done, logged)
  finally:  # pending asynchronous saves complete even when the loop is interrupted
    ckpt.close()
    if writer:
      writer.close()
  nnx.update((model, optimizer), state)
  return max(start, cfg.steps)


def create_model(config: ml_collections.ConfigDict, data: RecDataset) -> TwoTower:
  return TwoTower(config.model, num_items=data.num_items, vocab_size=config.data.vocab_size,
                  max_text_len=config.data.max_text_len, history_len=config.data.history_len,
                  rngs=nnx.Rngs(config.seed))


def two_tower_loss(config: ml_collections.ConfigDict) -> LossFn:
  """Sampled softmax over the in-batch items, with ID dropout on warm items."""

  def loss_fn(model: TwoTower, batch: dict, key: jax.Array):
    keep = batch["warm"] & (jax.random.uniform(key, batch["warm"].shape) >= config.model.id_dropout)
    users = model.embed_users(batch)
    items = model.embed_items(batch, keep)
    return losses.sampled_softmax(users, items, batch["item"], batch["log_q"],
                                  temperature=config.train.temperature,
                                  logq_weight=config.train.logq_weight)

  return loss_fn


@dataclasses.dataclass
class Trained:
  model: TwoTower
  data: RecDataset
  items: ItemTable
  step: int


def prepare(config: ml_collections.ConfigDict, workdir: str | pathlib.Path
            ) -> tuple[TwoTower, RecDataset, ItemTable]:
  """The dataset (built on first use), its item table and a freshly initialised model."""
  data = sources.load(config.data, workdir)
  vocab_size = Tokenizer.load(data.tokenizer_path).vocab_size
  if vocab_size > config.data.vocab_size:
    raise ValueError(f"the dataset's tokenizer has {vocab_size} tokens, more than "
                     f"data.vocab_size={config.data.vocab_size}")
  return create_model(config, data), data, sources.item_table(data, config.data)


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
          on_log: Callable[[int, dict], None] | None = None) -> Trained:
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if jax.process_index() == 0:
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  model, data, items = prepare(config, workdir)
  mesh = parallel.make_mesh(config.mesh)
  local_batch = parallel.check_batch_size(config.train.batch_size, mesh)
  batches = training_batches(UserHistories(data.splits["train"], config.data.history_len), items,
                             batch_size=local_batch, seed=config.seed,
                             process_index=jax.process_index(), process_count=jax.process_count())
  refresh = Refresh(config.train.cache_refresh_every, TwoTower.refresh_item_cache,
                    items.features(np.arange(data.num_items)))
  step = fit(model, two_tower_loss(config), batches, config, workdir, on_log, refresh)
  return Trained(model, data, items, step)


def restore(workdir: str | pathlib.Path, config: ml_collections.ConfigDict) -> Trained:
  """The two-tower trained in `workdir` with `config`, at its latest checkpoint."""
  workdir = pathlib.Path(workdir)
  model, data, items = prepare(config, workdir)
  optimizer = nnx.Optimizer(model, make_optimizer(config.train), wrt=nnx.Param)
  state = nnx.state((model, optimizer))
  ckpt = Checkpointer(workdir / "checkpoints", every=1, keep=config.train.keep_checkpoints)
  restored = ckpt.restore(state)
  ckpt.close()
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'}: train first")
  step, state, _ = restored
  nnx.update((model, optimizer), state)
  return Trained(model, data, items, step)
