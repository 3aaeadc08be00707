"""What every importer shares: the item and interaction collectors, the result (drop
counting: drops.py).

Importers read raw files in a stream and hand rows to a `CatalogBuilder`
(items; ids kept as given, text normalised, images re-encoded) and an
`InteractionCollector` (users and items remapped to contiguous indices,
unusable rows counted per reason). The result is an `Imported`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmrec.data import split as split_lib
from mmrec.data.clean import MAX_TIMESTAMP
from mmrec.data.importers import checks
from mmrec.data.importers import images as images_lib
from mmrec.data.importers import text as text_lib
from mmrec.data.importers.checks import Rules
from mmrec.data.importers.drops import (ITEM_REASONS, NUM_EXAMPLES, ROW_REASONS, USER_REASONS,
                                        DataImportError, Drops)
from mmrec.data.importers.images import OUTCOMES, ImageEncoder
from mmrec.data.importers.tables import to_text
from mmrec.data.schema import Catalog


def require_file(directory: pathlib.Path, *names: str, what: str = "") -> pathlib.Path:
  """The first of `names` present in `directory`, else a DataImportError naming them."""
  for name in names:
    if (directory / name).is_file():
      return directory / name
  listed = " or ".join(str(directory / n) for n in names)
  raise DataImportError(f"missing required file {listed}{f' ({what})' if what else ''}")


def require_dir(path: str | pathlib.Path) -> pathlib.Path:
  path = pathlib.Path(path).expanduser()
  if not str(path) or not path.is_dir():
    raise DataImportError(f"data directory {str(path)!r} does not exist (set --path / "
                          "data.import_.path)")
  return path


@dataclasses.dataclass
class Imported:
  """An importer's output: the catalog, remapped interactions and what was dropped."""

  catalog: Catalog
  user_ids: list[str]  # user index -> original id
  user: np.ndarray  # int64 [M]
  item: np.ndarray  # int64 [M]
  timestamp: np.ndarray  # int64 [M], seconds (row order when the source has none)
  rating: np.ndarray | None  # float64 [M], None when the source has no ratings
  image_outcome: np.ndarray  # int8 [N], index into images.OUTCOMES
  report: dict[str, Any]
  split: np.ndarray | None = None  # int8 [M], the file's split (0 train, 1 valid, 2 test)


DEFAULT_COLUMNS = dict(user="user_id", item="item_id", timestamp="timestamp", rating="rating",
                       item_id="item_id", title="title", description="description",
                       category="category", image="")


@dataclasses.dataclass
class Options:
  """Import options (config `data.import_` and `data.clean` size limits; docs/data.md)."""

  columns: dict[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_COLUMNS))
  interactions_file: str = ""
  items_file: str = ""
  image_dir: str = "images"
  timestamp_unit: str = "s"
  image_size: int = 64
  image_format: str = "jpeg"
  image_quality: int = 90
  workers: int = 2
  max_id_chars: int = 256
  max_text_chars: int = 4000
  max_image_bytes: int = 20_000_000
  max_image_pixels: int = images_lib.MAX_PIXELS
  # Protocol "given": the (train, valid, test) parts of the interaction file names, one file
  # per split (data.split.benchmark_filename); () = one interaction file.
  given_files: tuple[str, ...] = ()

  @classmethod
  def from_config(cls, data_cfg) -> "Options":
    imp, clean = data_cfg.import_, data_cfg.clean
    given = ()
    if data_cfg.protocol == "given":
      parts = data_cfg.get("split", {}).get("benchmark_filename", split_lib.GIVEN_FILES)
      given = split_lib.check_benchmark_filename(parts)
    return cls(columns=dict(DEFAULT_COLUMNS) | dict(imp.columns),
               interactions_file=imp.interactions_file, items_file=imp.items_file,
               image_dir=imp.image_dir, timestamp_unit=imp.timestamp_unit,
               image_size=data_cfg.image_size, image_format=imp.image_format,
               image_quality=imp.image_quality, workers=imp.workers,
               max_id_chars=clean.max_id_chars, max_text_chars=clean.max_text_chars,
               max_image_bytes=clean.max_image_bytes,
               max_image_pixels=clean.get("max_image_pixels", images_lib.MAX_PIXELS),
               given_files=given)

  def encoder(self) -> ImageEncoder:
    return ImageEncoder(self.image_size, self.image_format, self.image_quality,
                        self.max_image_bytes, self.workers, self.max_image_pixels)

  def catalog_builder(self, file: str, rules: Rules = Rules()) -> "CatalogBuilder":
    return CatalogBuilder(file, self.max_id_chars, self.max_text_chars, rules)

  def collector(self, item_index: dict[str, int], known_users: "UserList | None" = None,
                rules: Rules = Rules()) -> "InteractionCollector":
    return InteractionCollector(item_index, self.max_id_chars, known_users, rules)

  def user_list(self, rules: Rules = Rules()) -> "UserList":
    return UserList(self.max_id_chars, rules)


