"""The optimizer: AdamW on a warm-up/cosine schedule, with its own group for the encoders.

Shared by the two-tower (`mmrec.training.two_tower`) and pretraining (`mmrec.training.pretrain`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax


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

