"""Amazon Reviews 2023 (McAuley lab): a category's reviews and item metadata, JSON lines.

Files (plain or .gz): `reviews.jsonl` (or the one `<Category>.jsonl`) with
user_id, parent_asin (else asin), rating, timestamp (milliseconds); and
`meta.jsonl` (or `meta_<Category>.jsonl`) with parent_asin, title,
description and features (lists), categories, main_category, images.
Items are parent_asins. Item text: title; description = features then
description; category = the categories path joined by " > " (else main_category).
Images, when the user has downloaded them, are read from `<image_dir>/` as
`<parent_asin>.<ext>` or by the file name of the item's first image URL;
a missing file is an item without an image.
Validation (the dataset's field descriptions): ratings 1.0..5.0, timestamps
whole milliseconds, items ASINs (10 digits or capital letters), user ids
capital letters and digits.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pyarrow as pa

from mmrec.data.importers import tables
from mmrec.data.importers.base import Imported, Options, Rules, finish, require_dir
from mmrec.data.importers.drops import DataImportError
from mmrec.data.importers.images import ImageFolder

_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
AMAZON = Rules(user_id=r"[A-Z0-9]+", item_id=r"[A-Z0-9]{10}", rating=(1.0, 5.0),
               whole_timestamp=True)


def read_amazon(path, options: Options) -> Imported:
  path = require_dir(path)
  reviews_file, meta_file = _files(path)
  folder = ImageFolder(path / options.image_dir) if options.image_dir else ImageFolder(None)
  builder = options.catalog_builder(meta_file.name, AMAZON)
  for records, rows in tables.read_json_lines(meta_file, builder.drops):
    for record, row in zip(records, rows.tolist()):
      item_id = _text(record.get("parent_asin") or record.get("asin"))
      categories = record.get("categories") or []
      category = (" > ".join(map(str, categories)) if isinstance(categories, list)
                  else str(categories)) or _text(record.get("main_category"))
      builder.add(item_id, _text(record.get("title")),
                  _join(record.get("features")) + " " + _join(record.get("description")),
                  category, image=_image(folder, item_id, record.get("images")),
                  where=f"{meta_file.name} line {row}")
  collector = options.collector(builder.index, rules=AMAZON)
  for records, rows in tables.read_json_lines(reviews_file, collector.drops):
    user = pa.array([_text(r.get("user_id")) for r in records], pa.string())
    item = pa.array([_text(r.get("parent_asin") or r.get("asin")) for r in records], pa.string())
    millis = np.array([_number(r.get("timestamp")) for r in records])
    if AMAZON.whole_timestamp:
      millis[millis != np.floor(millis)] = np.nan
    seconds = np.floor(millis / 1000.0)
    rating = np.array([_number(r.get("rating")) for r in records])
    collector.add(reviews_file.name, rows, user, item, seconds, rating)
  encoder = options.encoder() if len(folder) else None
  return finish("amazon", path, [reviews_file, meta_file], builder, collector, encoder,
                has_rating=True)


def _files(path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
  found = [p for p in sorted(path.iterdir()) if p.is_file() and p.name.endswith(_SUFFIXES)]
  meta = [p for p in found if p.name.startswith("meta")]
  reviews = [p for p in found if not p.name.startswith("meta")]
  named = [p for p in reviews if p.name.startswith("reviews")]
  reviews = named or reviews
  if len(meta) != 1 or len(reviews) != 1:
    raise DataImportError(
        f"{path}: expected one reviews file (reviews.jsonl or <Category>.jsonl) and one metadata "
        f"file (meta.jsonl or meta_<Category>.jsonl); found reviews {[p.name for p in reviews]}, "
        f"metadata {[p.name for p in meta]}")
  return reviews[0], meta[0]


def _image(folder: ImageFolder, item_id: str, images) -> str | None:
  """`<item id>.<ext>`, else the file named like the first image URL, in the folder."""
  found = folder.find(item_id) if len(folder) else None
  if found or not len(folder):
    return found
  urls = []
  if isinstance(images, list):  # [{"large": url, "hi_res": url, "thumb": url, ...}, ...]
    for image in images[:1]:
      urls += [image.get(k) for k in ("hi_res", "large", "thumb")] if isinstance(image, dict) else [
          image]
  elif isinstance(images, dict):  # {"large": [url, ...], ...}
    urls += [(images.get(k) or [None])[0] for k in ("hi_res", "large", "thumb")]
  for url in urls:
    if isinstance(url, str) and url:
      stem = url.rsplit("/", 1)[-1].rsplit(".", 1)[0]
      if folder.find(stem):
        return folder.find(stem)
  return None


def _text(value) -> str:
  return "" if value is None else str(value)


def _join(value) -> str:
  if isinstance(value, list):
    return " ".join(_text(v) for v in value)
  return _text(value)


def _number(value) -> float:
  try:
    x = float(value)
  except (TypeError, ValueError):
    return float("nan")
  return x if np.isfinite(x) else float("nan")
