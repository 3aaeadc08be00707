"""The two-tower's training objective: which loss `train.objective` names, wired to the model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from mmrec import losses
from mmrec.models.towers import TwoTower
from mmrec.training import mesh as mesh_lib
from mmrec.training.loop import LossFn


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
      users = mesh_lib.constrain_batch(model.embed_users(batch, catalog=items).astype(jnp.float32))
      return losses.full_softmax(users, items, batch["targets"], batch["target_mask"],
                                 temperature=cfg.temperature,
                                 exclude=~catalog["warm"],
                                 average=cfg.get("loss_average", "user"))
    return profile_loss

  def loss_fn(model: TwoTower, batch: dict, key: jax.Array):
    keep = _id_keep(key, batch["warm"], config.model.id_dropout)
    # float32 logits under bf16 compute; embeddings stay split over the batch axes
    users = mesh_lib.constrain_batch(model.embed_users(batch).astype(jnp.float32))
    items = mesh_lib.constrain_batch(model.embed_items(batch, keep).astype(jnp.float32))
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

