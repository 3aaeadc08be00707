"""A dataset directory: build it from in-memory tables, load it back, decode images.

`DATA_DIR/<name>/` holds the two TFDS datasets (`mmrec.data.builders`),
`tokenizer.json`, `meta.json` and, for the embedded shop, `truth.npz`.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import re
import shutil
import uuid
from typing import Any

import numpy as np
from PIL import Image

from mmrec.data import builders, clean
from mmrec.data import split as split_lib
from mmrec.data.schema import SPLITS, Catalog, Interactions, RecDataset
from mmrec.data.stats import long_tail_stats
from mmrec.data.tokenizer import Tokenizer

TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"
TRUTH_FILE = "truth.npz"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def build_dataset(data_dir: str | pathlib.Path, name: str, catalog: Catalog,
                  interactions: Interactions, *, is_new: np.ndarray | None = None,
                  seed: int = 0, protocol: str = "leave_last_out", vocab_size: int = 4000,
                  num_users: int | None = None, extra_meta: dict[str, Any] | None = None,
                  truth: dict[str, np.ndarray] | None = None,
                  extra_files: dict[str, str] | None = None,
                  split_options: dict[str, Any] | None = None,
                  given_split: np.ndarray | None = None) -> pathlib.Path:
  """Cleans, splits and writes a dataset to `data_dir/name`, replacing any earlier one.

  Args:
    data_dir: the parent directory (created if missing).
    name: the dataset name, also the directory name.
    catalog, interactions: the tables; see `mmrec.data.clean.validate` for
      what is dropped or repaired (the counts go to meta.json).
    is_new: bool `[N]`, items held out of training (default: none).
    seed, protocol, split_options: the split (`mmrec.data.split.PROTOCOLS`) and
      its options (`mmrec.data.split.options_for`).
    vocab_size: the WordPiece vocabulary size.
    num_users: the number of users (default: largest user index + 1).
    extra_meta: more top-level meta.json entries (e.g. the shop's size).
    truth: arrays saved to truth.npz (numeric, no pickle).
    extra_files: more text files for the directory, name -> content (e.g. the
      importers' user_ids.json and report.json).
    given_split: for protocol "given", each row's split (0 train, 1 valid, 2 test),
      kept through validation.

  Returns:
    The dataset directory.
  """
  if not _NAME.match(name):
    raise ValueError(f"dataset name {name!r} must match {_NAME.pattern}")
  given = {}
  if given_split is not None:  # the rows validate keeps, with their given split
    kept = clean.drop_reasons(len(catalog), interactions, num_users) < 0
    given = {"given": np.asarray(given_split)[kept]}
  catalog, interactions, cleaning = clean.validate(catalog, interactions, num_users)
  if not len(catalog) or not len(interactions):
    raise ValueError(f"dataset {name!r} has no items or no usable interactions:\n"
                     + clean.format_report(cleaning))
  n = len(catalog)
  is_new = np.zeros(n, bool) if is_new is None else np.asarray(is_new, bool)
  if is_new.shape != (n,):
    raise ValueError(f"is_new has shape {is_new.shape}, expected ({n},) for the catalog")
  num_users = int(interactions.user.max()) + 1 if num_users is None else int(num_users)
  truth = {k: np.asarray(v) for k, v in (truth or {}).items()}
  for k, v in truth.items():
    if v.dtype == object:
      raise ValueError(f"truth[{k!r}] has dtype object; truth.npz holds numeric arrays only")
  split_options = dict(split_options or {})
  splits, is_cold = split_lib.split(interactions, protocol, is_new, seed, **split_options, **given)
  tokenizer = Tokenizer.train(catalog.text(), vocab_size)
  meta = {
      "name": name, "seed": int(seed), "protocol": protocol,
      "split_options": {k: list(v) if isinstance(v, tuple) else v
                        for k, v in split_options.items()},
      "num_users": num_users,
      "num_items": n,
      "attribute_values": {k: list(map(str, v)) for k, v in catalog.attribute_values.items()},
      "report": data_report(catalog, splits, is_new, is_cold, num_users, cleaning),
  }
  clash = sorted(set(meta) & set(extra_meta or {}))
  if clash:
    raise ValueError(f"extra_meta may not set {clash}: build_dataset writes them")
  meta.update(extra_meta or {})
  meta_text = json.dumps(meta, indent=2) + "\n"  # Fails early if extra_meta is not JSON.
  extra_files = dict(extra_files or {})
  reserved = {TOKENIZER_FILE, META_FILE, TRUTH_FILE, builders.CATALOG_NAME,
              builders.INTERACTIONS_NAME}
  bad_files = [f for f in extra_files if f in reserved or not _NAME.match(f)]
  if bad_files:
    raise ValueError(f"extra_files {bad_files}: names must match {_NAME.pattern} and not be "
                     f"one of {sorted(reserved)}")

  data_dir = pathlib.Path(data_dir)
  data_dir.mkdir(parents=True, exist_ok=True)
  tmp = data_dir / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  tmp.mkdir()
  try:
    builders.write_catalog(tmp, catalog, is_cold)
    builders.write_interactions(tmp, splits)
    tokenizer.save(tmp / TOKENIZER_FILE)
    if truth:
      np.savez(tmp / TRUTH_FILE, **truth)
    for file_name, content in extra_files.items():
      (tmp / file_name).write_text(content)
    (tmp / META_FILE).write_text(meta_text)
    return _replace(tmp, data_dir / name)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)  # Gone already unless something failed.


def data_report(catalog: Catalog, splits: dict[str, Interactions], is_new: np.ndarray,
                is_cold: np.ndarray, num_users: int, cleaning: dict[str, Any]) -> dict[str, Any]:
  """Sizes, density, long tail of the training counts, modality coverage, cleaning counts."""
  n = len(catalog)
  total = sum(len(v) for v in splits.values())
  train_counts = np.bincount(splits["train"].item, minlength=n)
  has_text = [bool(str(t).strip() or str(d).strip())
              for t, d in zip(catalog.title, catalog.description)]
  return {
      "users": num_users,
      "items": n,
      "interactions": {s: len(splits[s]) for s in SPLITS} | {"total": total},
      "density": total / (num_users * n),
      "train_long_tail": long_tail_stats(train_counts),
      "items_with_image": sum(bool(b) for b in catalog.image),
      "items_with_text": sum(has_text),
      "new_items": int(is_new.sum()),
      "cold_items": int(is_cold.sum()),
      "cleaning": cleaning,
  }


def load_dataset(path: str | pathlib.Path) -> RecDataset:
  """Loads a dataset directory written by `build_dataset`."""
  path = pathlib.Path(path)
  if not (path / META_FILE).exists():
    raise FileNotFoundError(f"{path}: not an mmrec dataset (no {META_FILE})")
  meta = json.loads((path / META_FILE).read_text())
  catalog, is_cold = builders.read_catalog(path)
  splits = builders.read_interactions(path)
  num_users = int(meta["num_users"])
  for s, v in splits.items():
    if len(v) and (v.item.max() >= len(catalog) or v.user.max() >= num_users):
      raise ValueError(f"{path}: split {s!r} refers to items or users beyond the catalog "
                       f"({len(catalog)} items) or num_users ({num_users}) in {META_FILE}")
  tokenizer = path / TOKENIZER_FILE
  return RecDataset(catalog=catalog, splits=splits, is_cold=is_cold, num_users=num_users,
                    tokenizer_path=str(tokenizer) if tokenizer.exists() else None, meta=meta)


def load_truth(path: str | pathlib.Path) -> dict[str, np.ndarray] | None:
  """The arrays of `truth.npz` in a dataset directory, or None if it has none."""
  file = pathlib.Path(path) / TRUTH_FILE
  if not file.exists():
    return None
  with np.load(file, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def decode_images(catalog: Catalog, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns (uint8 `[N, size, size, 3]` RGB, has_image bool `[N]`).

  Images are resized to size x size when they differ; missing or undecodable
  ones give zeros and has_image False.
  """
  images = np.zeros((len(catalog), size, size, 3), np.uint8)
  has_image = np.zeros(len(catalog), bool)
  for i, data in enumerate(catalog.image):
    if not data:
      continue
    try:
      with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (size, size))  # JPEGs decode at a reduced scale when large.
        rgb = image.convert("RGB")
    except Exception:  # PIL raises many types (OSError, SyntaxError, ValueError, ...).
      continue
    if rgb.size != (size, size):
      rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    images[i] = np.asarray(rgb)
    has_image[i] = True
  return images, has_image


def _replace(tmp: pathlib.Path, final: pathlib.Path) -> pathlib.Path:
  """Moves the finished `tmp` to `final`, removing an earlier `final` only afterwards."""
  old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
  if final.exists():
    final.rename(old)
  try:
    tmp.rename(final)
  except OSError:
    if old.exists():
      old.rename(final)
    raise
  shutil.rmtree(old, ignore_errors=True)
  return final
