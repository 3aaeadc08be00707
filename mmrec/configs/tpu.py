"""Shared pieces of the TPU configs in tpu_configs/: tower sizes, chip specs, the base config.

A TPU config is the two-tower config plus a `tpu` block (topology for
`mmrec compile`, chip type) and the mesh and global batch of its target.
`compile.num_items` is the catalog size planned for (it sizes the item-ID
tables and the item cache when compiling without a dataset).
"""

from __future__ import annotations

import ml_collections

from mmrec.configs import two_tower

# Tower sizes. `tiny` exists so that CI can compile a TPU config in seconds.
TOWERS = {
    "tiny": dict(embed_dim=32, text=dict(width=32, layers=1, heads=2, mlp_dim=64),
                 image=dict(channels=(8, 16)), user=dict(width=32, layers=1, heads=2, mlp_dim=64),
                 num_items=10_000, vocab_size=4_000, image_size=32, max_text_len=16, history_len=8),
    "base": dict(embed_dim=256, text=dict(width=512, layers=6, heads=8, mlp_dim=2048),
                 image=dict(channels=(32, 64, 128, 256)),
                 user=dict(width=512, layers=4, heads=8, mlp_dim=2048),
                 num_items=2_000_000, vocab_size=32_000, image_size=96, max_text_len=64,
                 history_len=50),
    "large": dict(embed_dim=512, text=dict(width=1024, layers=12, heads=16, mlp_dim=4096),
                  image=dict(channels=(64, 128, 256, 512)),
                  user=dict(width=1024, layers=6, heads=16, mlp_dim=4096),
                  num_items=20_000_000, vocab_size=32_000, image_size=128, max_text_len=64,
                  history_len=100),
}

# Per chip: HBM, peak bf16 dense FLOP/s, HBM bandwidth (Cloud TPU documentation).
CHIPS = {
    "v4": dict(hbm_gib=32, peak_tflops=275, hbm_gbps=1228),
    "v5e": dict(hbm_gib=16, peak_tflops=197, hbm_gbps=819),
    "v5p": dict(hbm_gib=95, peak_tflops=459, hbm_gbps=2765),
}


def base_config(*, size: str, chip: str, topology: str, num_slices: int = 1,
                topology_kwargs: dict | None = None) -> ml_collections.ConfigDict:
  """The medium two-tower config with `size` towers, bf16 compute and a `tpu` block."""
  if size not in TOWERS:
    raise ValueError(f"unknown tower size {size!r}; choose from {list(TOWERS)}")
  if chip not in CHIPS:
    raise ValueError(f"unknown TPU chip {chip!r}; choose from {list(CHIPS)}")
  t = dict(TOWERS[size])
  c = two_tower.get_config("medium")
  c.name = f"two_tower_{size}_{chip}"
  c.data.vocab_size = t.pop("vocab_size")
  c.data.image_size = t.pop("image_size")
  c.data.max_text_len = t.pop("max_text_len")
  c.data.history_len = t.pop("history_len")
  c.compile = ml_collections.ConfigDict(dict(num_items=t.pop("num_items")))
  c.model.update(t)
  # Millions of items: the next-item recipe, trained end to end (Transformer text encoder).
  two_tower.use_next_item(c)
  c.model.update(dict(use_text=True, use_bag=False))
  c.train.frozen_encoders = ()
  c.model.id_buckets = 2 * c.compile.num_items
  c.train.compute_dtype = "bfloat16"
  c.train.learning_rate = 1e-3
  c.train.checkpoint_every = 1000
  c.train.log_every = 100
  c.tpu = ml_collections.ConfigDict(dict(
      chip=chip, topology=topology, num_slices=num_slices,
      topology_kwargs=dict(topology_kwargs or {}), **CHIPS[chip]))
  return c