def finish(fmt: str, path: pathlib.Path, files: list[pathlib.Path], builder: "CatalogBuilder",
           collector: "InteractionCollector", encoder: ImageEncoder | None,
           has_rating: bool, has_timestamp: bool = True, given: bool = False) -> Imported:
  """Encodes the images and assembles the `Imported` with its report (`given`: keep each
  row's split, from `InteractionCollector.add(split=...)`)."""
  catalog, items = builder.finish(encoder)
  user, item, timestamp, rating = collector.finish(has_rating)
  report = {"format": fmt, "path": str(path), "files": [str(f) for f in files],
            "has_rating": has_rating, "has_timestamp": has_timestamp,
            "items": items, "interactions": collector.report()}
  if collector.known_users is not None:
    report["users"] = collector.known_users.report()
  return Imported(catalog=catalog, user_ids=list(collector.user_index), user=user, item=item,
                  timestamp=timestamp, rating=rating,
                  image_outcome=np.array(builder.image_outcome, np.int8), report=report,
                  split=collector.split_of() if given else None)


class CatalogBuilder:
  """Collects item rows: ids checked and kept as given, text normalised, images at the end."""

  def __init__(self, file: str, max_id_chars: int, max_text_chars: int, rules: Rules = Rules()):
    self.file, self.max_id_chars, self.max_text_chars = file, max_id_chars, max_text_chars
    self.id_form = re.compile(rules.item_id) if rules.item_id else None
    self.drops = Drops(ITEM_REASONS)
    self.index: dict[str, int] = {}
    self._cols: dict[str, list] = {k: [] for k in ("title", "description", "category", "image")}
    self._attrs: dict[str, list[str]] = {}
    self.image_outcome: list[int] = []  # per item, index into images.OUTCOMES

  def add(self, item_id, title="", description="", category="", image=None,
          attributes: dict[str, str] | None = None, where: str = "") -> int | None:
    """Adds one item; returns its index, or None when the row is dropped (counted)."""
    item_id = "" if item_id is None else str(item_id).strip()
    reason = ("missing_id" if not item_id else "oversized_id" if len(item_id) > self.max_id_chars
              else "bad_id" if self.id_form and not self.id_form.fullmatch(item_id)
              else "duplicate_item" if item_id in self.index else None)
    if reason:
      self.drops.add(reason, where, file=self.file)
      return None
    cut = False
    for key, value in (("title", title), ("description", description), ("category", category)):
      value, was_cut = text_lib.truncate(text_lib.normalize(value), self.max_text_chars)
      cut |= was_cut
      self._cols[key].append(value)
    if cut:
      self.drops.add("oversized_text", where or item_id, file=self.file)
    self._cols["image"].append(image)
    n = len(self.index)
    attributes = attributes or {}
    for name in set(self._attrs) | set(attributes):
      column = self._attrs.setdefault(name, [""] * n)
      column.append(text_lib.normalize(attributes.get(name, "")))
    self.index[item_id] = n
    return n

  def malformed(self, where: str):
    """Counts an item row that could not be parsed."""
    self.drops.add("malformed_line", where, file=self.file)

  def __len__(self) -> int:
    return len(self.index)

  def finish(self, encoder: ImageEncoder | None) -> tuple[Catalog, dict[str, Any]]:
    """The Catalog (images encoded now, in order) and the item report."""
    images, outcomes = [], {k: 0 for k in OUTCOMES}
    examples: dict[str, list[str]] = {}
    ids = list(self.index)
    sources = self._cols["image"] if encoder else [None] * len(ids)
    results = encoder.encode_all(sources) if encoder else ((b"", "no_image") for _ in ids)
    for item_id, (data, outcome) in zip(ids, results):
      images.append(data)
      outcomes[outcome] += 1
      self.image_outcome.append(OUTCOMES.index(outcome))
      if outcome not in ("ok", "no_image"):
        kept = examples.setdefault(outcome, [])
        if len(kept) < NUM_EXAMPLES:
          kept.append(item_id)
    attributes, values = {}, {}
    for name, column in self._attrs.items():
      column += [""] * (len(ids) - len(column))
      names, codes = np.unique(np.array(column, dtype=object).astype(str), return_inverse=True)
      attributes[name], values[name] = codes.astype(np.int32), names.tolist()
    catalog = Catalog(item_id=_objects(ids), title=_objects(self._cols["title"]),
                      description=_objects(self._cols["description"]),
                      category=_objects(self._cols["category"]), image=images,
                      attributes=attributes, attribute_values=values)
    self.drops.kept[self.file] = len(ids)
    report = {"file": self.file, "read": len(ids) + self.drops.total(), "kept": len(ids),
              **self.drops.as_dict(),
              "images": outcomes, "image_examples": examples}
    return catalog, report


