"""The TPU configs: `--config tpu:TARGET[,SIZE]` (e.g. `tpu:v5e_16,tiny`), from any directory.

TARGETS holds each slice type's topology, mesh and global batch; `tpu_configs/TARGET.py`
names the same config by file, for the launch script (tools/tpu_launch.sh).

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


# Per target: chip, topology, slices, libtpu topology options, mesh (data, fsdp, model),
# global batch (each host reads batch / hosts), micro-batches, default tower size.
TARGETS = {
    "v4_8": dict(chip="v4", topology="v4:2x2x1", slices=1, mesh=(1, 4, 1), batch=4096,
                 # 1 device per chip
                 topology_kwargs=dict(chip_config_name="megacore", chips_per_host_bounds=(2, 2, 1)),
                 size="base"),
    "v5e_16": dict(chip="v5e", topology="v5e:4x4", slices=1, mesh=(1, 16, 1), batch=8192,
                   size="base"),
    # 16 GiB chips: the large towers at 1024 examples per chip need ~57 GiB of temporaries;
    # 8 micro-batches (in-batch negatives: batch / 8, see docs/scaling.md); 4 needed 19.6 GiB
    "v5e_256": dict(chip="v5e", topology="v5e:16x16", slices=1, mesh=(1, 64, 4), batch=65536,
                    grad_accum_steps=8, size="large"),
    "v5e_256x2": dict(chip="v5e", topology="v5e:16x16", slices=2, mesh=(2, 64, 4),
                      batch=131072, grad_accum_steps=8, size="large"),
    # the large towers at 2048 examples per chip need ~110 GiB: 2 micro-batches
    "v5p_128": dict(chip="v5p", topology="v5p:4x4x4", slices=1, mesh=(1, 16, 4), batch=32768,
                    grad_accum_steps=2, size="large"),
}


def get_config(arg: str = "v5e_16") -> ml_collections.ConfigDict:
  """`TARGET[,SIZE]`: the two-tower for a TPU target (TARGETS) with SIZE towers (TOWERS)."""
  target, _, size = arg.partition(",")
  if target not in TARGETS:
    raise ValueError(f"unknown TPU target {target!r} in config arg {arg!r}; choose from "
                     f"{list(TARGETS)}")
  t = TARGETS[target]
  c = base_config(size=size or t["size"], chip=t["chip"], topology=t["topology"],
                  num_slices=t["slices"], topology_kwargs=t.get("topology_kwargs", {}))
  c.mesh.data, c.mesh.fsdp, c.mesh.model = t["mesh"]
  c.mesh.slices = t["slices"]
  c.train.batch_size = t["batch"]
  c.train.grad_accum_steps = t.get("grad_accum_steps", 1)
  return c
