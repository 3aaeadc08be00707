"""The training loop: jit on a device mesh, optax, Orbax checkpoints, logging.

`fit` is the one loop; `train` wires it to the two-tower model and its loss.
Self-supervised pretraining reuses `fit` with its own model and loss.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from flax import nnx

from mmrec import losses, parallel
from mmrec.checkpoint import CheckpointError, Checkpointer, one_line
from mmrec.data import sources
from mmrec.data.pipeline import ItemTable, UserHistories, profile_batches, training_batches
from mmrec.data.schema import RecDataset
from mmrec.files import copy_atomic, write_text_atomic
from mmrec.models.towers import ENCODED_KEYS, TwoTower, encode_all
from mmrec.train_step import make_train_step

LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]


def learning_rate(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up, then cosine decay to zero at `cfg.steps`."""
  return optax.warmup_cosine_decay_schedule(
      0.0, cfg.learning_rate, cfg.warmup_steps, max(cfg.steps, cfg.warmup_steps + 1))


ENCODER_MODULES = ("text", "image")  # attribute names of the content encoders (item tower, pretrain)


def frozen_encoders(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
  """`cfg.frozen_encoders`, checked: encoders kept fixed for the whole run."""
  frozen = tuple(cfg.get("frozen_encoders", ()))
  if unknown := sorted(set(frozen) - set(ENCODER_MODULES)):
    raise ValueError(f"train.frozen_encoders: unknown {unknown}; choose from {ENCODER_MODULES}")
  return frozen


def param_labels(params: Any, frozen: tuple[str, ...] = (), encoders: bool = True) -> Any:
  """The optimizer group of each parameter, by the modules on its path: "frozen" under a
  module named in `frozen`, else "encoder" under one in ENCODER_MODULES (if `encoders`),
  else "other"."""

  def label(path, _):
    names = {getattr(k, "key", getattr(k, "name", None)) for k in path}
    if names & set(frozen):
      return "frozen"
    return "encoder" if encoders and names & set(ENCODER_MODULES) else "other"

  return jax.tree_util.tree_map_with_path(label, params)


def after_steps(inner: optax.GradientTransformation, steps: int) -> optax.GradientTransformation:
  """`inner`, but zero updates and an untouched inner state for the first `steps` steps."""

  def init(params):
    return {"count": jnp.zeros([], jnp.int32), "inner": inner.init(params)}

  def update(updates, state, params=None):
    new_updates, new_inner = inner.update(updates, state["inner"], params)
    active = state["count"] >= steps
    keep = lambda new, old: jnp.where(active, new, old)
    new_updates = jax.tree.map(lambda u: keep(u, jnp.zeros_like(u)), new_updates)
    new_inner = jax.tree.map(keep, new_inner, state["inner"])
    return new_updates, {"count": state["count"] + 1, "inner": new_inner}

  return optax.GradientTransformation(init, update)


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """AdamW with the warm-up/cosine schedule and global-norm clipping.

  With `encoder_lr_scale` != 1 or `freeze_encoders_steps` > 0, the encoders
  (ENCODER_MODULES) get their own AdamW: frozen (exactly) for the first
  `freeze_encoders_steps` steps, then warmed up to `encoder_lr_scale` x the
  learning rate and decayed to zero at `steps`; each group is clipped to
  `grad_clip` separately. Encoders in `frozen_encoders` are never updated
  (no weight decay, no optimizer state).
  """
  scale, frozen_steps = cfg.get("encoder_lr_scale", 1.0), cfg.get("freeze_encoders_steps", 0)
  if scale < 0 or frozen_steps < 0:
    raise ValueError(f"train.encoder_lr_scale={scale} and train.freeze_encoders_steps="
                     f"{frozen_steps} must be >= 0")
  frozen = frozen_encoders(cfg)

  def adamw(schedule: optax.Schedule) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                       optax.adamw(schedule, weight_decay=cfg.weight_decay))

  groups = {"other": adamw(learning_rate(cfg))}
  if scale != 1.0 or frozen_steps:
    encoder = adamw(optax.warmup_cosine_decay_schedule(
        0.0, scale * cfg.learning_rate, cfg.warmup_steps,
        max(cfg.steps - frozen_steps, cfg.warmup_steps + 1)))
    groups["encoder"] = after_steps(encoder, frozen_steps) if frozen_steps else encoder
  if frozen:
    groups["frozen"] = optax.set_to_zero()
  if len(groups) == 1:
    return groups["other"]
  return optax.multi_transform(
      groups, functools.partial(param_labels, frozen=frozen, encoders="encoder" in groups))


