"""Where a config's dataset lives, building it on first use, and the model-ready item table."""

from __future__ import annotations

import dataclasses
import pathlib

import ml_collections

from mmrec.data import dataset as dataset_lib
from mmrec.data import shop as shop_lib
from mmrec.data.pipeline import ItemTable
from mmrec.data.schema import RecDataset
from mmrec.data.tokenizer import Tokenizer


def dataset_path(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
  base = pathlib.Path(cfg.data_dir) if cfg.data_dir else pathlib.Path(workdir) / "data"
  if cfg.source == "shop":
    return base / f"shop_{cfg.size}_seed{cfg.seed}"
  raise ValueError(f"data.source={cfg.source!r} is not known; the embedded shop is 'shop'")


def build(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
  """Generate the configured dataset and store it as TFDS datasets (replacing any old one)."""
  path = dataset_path(cfg, workdir)
  shop_cfg = shop_lib.shop_config(cfg.size, seed=cfg.seed, image_size=cfg.image_size)
  shop = shop_lib.generate(shop_cfg)
  return dataset_lib.build_dataset(
      path.parent, path.name, shop.catalog, shop.interactions, is_new=shop.is_new,
      seed=cfg.seed, protocol=cfg.protocol, vocab_size=cfg.vocab_size,
      extra_meta={"source": "shop", "shop": dataclasses.asdict(shop_cfg)}, truth=shop.user_prefs)


def load(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> RecDataset:
  """The configured dataset, built first if it is not on disk yet."""
  path = dataset_path(cfg, workdir)
  if not (path / "meta.json").exists():
    build(cfg, workdir)
  return dataset_lib.load_dataset(path)


def item_table(data: RecDataset, cfg: ml_collections.ConfigDict) -> ItemTable:
  """Tokenized text and decoded images for every item of the catalog."""
  tokens = Tokenizer.load(data.tokenizer_path).encode(data.catalog.text(), cfg.max_text_len)
  images, _ = dataset_lib.decode_images(data.catalog, cfg.image_size)
  return ItemTable.build(data, tokens, images)
