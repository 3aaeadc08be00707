"""Where a config's dataset lives, building it on first use, and the model-ready item table."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import ml_collections
import numpy as np

from mmrec.data import dataset as dataset_lib
from mmrec.data import shop as shop_lib
from mmrec.data import split as split_lib
from mmrec.data.pipeline import ItemTable
from mmrec.data.schema import RecDataset
from mmrec.data.tokenizer import Tokenizer, tokenizer_file


def dataset_path(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
  base = pathlib.Path(cfg.data_dir) if cfg.data_dir else pathlib.Path(workdir) / "data"
  if cfg.source == "shop":
    protocol = "" if cfg.protocol == "leave_last_out" else f"_{cfg.protocol}"
    return base / f"shop_{cfg.size}_seed{cfg.seed}{protocol}"
  if cfg.source == "import":
    from mmrec.data.importers.build import dataset_name
    return base / dataset_name(cfg)
  raise ValueError(f"data.source={cfg.source!r} is not known; choose 'shop' (the embedded "
                   "shop) or 'import' (raw files, data.import_)")


def build(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
  """Generate the configured dataset and store it as TFDS datasets (replacing any old one)."""
  path = dataset_path(cfg, workdir)
  if cfg.source == "import":
    from mmrec.data.importers.build import import_dataset
    return import_dataset(cfg, path.parent, path.name)
  shop_cfg = shop_lib.shop_config(cfg.size, seed=cfg.seed, image_size=cfg.image_size)
  shop = shop_lib.generate(shop_cfg)
  return dataset_lib.build_dataset(
      path.parent, path.name, shop.catalog, shop.interactions, is_new=shop.is_new,
      seed=cfg.seed, protocol=cfg.protocol, vocab_size=cfg.vocab_size,
      split_options=split_lib.options_for(cfg.protocol, cfg.get("split")),
      extra_meta={"source": "shop", "shop": dataclasses.asdict(shop_cfg)}, truth=shop.user_prefs)


def load(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> RecDataset:
  """The configured dataset, built first if it is not on disk yet."""
  path = dataset_path(cfg, workdir)
  if not (path / "meta.json").exists():
    build(cfg, workdir)
  data = dataset_lib.load_dataset(path)
  _check_split(data.meta, cfg, path)
  if cfg.source == "import":
    from mmrec.data.importers.build import check_import_config
    check_import_config(data.meta, cfg, path)
  return data


def _check_split(meta: dict, cfg: ml_collections.ConfigDict, path: pathlib.Path) -> None:
  """Refuse a dataset on disk that was split differently from what the config asks."""
  want = {"protocol": cfg.protocol, "split_options": json.loads(json.dumps(
      split_lib.options_for(cfg.protocol, cfg.get("split"))))}
  have = {"protocol": meta.get("protocol"), "split_options": meta.get("split_options", {})}
  if want != have:
    raise ValueError(f"{path} was split with {have}, the config asks for {want}; rebuild it "
                     "with `mmrec data build` (or choose another data.data_dir)")


def tokenizer_path(data: RecDataset, cfg: ml_collections.ConfigDict) -> str:
  """The model's tokenizer.json: `cfg.tokenizer` ("minilm", a tokenizer.json or a
  directory holding one), else the dataset's own."""
  path = cfg.get("tokenizer", "") or data.tokenizer_path
  if not path:
    raise FileNotFoundError(f"the dataset {data.meta.get('name', '')!r} has no tokenizer.json "
                            "and data.tokenizer is not set")
  return str(tokenizer_file(path))


def tokenizer(data: RecDataset, cfg: ml_collections.ConfigDict) -> Tokenizer:
  """The model's tokenizer (see `tokenizer_path`), checked against `cfg.vocab_size`."""
  path = tokenizer_path(data, cfg)
  tok = Tokenizer.load(path)
  if tok.vocab_size > cfg.vocab_size:
    raise ValueError(f"the tokenizer {path} has {tok.vocab_size} tokens, more than "
                     f"data.vocab_size={cfg.vocab_size}")
  return tok


def item_table(data: RecDataset, cfg: ml_collections.ConfigDict, *,
               with_images: bool = True) -> ItemTable:
  """Tokenized text and decoded images for every item of the catalog; without images
  (a model that reads none, or a catalog that has none) the image array is `[N, 0, 0, 3]`."""
  tokens = tokenizer(data, cfg).encode(data.catalog.text(), cfg.max_text_len)
  if with_images:
    images, _ = dataset_lib.decode_images(data.catalog, cfg.image_size)
  else:
    images = np.zeros((data.num_items, 0, 0, 3), np.uint8)
  return ItemTable.build(data, tokens, images)