@dataclasses.dataclass
class Validation:
  """Early stopping: `fn(model)` -> the validation metric (higher is better), run every
  `every` steps and at the end; training stops after `patience` runs without a new best.
  The best step's checkpoint is kept (WORKDIR/best.json names it) for `restore`."""

  every: int
  fn: Callable[[nnx.Module], float]
  patience: int = 0  # 0: never stop early
  name: str = "valid/recall@20"


@dataclasses.dataclass
class Refresh:
  """Non-trained state recomputed every `every` steps, before that step: `fn(model, inputs)`."""

  every: int
  fn: Callable[[nnx.Module, Any], None]
  inputs: Any


def fit(model: nnx.Module, loss_fn: LossFn, batches: grain.MapDataset,
        config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
        on_log: Callable[[int, dict], None] | None = None, refresh: Refresh | None = None,
        constants: dict | None = None, validation: Validation | None = None) -> int:
  """Train `model` in place for `config.train.steps`, resuming from WORKDIR/checkpoints.

  `batches[step]` is the process-local batch of `step`; `constants` (e.g. the whole
  catalog's features) are put on the devices once, replicated, and passed to the loss
  as `batch["catalog"]`. With `validation`, the model is left at its best step. Returns
  the step the model is at.
  """
  cfg = config.train
  workdir = pathlib.Path(workdir)
  mesh = parallel.make_mesh(config.mesh)
  lead = jax.process_index() == 0
  optimizer = nnx.Optimizer(model, make_optimizer(cfg), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  state_sharding = parallel.state_shardings(state, mesh, config.get("sharding"))
  state = jax.device_put(state, state_sharding)

  start, best = 0, read_best(workdir)
  ckpt = Checkpointer(workdir / "checkpoints", every=cfg.checkpoint_every,
                      keep=cfg.keep_checkpoints, keep_step=best and best["step"])
  if (restored := ckpt.restore(state)) is not None:  # the newest good step
    start, state, _ = restored
  if best and best["step"] > start:  # a damaged step was skipped: that validation is redone
    best = ckpt.best.step = None
  if constants is not None:
    constants = jax.device_put(constants, parallel.replicated(mesh))

  train_step = make_train_step(graphdef, loss_fn, config, mesh, state_sharding)

  @functools.partial(jax.jit, donate_argnums=0, out_shardings=state_sharding)
  def refresh_step(state, inputs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      model, optimizer = nnx.merge(graphdef, state)
      refresh.fn(model, inputs)
      return nnx.state((model, optimizer))

  if refresh:
    refresh_inputs = jax.device_put(refresh.inputs, parallel.replicated(mesh))
  key = jax.random.key(config.seed)
  from mmrec.scalar_log import ScalarLog  # tensorboardX imports torch (seconds): only
  writer = ScalarLog(workdir / "tb") if lead else None  # commands that train pay for it
  read = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)
  batch_iter = iter(batches[start:].to_iter_dataset(read))
  schedule = learning_rate(cfg)
  bar = tqdm.tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not lead,
                  desc=config.get("name", "train"), dynamic_ncols=True)
  tick, examples = time.perf_counter(), 0
  done, stale = start, 0
  try:
    for step in bar:
      if refresh and step % refresh.every == 0:
        state = refresh_step(state, refresh_inputs)
      batch = parallel.shard_batch(next(batch_iter), mesh)
      if constants is not None:
        batch["catalog"] = constants
      state, metrics = train_step(state, batch, jax.random.fold_in(key, step))
      examples += cfg.batch_size
      done = step + 1
      improved = False
      if validation and (done % validation.every == 0 or done == cfg.steps):
        nnx.update((model, optimizer), state)
        value = float(validation.fn(model))
        improved = best is None or value > best["value"]
        stale = 0 if improved else stale + 1
        if improved:
          best = {"step": done, "value": value, "metric": validation.name}
        if writer:
          writer.write(done, {validation.name: value})
        bar.set_postfix(valid=f"{value:.4f}", best=f"{best['value']:.4f}@{best['step']}")
      stop = bool(validation and validation.patience and stale >= validation.patience)
      # the best step is saved (and kept: keep_best) before best.json names it
      ckpt.save(done, state, {"step": done}, force=done == cfg.steps or stop, best=improved)
      if improved and lead:
        ckpt.wait()
        write_best(workdir, best)
      if done % cfg.log_every == 0 or done == cfg.steps:
        logged = {k: float(v) for k, v in jax.device_get(metrics).items()}
        logged["learning_rate"] = float(schedule(step))
        logged["examples_per_sec"] = examples / (time.perf_counter() - tick)
        tick, examples = time.perf_counter(), 0
        bar.set_postfix(loss=f"{logged['loss']:.3f}", ex_s=f"{logged['examples_per_sec']:.0f}")
        if writer:  # on disk before the next step: a killed run keeps what it logged
          writer.write(done, {f"train/{k}": v for k, v in logged.items()})
        if on_log:
          on_log(done, logged)
      if stop:
        print(f"early stop at step {done}: {validation.name} has not improved for "
              f"{validation.patience} validations (best {best['value']:.4f} at {best['step']})")
        break
    if validation and best and best["step"] != done:  # leave the model at its best step
      # (the newest good step instead, with a warning, if the best one is damaged)
      done, state, _ = ckpt.restore(state, step=best["step"])
  finally:  # pending asynchronous saves complete even when the loop is interrupted
    ckpt.close()
    if writer:
      writer.close()
  nnx.update((model, optimizer), state)
  return done


