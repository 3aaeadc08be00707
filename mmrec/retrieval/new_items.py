"""New items from a product feed, embedded with the trained item tower (no retraining).

The feed is JSON Lines, one product per line (docs/bundle.md#adding-and-removing-items):

    {"item_id": "sku-9001", "title": "Linen midi dress", "description": "...",
     "category": "dress", "image": "images/sku-9001.jpg"}

`item_id` and `title` are required; `description` and `category` default to
""; `image` is a path relative to the feed file (a product without one is
embedded from its text alone, as the item tower does for any imageless item).
New items are embedded from content only: they have no trained ID embedding.
"""

from __future__ import annotations

import json
import pathlib

import ml_collections
import numpy as np

from mmrec.data import dataset as dataset_lib
from mmrec.data import sources
from mmrec.data.pipeline import ItemTable
from mmrec.data.schema import Catalog

_FIELDS = ("item_id", "title", "description", "category", "image")


def read_feed(path: str | pathlib.Path) -> tuple[Catalog, list[str]]:
  """The feed's products as a `Catalog`, and each product's image path ("" if none).

  Raises ValueError naming the file and line for malformed JSON, a missing or
  empty `item_id`/`title`, an unknown field, a repeated id or a missing image file.
  Blank lines are skipped.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise ValueError(f"{path}: the new-items feed does not exist")
  rows, seen = [], {}
  for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
    if not line.strip():
      continue
    where = f"{path}:{number}"
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{where}: malformed JSON: {e}") from e
    if not isinstance(row, dict):
      raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - set(_FIELDS))
    if unknown:
      raise ValueError(f"{where}: unknown fields {unknown}; allowed: {list(_FIELDS)}")
    for field in _FIELDS:
      value = row.get(field, "")
      if not isinstance(value, str):
        raise ValueError(f"{where}: field {field!r} must be a string, got {value!r}")
      row[field] = value.strip()
    for field in ("item_id", "title"):
      if not row[field]:
        raise ValueError(f"{where}: field {field!r} is required and must not be empty")
    if row["item_id"] in seen:
      raise ValueError(f"{where}: item_id {row['item_id']!r} repeats line {seen[row['item_id']]}")
    seen[row["item_id"]] = number
    if row["image"] and not (path.parent / row["image"]).is_file():
      raise ValueError(f"{where}: image {row['image']!r} not found next to the feed")
    rows.append(row)
  if not rows:
    raise ValueError(f"{path}: the new-items feed holds no products")
  images = [(path.parent / r["image"]).read_bytes() if r["image"] else b"" for r in rows]
  catalog = Catalog(item_id=np.array([r["item_id"] for r in rows]),
                    title=np.array([r["title"] for r in rows]),
                    description=np.array([r["description"] for r in rows]),
                    category=np.array([r["category"] for r in rows]), image=images)
  return catalog, [r["image"] for r in rows]


def embed(trained, config: ml_collections.ConfigDict, catalog: Catalog) -> np.ndarray:
  """Item-tower embeddings float32 `[M, D]` of `catalog`, from text and image only."""
  from mmrec.training.embed import item_embeddings  # jax: the training side only
  tokens = sources.tokenizer(trained.data, config.data).encode(catalog.text(),
                                                               config.data.max_text_len)
  images, _ = dataset_lib.decode_images(catalog, config.data.image_size)
  m = len(catalog)
  table = ItemTable(tokens=tokens, image=images, warm=np.zeros(m, bool),
                    log_q=np.zeros(m, np.float32))
  return np.asarray(item_embeddings(trained.model, table), np.float32)
