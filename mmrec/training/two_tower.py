"""The two-tower's training: its data and model wired to the one loop (`mmrec.training.loop.fit`).

`train` trains (resuming) and `restore` reads back a trained two-tower.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mmrec.data import sources
from mmrec.data.pipeline import ItemTable, UserHistories, profile_batches, training_batches
from mmrec.data.schema import RecDataset
from mmrec.files import copy_atomic, write_text_atomic
from mmrec.models.towers import (ENCODED_KEYS, TwoTower, compact_vocabulary, encode_all,
                                 feature_stats)
from mmrec.training import mesh as mesh_lib
from mmrec.training import warm_start as warm_start_lib
from mmrec.training.checkpoint import CheckpointError, Checkpointer
from mmrec.training.loop import Refresh, Validation, fit, read_best
from mmrec.training.objective import objective, two_tower_loss
from mmrec.training.optim import frozen_encoders, make_optimizer


def create_model(config: ml_collections.ConfigDict, data: RecDataset) -> TwoTower:
  return TwoTower(config.model, num_items=data.num_items, vocab_size=config.data.vocab_size,
                  max_text_len=config.data.max_text_len, history_len=config.data.history_len,
                  rngs=nnx.Rngs(config.seed))


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
    warm_start_lib.warm_start(model, config.model.warm_start,
                              sources.tokenizer_path(data, config.data))
  return model, data, items


def model_inputs(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                 data: RecDataset | None = None) -> tuple[RecDataset, ItemTable]:
  """The dataset (`data`, else loaded from disk, built on first use) and its item table."""
  data = sources.load(config.data, workdir) if data is None else data
  sources.tokenizer(data, config.data)  # fails early when it outgrows data.vocab_size
  return data, sources.item_table(data, config.data, with_images=config.model.use_image)


def with_frozen_features(model: TwoTower, items: ItemTable, cfg: ml_collections.ConfigDict,
                         *, fit_stats: bool = False) -> ItemTable:
  """`items` plus the outputs of the encoders in `cfg.frozen_encoders` for every item,
  computed once: their weights never change, so the item tower reads these instead
  of running them (a frozen 22M-parameter MiniLM costs one pass over the catalog).
  `fit_stats` (a new training run): each frozen encoder's `FeatureStats` are fitted to
  this catalog; a restored model keeps its checkpoint's."""
  inputs = {"text": items.tokens, "image": items.image}
  tower = model.item_tower
  parts = [part for part in frozen_encoders(cfg) if hasattr(tower, part)]
  encoded = {part: encode_all(getattr(tower, part), inputs[part]) for part in parts}
  if fit_stats:
    for part, features in encoded.items():
      getattr(tower, f"{part}_stats")[...] = jnp.asarray(feature_stats(features))
  return dataclasses.replace(items, encoded={ENCODED_KEYS[p]: v for p, v in encoded.items()})


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
  items = with_frozen_features(model, items, cfg, fit_stats=True)  # resuming: replaced
  if jax.process_index() == 0:  # checkpoints come with the model's tokenizer
    copy_atomic(sources.tokenizer_path(data, config.data), workdir / "tokenizer.json")
  mesh = mesh_lib.make_mesh(config.mesh)
  local_batch = mesh_lib.check_batch_size(cfg.batch_size, mesh)
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
  out (as [N, 0]) when the image encoder's outputs are cached: the tower reads those.
  The token bag reads the catalog's own token ids only (`compact_vocabulary`)."""
  features = items.features(np.arange(len(items.warm)))
  if ENCODED_KEYS["image"] in features:
    features["image"] = np.zeros((len(items.warm), 0), np.uint8)
  return {**features, **compact_vocabulary(features["tokens"])}


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