BEST_FILE = "best.json"


def read_best(workdir: str | pathlib.Path) -> dict | None:
  """WORKDIR/best.json: the step with the best validation metric, if validated. A damaged
  file is ignored with a warning (the latest good step is used instead)."""
  path = pathlib.Path(workdir) / BEST_FILE
  if not path.exists():
    return None
  try:
    best = json.loads(path.read_text())
    if not (isinstance(best, dict) and isinstance(best.get("step"), int)
            and isinstance(best.get("value"), (int, float))):
      raise ValueError('expected {"step": INT, "value": NUMBER, ...}')
  except (ValueError, UnicodeDecodeError) as e:
    logging.getLogger(__name__).warning("ignoring %s, which is damaged (%s): using the latest "
                                        "good checkpoint", path, one_line(e))
    return None
  return best


def write_best(workdir: str | pathlib.Path, best: dict) -> None:
  write_text_atomic(pathlib.Path(workdir) / BEST_FILE, json.dumps(best))


def create_model(config: ml_collections.ConfigDict, data: RecDataset) -> TwoTower:
  return TwoTower(config.model, num_items=data.num_items, vocab_size=config.data.vocab_size,
                  max_text_len=config.data.max_text_len, history_len=config.data.history_len,
                  rngs=nnx.Rngs(config.seed))


OBJECTIVES = ("next_item", "profile")


def objective(config: ml_collections.ConfigDict) -> str:
  name = config.train.get("objective", "next_item")
  if name not in OBJECTIVES:
    raise ValueError(f"train.objective={name!r}: choose from {OBJECTIVES}")
  return name


def _id_keep(key: jax.Array, warm: jax.Array, id_dropout: float) -> jax.Array:
  return warm & (jax.random.uniform(key, warm.shape) >= id_dropout)


