"""Protocol `given`: the train, valid and test files of an import are kept as given, row for
row (generic and RecBole atomic files), through cleaning; missing files are named."""

import csv

import numpy as np
import pytest

from mmrec.configs import two_tower
from mmrec.data import importers
from mmrec.data.dataset import load_dataset
from mmrec.data.importers import DataImportError
from mmrec.data.importers.build import import_dataset, load_user_ids

ITEMS = [("s1", "Red shirt"), ("s2", "Blue mug"), ("s3", "Hat"), ("s4", "Sock"), ("s5", "Scarf"),
         ("s6", "Never bought")]
# Not a time split: valid and test hold rows earlier than train's; s5 is only in test,
# user dave only in valid.
ROWS = {"train": [("alice", "s1", 50, 5), ("bob", "s2", 60, 4), ("alice", "s2", 70, 3),
                  ("carol", "s3", 80, 4), ("bob", "s1", 90, 5)],
        "valid": [("alice", "s3", 10, 4), ("dave", "s1", 20, 2)],
        "test": [("bob", "s4", 5, 5), ("carol", "s5", 30, 4), ("alice", "s4", 40, 1)]}


def _config(fmt, path, **clean):
  cfg = two_tower.get_config("tiny")
  cfg.data.source, cfg.data.protocol = "import", "given"
  cfg.data.import_.format, cfg.data.import_.path = fmt, str(path)
  cfg.data.clean.update(clean)
  return cfg


def _write_generic(path, rows=ROWS, parts=("train", "valid", "test")):
  path.mkdir()
  with open(path / "items.csv", "w", newline="") as f:
    csv.writer(f).writerows([("item_id", "title"), *ITEMS])
  for split, part in zip(("train", "valid", "test"), parts):
    with open(path / f"interactions.{part}.csv", "w", newline="") as f:
      csv.writer(f).writerows([("user_id", "item_id", "timestamp", "rating"), *rows[split]])


def _write_recbole(path, rows=ROWS, parts=("train", "valid", "test")):
  path.mkdir()
  lines = ["item_id:token\tmovie_title:token_seq"] + [f"{i}\t{t}" for i, t in ITEMS]
  (path / f"{path.name}.item").write_text("\n".join(lines) + "\n")
  for split, part in zip(("train", "valid", "test"), parts):
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{r}\t{t}" for u, i, t, r in rows[split]]
    (path / f"{path.name}.{part}.inter").write_text("\n".join(lines) + "\n")


def _file_rows(file, delimiter):
  """(user, item, timestamp) of each row of a file, read with the csv module alone."""
  with open(file, newline="") as f:
    rows = list(csv.DictReader(f, delimiter=delimiter))
  name = lambda row, field: next(v for k, v in row.items() if k.split(":")[0] == field)
  return [(name(r, "user_id"), name(r, "item_id"), int(float(name(r, "timestamp"))))
          for r in rows]


def _stored(path):
  """Per split, the stored rows as (user id, item id, timestamp), sorted; and is_cold by id."""
  data = load_dataset(path)
  users, items = load_user_ids(path), data.catalog.item_id
  splits = {s: sorted((users[u], str(items[i]), int(t)) for u, i, t in
                      zip(v.user.tolist(), v.item.tolist(), v.timestamp.tolist()))
            for s, v in data.splits.items()}
  return splits, dict(zip(map(str, items), data.is_cold.tolist()))


@pytest.mark.parametrize("fmt", ["generic", "recbole"])
def test_given_keeps_every_row_of_each_file_and_only_those(tmp_path, fmt):
  src = tmp_path / "ml"
  (_write_generic if fmt == "generic" else _write_recbole)(src)
  out = import_dataset(_config(fmt, src).data, tmp_path / "data")
  splits, is_cold = _stored(out)
  for split in ("train", "valid", "test"):
    file = (src / f"interactions.{split}.csv" if fmt == "generic"
            else src / f"ml.{split}.inter")
    assert splits[split] == sorted(_file_rows(file, "," if fmt == "generic" else "\t")), split
    assert len(splits[split]) == len(ROWS[split])
  train_items = {i for _, i, _, _ in ROWS["train"]}
  assert is_cold == {i: i not in train_items for i, _ in ITEMS}  # s5 (test only) is cold
  meta = load_dataset(out).meta
  assert meta["protocol"] == "given"
  assert meta["split_options"] == {"benchmark_filename": ["train", "valid", "test"]}
  assert meta["report"]["interactions"] == {"train": 5, "valid": 2, "test": 3, "total": 10}


