r"""Self-supervised pretraining of the item encoders on the embedded shop's catalog.

COMMAND: mmrec pretrain --config mmrec/configs/pretrain.py:small,all --workdir runs/pretrain_all

`arg` is `SIZE[,OBJECTIVE]`: SIZE in tiny|small|medium (the same shop and the
same `model.text` / `model.image` as the two-tower config of that size, so the
encoders warm-start it: `--config.model.warm_start.checkpoint=WORKDIR`),
OBJECTIVE in text_mlm | image_contrastive | image_text | all (default all).
Weights: `--config.pretrain.weights.image_text=0.5` and the like.
"""

from __future__ import annotations

import ml_collections

from mmrec.configs import two_tower

OBJECTIVES = {
    "text_mlm": dict(text_mlm=1.0, image_contrastive=0.0, image_text=0.0),
    "image_contrastive": dict(text_mlm=0.0, image_contrastive=1.0, image_text=0.0),
    "image_text": dict(text_mlm=0.0, image_contrastive=0.0, image_text=1.0),
    "all": dict(text_mlm=1.0, image_contrastive=1.0, image_text=1.0),
}


def get_config(arg: str = "small,all") -> ml_collections.ConfigDict:
  size, _, objective = arg.partition(",")
  objective = objective or "all"
  if objective not in OBJECTIVES:
    raise ValueError(f"unknown objective {objective!r} in config arg {arg!r}; "
                     f"choose from {list(OBJECTIVES)}")
  base = two_tower.get_config(size)
  tiny = size == "tiny"

  c = ml_collections.ConfigDict()
  c.name = f"pretrain_{objective}"
  c.seed = 0
  c.data = base.data
  c.mesh = base.mesh
  c.model = ml_collections.ConfigDict()
  c.model.text = base.model.text
  c.model.image = base.model.image

  c.pretrain = ml_collections.ConfigDict()
  c.pretrain.weights = OBJECTIVES[objective]
  # Items to learn from: "all" (the catalog's text and images, cold items included: no
  # interaction is used) or "warm" (only items with training interactions).
  c.pretrain.items = "all"
  c.pretrain.mask_rate = 0.15  # share of the (non-special) tokens to predict
  c.pretrain.projection_dim = 64 if tiny else 128
  c.pretrain.nt_xent_temperature = 0.1
  c.pretrain.siglip_init_temperature = 10.0  # t' = log 10, b = -10 (Zhai et al., 2023)
  c.pretrain.siglip_init_bias = -10.0
  c.pretrain.augment = dict(  # mmrec.data.augment.augment; no grey-scale, mild hue change
      crop_scale=(0.35, 1.0), flip=True, jitter_prob=0.8, brightness=0.25, contrast=0.25,
      saturation=0.25, hue=0.02, blur_prob=0.5, blur_sigma=(0.1, 1.2))

  c.probe = ml_collections.ConfigDict()  # linear probe run at the end of `mmrec pretrain`
  c.probe.attributes = ("category", "colour", "material")
  c.probe.test_share = 0.3

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64 if tiny else 256
  c.train.steps = 100 if tiny else 1500
  c.train.learning_rate = 1e-3
  c.train.warmup_steps = 10 if tiny else 100
  c.train.weight_decay = 1e-4
  c.train.grad_clip = 1.0
  c.train.log_every = 10 if tiny else 50
  c.train.checkpoint_every = 50 if tiny else 500
  c.train.keep_checkpoints = 2
  for key in ("compute_dtype", "grad_accum_steps"):  # loop options shared with the two-tower
    if key in base.train:
      c.train[key] = base.train[key]
  if "sharding" in base:
    c.sharding = base.sharding
  return c