def two_tower_loss(config: ml_collections.ConfigDict, num_warm: int = 0) -> LossFn:
  """The loss of `train.objective`:
  - next_item: sampled softmax over the in-batch items (plus `train.uniform_negatives`
    items drawn uniformly from the `num_warm` warm items, each source with its logQ
    term), with ID dropout on warm items;
  - profile: full softmax over every warm item of the catalog (`batch["catalog"]`) for
    the held-out items of each user's profile. The history items are embedded by the
    same item-tower pass as the catalog (with gradient and the same ID dropout).
    Cold items are left out of the softmax: unobserved, not negative."""
  cfg = config.train
  if objective(config) == "profile":
    def profile_loss(model: TwoTower, batch: dict, key: jax.Array):
      catalog = batch["catalog"]
      keep = _id_keep(key, catalog["warm"], config.model.id_dropout)
      items = model.embed_items(catalog, keep).astype(jnp.float32)
      users = parallel.constrain_batch(model.embed_users(batch, catalog=items).astype(jnp.float32))
      return losses.full_softmax(users, items, batch["targets"], batch["target_mask"],
                                 temperature=cfg.temperature,
                                 exclude=~catalog["warm"])
    return profile_loss

  def loss_fn(model: TwoTower, batch: dict, key: jax.Array):
    keep = _id_keep(key, batch["warm"], config.model.id_dropout)
    # float32 logits under bf16 compute; embeddings stay split over the batch axes
    users = parallel.constrain_batch(model.embed_users(batch).astype(jnp.float32))
    items = parallel.constrain_batch(model.embed_items(batch, keep).astype(jnp.float32))
    if "negatives" in batch:
      neg = batch["negatives"]
      sampled = model.embed_items(neg, _id_keep(jax.random.fold_in(key, 1), neg["warm"],
                                                config.model.id_dropout)).astype(jnp.float32)
      return losses.mixed_negatives_softmax(users, items, batch["item"], batch["log_q"],
                                            sampled, neg["item"], num_warm,
                                            temperature=cfg.temperature)
    return losses.sampled_softmax(users, items, batch["item"], batch["log_q"],
                                  temperature=cfg.temperature, logq_weight=cfg.logq_weight)

  return loss_fn


@dataclasses.dataclass
class Trained:
  model: TwoTower
  data: RecDataset
  items: ItemTable
  step: int


def prepare(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
            warm_start: bool = True,
            data: RecDataset | None = None) -> tuple[TwoTower, RecDataset, ItemTable]:
  """The dataset (`data`, else loaded, built on first use), its item table and a freshly
  initialised model, its encoders warm-started as `config.model.warm_start` says (unless
  `warm_start=False`)."""
  data, items = model_inputs(config, workdir, data)
  model = create_model(config, data)
  if warm_start and "warm_start" in config.model:
    from mmrec import warm_start as warm_start_lib
    warm_start_lib.warm_start(model, config.model.warm_start,
                              sources.tokenizer_path(data, config.data))
  return model, data, items


def model_inputs(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                 data: RecDataset | None = None) -> tuple[RecDataset, ItemTable]:
  """The dataset (`data`, else loaded from disk, built on first use) and its item table."""
  data = sources.load(config.data, workdir) if data is None else data
  sources.tokenizer(data, config.data)  # fails early when it outgrows data.vocab_size
  return data, sources.item_table(data, config.data, with_images=config.model.use_image)


def with_frozen_features(model: TwoTower, items: ItemTable,
                         cfg: ml_collections.ConfigDict) -> ItemTable:
  """`items` plus the outputs of the encoders in `cfg.frozen_encoders` for every item,
  computed once: their weights never change, so the item tower reads these instead
  of running them (a frozen 22M-parameter MiniLM costs one pass over the catalog)."""
  inputs = {"text": items.tokens, "image": items.image}
  encoded = {ENCODED_KEYS[part]: encode_all(getattr(model.item_tower, part), inputs[part])
             for part in frozen_encoders(cfg) if hasattr(model.item_tower, part)}
  return dataclasses.replace(items, encoded=encoded)


