r"""Two-tower retrieval on the embedded fashion shop.

COMMAND: mmrec train --config mmrec/configs/two_tower.py:small --workdir runs/two_tower

`arg` is `SIZE[,VARIANT]`: SIZE in tiny|small|medium (shop size and model
size together), VARIANT in multimodal (default) | id_only | content_only.
"""

import ml_collections

SIZES = ("tiny", "small", "medium")
VARIANTS = {
    "multimodal": dict(use_text=True, use_image=True, use_id=True),
    "id_only": dict(use_text=False, use_image=False, use_id=True, id_dropout=0.0),
    "content_only": dict(use_text=True, use_image=True, use_id=False),
}


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
  size, _, variant = arg.partition(",")
  variant = variant or "multimodal"
  if size not in SIZES:
    raise ValueError(f"unknown size {size!r} in config arg {arg!r}; choose from {SIZES}")
  tiny = size == "tiny"

  c = ml_collections.ConfigDict()
  c.name = f"two_tower_{variant}"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.source = "shop"  # the embedded shop; importers add more
  c.data.size = size
  c.data.seed = 0
  c.data.data_dir = ""  # "" means WORKDIR/data
  c.data.protocol = "leave_last_out"
  c.data.vocab_size = 4000
  c.data.image_size = 64
  c.data.max_text_len = 32 if tiny else 48
  c.data.history_len = 20

  c.model = ml_collections.ConfigDict()
  c.model.embed_dim = 32 if tiny else 64
  c.model.id_buckets = 0  # 0: twice the catalog size
  c.model.id_dropout = 0.5  # drop the ID path for this share of warm items, so content learns alone
  c.model.use_text = c.model.use_image = c.model.use_id = True
  c.model.text = dict(width=32 if tiny else 64, layers=1 if tiny else 2, heads=2 if tiny else 4,
                      mlp_dim=64 if tiny else 128)
  c.model.image = dict(channels=(8, 16) if tiny else (16, 32, 64))
  c.model.user = dict(width=32 if tiny else 64, layers=1, heads=2 if tiny else 4,
                      mlp_dim=64 if tiny else 128)

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64 if tiny else 256
  c.train.steps = 60 if tiny else 800
  c.train.learning_rate = 3e-3
  c.train.warmup_steps = 10 if tiny else 100
  c.train.weight_decay = 1e-4
  c.train.grad_clip = 1.0
  c.train.temperature = 0.05
  c.train.logq_weight = 0.5  # 1: full logQ correction, 0: none (see mmrec.losses.sampled_softmax)
  c.train.cache_refresh_every = 10 if tiny else 50  # steps between item-cache refreshes (user tower input)
  c.train.log_every = 10 if tiny else 50
  c.train.checkpoint_every = 30 if tiny else 500
  c.train.keep_checkpoints = 3

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1: all devices

  c.eval = ml_collections.ConfigDict()
  c.eval.split = "test"
  c.eval.ks = (10, 20, 50)
  c.eval.batch_size = 256
  return with_variant(c, variant)


def with_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """A copy of `config` with the modalities of `variant` (see VARIANTS)."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose from {list(VARIANTS)}")
  c = ml_collections.ConfigDict(config.to_dict())
  c.model.update(VARIANTS[variant])
  c.name = f"two_tower_{variant}"
  return c