def test_cleaning_drops_rows_but_never_moves_them(tmp_path):
  rows = {k: list(v) for k, v in ROWS.items()}
  rows["test"].append(("bob", "s2", 95, 5))  # a later repeat of a train row: dedupe drops train's
  rows["valid"].append(("alice", "s3", 10, 4))  # an exact duplicate
  _write_generic(tmp_path / "g", rows)
  out = import_dataset(_config("generic", tmp_path / "g", rating_threshold=4).data,
                       tmp_path / "data")
  splits, _ = _stored(out)
  seen, expected = set(), {}
  for split in ("train", "valid", "test"):  # by hand: the rows cleaning keeps, where given
    expected[split] = []
    for u, i, t, r in rows[split]:
      later = any((u2, i2) == (u, i) and t2 > t for s in rows.values() for u2, i2, t2, _ in s)
      if (u, i, t) not in seen and not later and r >= 4:
        expected[split].append((u, i, t))
      seen.add((u, i, t))
  assert splits == {s: sorted(v) for s, v in expected.items()}
  assert ("bob", "s2", 95) in splits["test"] and ("bob", "s2", 60) not in splits["train"]
  dropped = {s["step"]: s["dropped"] for s in load_dataset(out).meta["import"]["steps"][1:]}
  assert dropped == {"exact_duplicates": 1, "repeated_events": 1, "rating_threshold": 3,
                     "k_core": 0}


def test_benchmark_filename_names_the_parts(tmp_path):
  parts = ("part-a", "part-b", "part-c")
  _write_recbole(tmp_path / "ml", parts=parts)
  cfg = _config("recbole", tmp_path / "ml")
  cfg.data.split.benchmark_filename = parts
  splits, _ = _stored(import_dataset(cfg.data, tmp_path / "data"))
  assert splits["valid"] == sorted((u, i, t) for u, i, t, _ in ROWS["valid"])
  imported = importers.read("movielens", tmp_path / "ml",
                            importers.Options.from_config(cfg.data))  # atomic files as well
  assert np.bincount(imported.split).tolist() == [5, 2, 3]


@pytest.mark.parametrize("fmt, missing", [("generic", "interactions.valid.csv"),
                                          ("generic", "interactions.train.csv"),
                                          ("recbole", "ml.test.inter"),
                                          ("recbole", "ml.train.inter")])
def test_a_missing_split_file_is_named(tmp_path, fmt, missing):
  (_write_generic if fmt == "generic" else _write_recbole)(tmp_path / "ml")
  (tmp_path / "ml" / missing).unlink()
  options = importers.Options.from_config(_config(fmt, tmp_path / "ml").data)
  split = missing.split(".")[-2]
  stem = "interactions" if fmt == "generic" else "ml" if split != "train" else "NAME"
  with pytest.raises(DataImportError, match=rf"missing required file \S*{stem}\.{split}\."
                                            rf"\S* \(the {split} split of data.protocol='given'"):
    importers.read(fmt, tmp_path / "ml", options)


def test_given_needs_split_files(tmp_path):
  with pytest.raises(DataImportError, match="not 'amazon'"):
    importers.read("amazon", tmp_path, importers.Options(given_files=("train", "valid", "test")))
  cfg = _config("generic", tmp_path)
  cfg.data.split.benchmark_filename = ("train", "train", "test")
  with pytest.raises(ValueError, match="3 distinct parts"):
    importers.Options.from_config(cfg.data)