Validate = Callable[[TwoTower, RecDataset, ItemTable], float]  # higher is better


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
          on_log: Callable[[int, dict], None] | None = None,
          validate: Validate | None = None, data: RecDataset | None = None) -> Trained:
  """Train the two-tower of `config` in `workdir` (resuming). With `validate`, it runs
  every `train.validate_every` steps, training stops after `train.patience` runs without
  a new best, and the best step is the one kept and returned. `data`: the dataset, when
  the caller has loaded it already."""
  cfg = config.train
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if jax.process_index() == 0:
    write_text_atomic(workdir / "config.json", config.to_json_best_effort(indent=2))
  model, data, items = prepare(config, workdir, data=data)
  items = with_frozen_features(model, items, cfg)
  if jax.process_index() == 0:  # checkpoints come with the model's tokenizer
    copy_atomic(sources.tokenizer_path(data, config.data), workdir / "tokenizer.json")
  mesh = parallel.make_mesh(config.mesh)
  local_batch = parallel.check_batch_size(cfg.batch_size, mesh)
  histories = UserHistories(data.splits["train"], config.data.history_len)
  shard = dict(seed=config.seed, process_index=jax.process_index(),
               process_count=jax.process_count())
  refresh = constants = None
  if objective(config) == "profile":
    batches = profile_batches(histories, batch_size=local_batch,
                              history_len=config.data.history_len, holdout=cfg.holdout,
                              targets=cfg.get("targets", "held_out"), **shard)
    constants = catalog_features(items)
  else:
    batches = training_batches(histories, items, batch_size=local_batch,
                               uniform_negatives=cfg.get("uniform_negatives", 0), **shard)
    refresh = Refresh(cfg.cache_refresh_every, TwoTower.refresh_item_cache,
                      items.features(np.arange(data.num_items)))
  validation = None
  if validate is not None and cfg.get("validate_every", 0):
    validation = Validation(cfg.validate_every, lambda m: validate(m, data, items),
                            patience=cfg.get("patience", 0))
  loss = two_tower_loss(config, num_warm=int(items.warm.sum()))
  step = fit(model, loss, batches, config, workdir, on_log, refresh, constants, validation)
  return Trained(model, data, items, step)


def catalog_features(items: ItemTable) -> dict[str, np.ndarray]:
  """Every item's model inputs, for losses over the whole catalog. Raw images are left
  out (as [N, 0]) when the image encoder's outputs are cached: the tower reads those."""
  features = items.features(np.arange(len(items.warm)))
  if ENCODED_KEYS["image"] in features:
    features["image"] = np.zeros((len(items.warm), 0), np.uint8)
  return features


def restore(workdir: str | pathlib.Path, config: ml_collections.ConfigDict,
            data: RecDataset | None = None) -> Trained:
  """The two-tower trained in `workdir` with `config`: at its best validated step
  (WORKDIR/best.json) if it was validated, else at its latest checkpoint. `data`: the
  dataset when the caller has it loaded already."""
  workdir = pathlib.Path(workdir)
  ckpt = Checkpointer(workdir / "checkpoints", every=1, keep=config.train.keep_checkpoints,
                      read_only=True)
  if ckpt.latest_step() is None:  # before any data or model work
    ckpt.close()
    raise CheckpointError(f"no checkpoint in {workdir / 'checkpoints'}: train first")
  data, items = model_inputs(config, workdir, data)

  def init():
    model = create_model(config, data)
    return model, nnx.Optimizer(model, make_optimizer(config.train), wrt=nnx.Param)

  # Shapes only: nothing is initialised (or compiled) for weights the checkpoint replaces.
  graphdef, state = nnx.split(nnx.eval_shape(init))
  best = read_best(workdir)
  try:  # the newest good step instead, with a warning, if the best one is damaged
    restored = ckpt.restore(state, step=best["step"] if best else None)
  finally:
    ckpt.close()
  if restored is None:
    raise CheckpointError(f"no checkpoint in {workdir / 'checkpoints'}: train first")
  step, state, _ = restored
  model, _ = nnx.merge(graphdef, state)
  return Trained(model, data, with_frozen_features(model, items, config.train), step)