class InteractionCollector:
  """Streams interaction rows in; users get indices by first appearance."""

  def __init__(self, item_index: dict[str, int], max_id_chars: int,
               known_users: "UserList | None" = None, rules: Rules = Rules()):
    self.item_index, self.max_id_chars, self.known_users = item_index, max_id_chars, known_users
    self.rules = rules
    self.drops = Drops(ROW_REASONS)
    self.user_index: dict[str, int] = {}
    self._parts: list[tuple[np.ndarray, ...]] = []
    self._rows = 0

  def add(self, source: str, rows: np.ndarray, user: pa.Array, item: pa.Array,
          seconds: np.ndarray | None, rating: np.ndarray | None,
          malformed: np.ndarray | None = None, split: int = 0):
    """One batch from file `source`: string ids, timestamps in seconds (NaN: unreadable),
    ratings (NaN: bad); `rows`: their line numbers; `malformed` marks rows the reader
    found malformed in another way; `split`: the batch's split under protocol "given"
    (0 train, 1 valid, 2 test)."""
    user, item = to_text(user), to_text(item)
    m = len(user)
    order = np.arange(self._rows, self._rows + m, dtype=np.int64)  # stand-in time: row order
    self._rows += m
    item_code = _lookup(self.item_index, item)
    rules, max_chars = self.rules, self.max_id_chars
    reasons = [("malformed_line", np.zeros(m, bool) if malformed is None else malformed),
               ("missing_id", checks.blank(user) | checks.blank(item)),
               ("oversized_id", checks.longer(user, max_chars) | checks.longer(item, max_chars)),
               ("bad_id", checks.bad_form(user, rules.user_id)
                | checks.bad_form(item, rules.item_id))]
    if seconds is not None:
      reasons.append(("bad_timestamp", ~((seconds >= 0) & (seconds <= MAX_TIMESTAMP))))
    if rating is not None:
      reasons.append(("bad_rating", checks.bad_ratings(rating, rules)))
    reasons.append(("unknown_item", item_code < 0))
    if self.known_users is not None:
      reasons.append(("unknown_user", ~pc.fill_null(pc.is_in(user, self.known_users.ids()),
                                                    False).to_numpy(zero_copy_only=False)))
    keep = np.ones(m, bool)
    for reason, bad in reasons:
      hit = keep & bad
      if hit.any():
        examples = [checks.location(source, r) for r in rows[hit][:NUM_EXAMPLES]]
        self.drops.add_many(reason, examples, int(hit.sum()), file=source)
      keep &= ~bad
    index = np.flatnonzero(keep)
    self.drops.kept[source] = self.drops.kept.get(source, 0) + len(index)
    user_code = _lookup(self.user_index, user.take(pa.array(index)), add=True)
    time = order[index] if seconds is None else seconds[index].astype(np.int64)
    self._parts.append((user_code, item_code[index], time,
                        rating[index] if rating is not None else None,
                        np.full(len(index), split, np.int8)))

  def finish(self, has_rating: bool) -> tuple[np.ndarray, ...]:
    """(user, item, timestamp, rating or None) over all batches, in input order."""
    cat = lambda i, dtype: np.concatenate([p[i] for p in self._parts] or [np.zeros(0, dtype)])
    rating = cat(3, np.float64) if has_rating else None
    return cat(0, np.int64), cat(1, np.int64), cat(2, np.int64), rating

  def split_of(self) -> np.ndarray:
    """Each kept row's `split`, in input order."""
    return np.concatenate([p[4] for p in self._parts] or [np.zeros(0, np.int8)])

  def report(self) -> dict[str, Any]:
    kept = sum(len(p[0]) for p in self._parts)
    return {"read": kept + self.drops.total(), "kept": kept, **self.drops.as_dict()}


