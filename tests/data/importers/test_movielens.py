"""MovieLens ml-100k / ml-1m layouts and RecBole atomic files: every good row arrives,
every bad one is counted under its reason; the real ML-100k from the recbole package."""

import csv
import importlib.util
import pathlib

import pytest

from mmrec.data import importers
from mmrec.data.importers import DataImportError

GOOD = [("1", "10", 4.0, 881250949), ("1", "20", 3.0, 881250950), ("2", "10", 5.0, 881250951),
        ("3", "30", 1.0, 881250952), ("2", "30", 2.0, 881250953)]


def _rows(rows):
  return sorted((u, i, t, r) for u, i, r, t in rows)


def test_ml100k(tmp_path, imported_rows):
  items = ["10|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1" + "|0" * 13,
           "20|Café Society|01-Jan-1996||http://x|0|1" + "|0" * 17,
           "30|unknown||||1" + "|0" * 18,
           "40|Broken line|01-Jan-1995",  # malformed: too few fields
           "10|Toy Story again (1995)|||x" + "|0" * 19]  # duplicate id
  (tmp_path / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
  lines = [f"{u}\t{i}\t{int(r)}\t{t}" for u, i, r, t in GOOD]
  bad = {"malformed_line": ["1\t10\t4"], "bad_rating": ["1\t10\tfour\t881250960"],
         "bad_timestamp": ["2\t20\t3\tyesterday", "2\t20\t3\t-5"],
         "unknown_item": ["1\t99\t3\t881250961"], "missing_id": ["\t10\t3\t881250962"]}
  for k, extra in enumerate(sum(bad.values(), [])):
    lines.insert(1 + 2 * k, extra)
  (tmp_path / "u.data").write_text("\n".join(lines) + "\n")

  imported = importers.read("movielens", tmp_path)
  assert imported_rows(imported) == _rows(GOOD)
  counts = imported.report["interactions"]["counts"]
  assert {k: v for k, v in counts.items() if v} == {k: len(v) for k, v in bad.items()}
  assert imported.report["interactions"]["examples"] == {  # physical lines, from 1
      "malformed_line": ["u.data line 2"], "bad_rating": ["u.data line 4"],
      "bad_timestamp": ["u.data line 6", "u.data line 8"], "unknown_item": ["u.data line 10"],
      "missing_id": ["u.data line 11"]}
  assert imported.report["items"]["counts"]["malformed_line"] == 1
  assert imported.report["items"]["counts"]["duplicate_item"] == 1
  catalog = imported.catalog
  assert catalog.item_id.tolist() == ["10", "20", "30"]
  assert catalog.title.tolist() == ["Toy Story (1995)", "Café Society (1996)", "unknown"]
  assert catalog.description.tolist() == ["Animation, Children's, Comedy", "Action", "unknown"]
  assert catalog.category.tolist() == ["Animation", "Action", "unknown"]
  assert catalog.image == [b"", b"", b""]
  assert imported.report["items"]["images"]["no_image"] == 3


def test_ml1m(tmp_path, imported_rows):
  movies = ["10::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi",
            "20::Matrix, The (1999)::Action", "30::Ça ira (2001)::Drama", "oops"]
  (tmp_path / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
  (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::1\n")
  lines = [f"{u}::{i}::{int(r)}::{t}" for u, i, r, t in GOOD]
  bad = {"malformed_line": ["1::10::4", "1:x:10::4::881250960", "1::10::4::8812::1"],
         "unknown_user": ["7::10::4::881250961"], "unknown_item": ["1::11::4::881250962"]}
  lines[2:2] = sum(bad.values(), [])
  (tmp_path / "ratings.dat").write_text("\n".join(lines) + "\n")

  imported = importers.read("movielens", tmp_path)
  assert imported.report["format"] == "movielens/ml-1m"
  assert imported_rows(imported) == _rows(GOOD)
  counts = imported.report["interactions"]["counts"]
  assert {k: v for k, v in counts.items() if v} == {k: len(v) for k, v in bad.items()}
  assert imported.catalog.title.tolist()[::2] == ["Star Wars: Episode IV - A New Hope (1977)",
                                                  "Ça ira (2001)"]
  assert imported.catalog.description[0] == "Action, Sci-Fi"
  assert imported.report["items"]["counts"]["malformed_line"] == 1


def _write_atomic(path: pathlib.Path, inter_header="user_id:token\titem_id:token\trating:float"
                  "\ttimestamp:float"):
  path.mkdir()
  lines = [inter_header] + [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in GOOD]
  lines[3:3] = ["2\t10", "3\t10\t4\t1e99", "9\t10\t4\t881250970", "3\t10\tnan\t881250971"]
  (path / f"{path.name}.inter").write_text("\n".join(lines) + "\n")
  (path / f"{path.name}.item").write_text(
      "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
      "10\tToy Story\t1995\tAnimation Children's\n20\tGoldenEye\t1995\tAction\n"
      "30\tFour Rooms\t\tThriller\n")
  (path / f"{path.name}.user").write_text("user_id:token\tage:token\n1\t24\n2\t53\n3\t23\n")


def test_recbole_atomic(tmp_path, imported_rows):
  _write_atomic(tmp_path / "toy")
  imported = importers.read("recbole", tmp_path / "toy")
  assert imported_rows(imported) == _rows(GOOD)
  counts = imported.report["interactions"]["counts"]
  assert {k: v for k, v in counts.items() if v} == {"malformed_line": 1, "bad_timestamp": 1,
                                                    "unknown_user": 1, "bad_rating": 1}
  assert imported.catalog.title.tolist() == ["Toy Story (1995)", "GoldenEye (1995)", "Four Rooms"]
  assert imported.catalog.text()[0] == "Toy Story (1995). Animation, Children's"
  # The movielens format finds atomic files too.
  assert imported_rows(importers.read("movielens", tmp_path / "toy")) == _rows(GOOD)


def test_missing_files_and_columns_are_named(tmp_path):
  _write_atomic(tmp_path / "nocol", inter_header="user_id:token\titem:token\trating:float"
                "\ttimestamp:float")
  with pytest.raises(DataImportError, match=r"nocol\.inter: missing required column.*'item_id'"):
    importers.read("recbole", tmp_path / "nocol")
  _write_atomic(tmp_path / "noitem")
  (tmp_path / "noitem" / "noitem.item").unlink()
  with pytest.raises(DataImportError, match=r"missing required file .*noitem/noitem\.item"):
    importers.read("recbole", tmp_path / "noitem")
  (tmp_path / "ml").mkdir()
  (tmp_path / "ml" / "u.data").write_text("1\t2\t3\t4\n")
  with pytest.raises(DataImportError, match=r"missing required file .*ml/u\.item"):
    importers.read("movielens", tmp_path / "ml")
  with pytest.raises(DataImportError, match="does not exist"):
    importers.read("movielens", tmp_path / "absent")
  with pytest.raises(DataImportError, match="unknown import format 'csv'"):
    importers.read("csv", tmp_path)


def test_real_ml100k_from_recbole(imported_rows):
  spec = importlib.util.find_spec("recbole")
  if spec is None:
    pytest.skip("the recbole data package is not installed")
  path = pathlib.Path(spec.origin).parent / "dataset_example" / "ml-100k"
  imported = importers.read("recbole", path)
  assert (len(imported.user), len(imported.user_ids), len(imported.catalog)) == (100_000, 943,
                                                                                 1682)
  assert not any(imported.report["interactions"]["counts"].values())
  with open(path / "ml-100k.inter", newline="") as f:  # An independent parse of the file.
    reader = csv.reader(f, delimiter="\t")
    next(reader)
    expected = sorted((u, i, int(float(t)), float(r)) for u, i, r, t in reader)
  assert imported_rows(imported) == expected
  assert imported.catalog.text()[0] == "Toy Story (1995). Animation, Children's, Comedy"
