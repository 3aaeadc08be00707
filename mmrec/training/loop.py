"""The one training loop: jit on a device mesh, optax, Orbax checkpoints, logging.

`fit` is the loop; `mmrec.training.two_tower.train` wires it to the two-tower model and
its loss, and self-supervised pretraining (`mmrec.training.pretrain`) reuses it with its
own model and loss.
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
import ml_collections
import tqdm
from flax import nnx

from mmrec.files import write_text_atomic
from mmrec.training import mesh as mesh_lib
from mmrec.training.checkpoint import Checkpointer, one_line
from mmrec.training.optim import learning_rate, make_optimizer
from mmrec.training.step import make_train_step

LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]


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
  mesh = mesh_lib.make_mesh(config.mesh)
  lead = jax.process_index() == 0
  optimizer = nnx.Optimizer(model, make_optimizer(cfg), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  state_sharding = mesh_lib.state_shardings(state, mesh, config.get("sharding"))
  state = jax.device_put(state, state_sharding)

  start, best = 0, read_best(workdir)
  ckpt = Checkpointer(workdir / "checkpoints", every=cfg.checkpoint_every,
                      keep=cfg.keep_checkpoints, keep_step=best and best["step"])
  if (restored := ckpt.restore(state)) is not None:  # the newest good step
    start, state, _ = restored
  if best and best["step"] > start:  # a damaged step was skipped: that validation is redone
    best = ckpt.best.step = None
  if constants is not None:
    constants = jax.device_put(constants, mesh_lib.replicated(mesh))

  train_step = make_train_step(graphdef, loss_fn, config, mesh, state_sharding)

  @functools.partial(jax.jit, donate_argnums=0, out_shardings=state_sharding)
  def refresh_step(state, inputs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      model, optimizer = nnx.merge(graphdef, state)
      refresh.fn(model, inputs)
      return nnx.state((model, optimizer))

  if refresh:
    refresh_inputs = jax.device_put(refresh.inputs, mesh_lib.replicated(mesh))
  key = jax.random.key(config.seed)
  from mmrec.training.scalar_log import ScalarLog  # tensorboardX imports torch (seconds): only
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
      batch = mesh_lib.shard_batch(next(batch_iter), mesh)
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