class UserList:
  """The users listed in an optional user file: ids checked like interaction ids."""

  def __init__(self, max_id_chars: int, rules: Rules = Rules()):
    self.max_id_chars, self.rules = max_id_chars, rules
    self.drops = Drops(USER_REASONS)
    self.file = ""
    self._parts: list[pa.Array] = []

  def add(self, source: str, rows: np.ndarray, user: pa.Array):
    user = to_text(user)
    self.file = source
    keep = np.ones(len(user), bool)
    for reason, bad in (("missing_id", checks.blank(user)),
                        ("oversized_id", checks.longer(user, self.max_id_chars)),
                        ("bad_id", checks.bad_form(user, self.rules.user_id))):
      hit = keep & bad
      examples = [checks.location(source, r) for r in rows[hit][:NUM_EXAMPLES]]
      self.drops.add_many(reason, examples, int(hit.sum()), file=source)
      keep &= ~bad
    self._parts.append(user.filter(pa.array(keep)))
    self.drops.kept[source] = self.drops.kept.get(source, 0) + int(keep.sum())

  def ids(self) -> pa.Array:
    return pa.concat_arrays(self._parts) if self._parts else pa.array([], pa.string())

  def report(self) -> dict[str, Any]:
    kept = sum(len(p) for p in self._parts)
    return {"file": self.file, "read": kept + self.drops.total(), "kept": kept,
            **self.drops.as_dict()}


def _objects(values: list) -> np.ndarray:
  out = np.empty(len(values), dtype=object)
  out[:] = values
  return out


def _lookup(index: dict[str, int], ids: pa.Array, add: bool = False) -> np.ndarray:
  """Indices of string ids (-1 when unknown, or new ones appended when `add`)."""
  encoded = pc.dictionary_encode(pc.fill_null(ids, ""))
  values = encoded.dictionary.to_pylist()
  if add:
    codes = np.array([index.setdefault(v, len(index)) for v in values], np.int64)
  else:
    codes = np.array([index.get(v, -1) for v in values], np.int64)
  if not len(ids):
    return np.zeros(0, np.int64)
  return codes[encoded.indices.to_numpy(zero_copy_only=False)]
