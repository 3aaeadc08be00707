"""Generic import: one interactions file and one items file (CSV, TSV or Parquet).

Column mapping (`data.import_.columns`, or `--columns user=uid,item=sku,...`):
interactions `user`, `item` (required), `timestamp`, `rating`; items `item_id`
(required), `title`, `description` (several columns joined with "+", e.g.
`description=desc+features`), `category`, `image` (a column of image paths
relative to the data directory). Optional columns left at their default
names may be absent; a name you changed must exist. Images: the `image`
column, else `<image_dir>/<item id>.<jpg|png|...>` when that folder exists.
Timestamps: `data.import_.timestamp_unit` (s, ms, us or a strptime format);
without a timestamp column, row order stands in for time.
Protocol "given": one interactions file per split, `interactions.train.csv`,
`interactions.valid.csv`, `interactions.test.csv` (parts from
`data.split.benchmark_filename`, inserted before the suffix of
`data.import_.interactions_file` when that is set), same columns in each.
"""

from __future__ import annotations

import pathlib

from mmrec.data.importers import checks, tables
from mmrec.data.importers.base import DEFAULT_COLUMNS, Imported, Options, finish, require_dir
from mmrec.data.importers.drops import DataImportError, Drops
from mmrec.data.importers.images import ImageFolder

SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet")


def read_generic(path, options: Options) -> Imported:
  path = require_dir(path)
  cols = options.columns
  inter_files = _interaction_files(path, options)
  items_file = _find(path, options.items_file, "items")

  item_present = _columns(items_file)
  item_roles = {"item_id": _required(items_file, item_present, "item_id", cols)}
  for role in ("title", "category", "image"):
    item_roles[role] = _optional(items_file, item_present, role, cols)
  descriptions = [c for c in cols.get("description", "").split("+") if c]
  if cols.get("description", "") == DEFAULT_COLUMNS["description"]:
    descriptions = [c for c in descriptions if c in item_present]
  tables.require_columns(items_file, item_present, {f"description[{i}]": c
                                                    for i, c in enumerate(descriptions)})
  builder = options.catalog_builder(items_file.name)
  folder = ImageFolder(path / options.image_dir) if options.image_dir else ImageFolder(None)
  wanted = sorted({c for c in item_roles.values() if c} | set(descriptions))
  for batch, rows in _stream(items_file, wanted, builder.drops, multiline=True):
    values = {c: tables.to_text(batch[c]).to_pylist() for c in wanted}
    get = lambda role, i: (values[item_roles[role]][i] or "") if item_roles[role] else ""
    for i, row in enumerate(rows.tolist()):
      item_id = get("item_id", i)
      image = (str(path / get("image", i)) if get("image", i) else None) if item_roles[
          "image"] else folder.find(item_id)
      text = [values[c][i] for c in descriptions]
      builder.add(item_id, get("title", i), ". ".join(t for t in text if t and t.strip()),
                  get("category", i), image=image, where=checks.location(items_file.name, row))

  collector = options.collector(builder.index)
  first = None
  for split, inter_file in enumerate(inter_files):
    inter_present = _columns(inter_file)
    roles = {r: _required(inter_file, inter_present, r, cols) for r in ("user", "item")}
    roles |= {r: _optional(inter_file, inter_present, r, cols) for r in ("timestamp", "rating")}
    first = first or (inter_file, roles)
    if roles != first[1]:  # timestamps or ratings in some split files only
      raise DataImportError(f"{inter_file}: columns {roles} differ from {first[0]}'s {first[1]}")
    for batch, rows in _stream(inter_file, [c for c in roles.values() if c], collector.drops):
      seconds = (tables.to_seconds(batch[roles["timestamp"]], options.timestamp_unit)
                 if roles["timestamp"] else None)
      rating = tables.to_float(batch[roles["rating"]]) if roles["rating"] else None
      collector.add(inter_file.name, rows, batch[roles["user"]], batch[roles["item"]], seconds,
                    rating, split=split)
  encoder = options.encoder() if (item_roles["image"] or len(folder)) else None
  return finish("generic", path, [*inter_files, items_file], builder, collector, encoder,
                has_rating=bool(roles["rating"]), has_timestamp=bool(roles["timestamp"]),
                given=bool(options.given_files))


def _interaction_files(path: pathlib.Path, options: Options) -> list[pathlib.Path]:
  """The interactions file, or under protocol "given" the train, valid and test files."""
  if not options.given_files:
    return [_find(path, options.interactions_file, "interactions")]
  configured = options.interactions_file
  with_part = lambda part: next((configured[:-len(s)] + f".{part}{s}" for s in SUFFIXES
                                 if configured.endswith(s)), f"{configured}.{part}")
  return [_find(path, with_part(part) if configured else "", f"interactions.{part}",
                f"the {split} split of data.protocol='given': data.split.benchmark_filename")
          for split, part in zip(("train", "valid", "test"), options.given_files)]


def _find(path: pathlib.Path, configured: str, stem: str, what: str = "") -> pathlib.Path:
  if configured:
    file = pathlib.Path(configured).expanduser()
    file = file if file.is_absolute() else path / file
    if not file.is_file():
      raise DataImportError(f"missing required file {file} ({what or stem})")
    return file
  for suffix in SUFFIXES:
    if (path / f"{stem}{suffix}").is_file():
      return path / f"{stem}{suffix}"
  raise DataImportError(f"missing required file {path}/{stem}.{{csv,tsv,parquet}} "
                        f"({what or f'or set data.import_.{stem}_file'})")


def _columns(file: pathlib.Path) -> list[str]:
  if file.suffix == ".parquet":
    return tables.parquet_columns(file)
  return tables.header(file, _delimiter(file))


def _delimiter(file: pathlib.Path) -> str:
  return "\t" if ".tsv" in file.suffixes else ","


def _stream(file: pathlib.Path, columns: list[str], drops: Drops, multiline: bool = False):
  if file.suffix == ".parquet":
    return tables.read_parquet(file, columns)
  return tables.read_delimited(file, columns, drops, delimiter=_delimiter(file),
                               multiline=multiline)


def _required(file: pathlib.Path, present: list[str], role: str, cols: dict) -> str:
  column = cols.get(role, "")
  if not column:
    raise DataImportError(f"{file}: the {role!r} column must be named (data.import_.columns."
                          f"{role} / --columns {role}=NAME)")
  tables.require_columns(file, present, {role: column})
  return column


def _optional(file: pathlib.Path, present: list[str], role: str, cols: dict) -> str:
  """The column for `role`, "" when unset or absent at its default name; else it must exist."""
  column = cols.get(role, "")
  if not column or (column == DEFAULT_COLUMNS.get(role) and column not in present):
    return ""
  tables.require_columns(file, present, {role: column})
  return column
