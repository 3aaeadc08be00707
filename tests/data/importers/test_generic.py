"""Generic CSV / Parquet import with a column mapping, and the whole import -> dataset path."""

import csv
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmrec.configs import two_tower
from mmrec.data import importers, sources
from mmrec.data.dataset import load_dataset
from mmrec.data.importers import DataImportError, Options
from mmrec.data.importers.build import REPORT_FILE, load_user_ids

COLUMNS = dict(user="uid", item="sku", timestamp="when", rating="stars", item_id="sku",
               title="name", description="blurb+specs", category="dept")
ITEMS = [("s1", "Red <i>shirt</i>", "Cotton", "Long sleeves", "tops"),
         ("s2", "Blue mug", "Ceramic", "", "kitchen"),
         ("s3", "Hat", "", "", "hats"),
         ("s4", "Sock", "Wool,\n blend", "", "socks")]  # a quoted line break in the CSV
GOOD = [("alice", "s1", "2024-01-02", 5), ("bob", "s1", "2024-01-03", 4),
        ("alice", "s2", "2024-01-04", 3), ("carol", "s3", "2024-01-05", 4),
        ("bob", "s2", "2024-01-06", 5), ("carol", "s1", "2024-01-07", 2)]
BAD = {"bad_timestamp": [("alice", "s3", "2024-02-30", 4)],
       "bad_rating": [("bob", "s3", "2024-01-08", "n/a")],
       "unknown_item": [("dave", "s9", "2024-01-08", 5)],
       "missing_id": [("", "s1", "2024-01-08", 5)],
       "oversized_id": [("x" * 300, "s1", "2024-01-08", 5)]}


def _day(d):
  return int(np.datetime64(d, "s").astype(np.int64))


def _write(path, fmt, image_files):
  path.mkdir()
  rows = GOOD[:3] + sum(BAD.values(), []) + GOOD[3:]
  items = {k: list(v) for k, v in zip(("sku", "name", "blurb", "specs", "dept"), zip(*ITEMS))}
  inter = {k: [str(x) for x in v] for k, v in zip(("uid", "sku", "when", "stars"), zip(*rows))}
  if fmt == "parquet":
    pq.write_table(pa.table(items), path / "items.parquet")
    pq.write_table(pa.table(inter), path / "interactions.parquet")
  else:
    with open(path / "items.csv", "w", newline="") as f:
      csv.writer(f).writerows([list(items), *zip(*items.values())])
    lines = [",".join(inter)] + [",".join(r) for r in zip(*inter.values())]
    lines.insert(2, "alice,s1")  # malformed: too few fields
    (path / "interactions.csv").write_text("\n".join(lines) + "\n")
  image_files.good(path / "images" / "s1.png", fmt="PNG", colour=(0, 0, 200))
  image_files.garbage(path / "images" / "s2.jpg")


def _options(**columns):
  return Options(columns=COLUMNS | columns, timestamp_unit="%Y-%m-%d", image_size=8,
                 max_id_chars=100)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_generic(tmp_path, fmt, image_files, imported_rows):
  _write(tmp_path / "d", fmt, image_files)
  imported = importers.read("generic", tmp_path / "d", _options())
  assert imported_rows(imported) == sorted((u, i, _day(t), float(r)) for u, i, t, r in GOOD)
  counts = {k: v for k, v in imported.report["interactions"]["counts"].items() if v}
  expected = {k: len(v) for k, v in BAD.items()} | ({"malformed_line": 1} if fmt == "csv" else {})
  assert counts == expected
  catalog = imported.catalog
  assert catalog.item_id.tolist() == ["s1", "s2", "s3", "s4"]
  assert catalog.text()[:3] == ["Red shirt. Cotton. Long sleeves", "Blue mug. Ceramic", "Hat"]
  assert catalog.category.tolist() == ["tops", "kitchen", "hats", "socks"]
  assert catalog.description[3] == "Wool, blend"
  assert imported.report["items"]["images"] == {"ok": 1, "no_image": 2, "corrupt_image": 1,
                                                "oversized_image": 0,
                                                "oversized_pixels": 0}


def test_generic_columns_must_exist(tmp_path, image_files):
  _write(tmp_path / "d", "csv", image_files)
  with pytest.raises(DataImportError, match=r"interactions\.csv: missing required column.*"
                     r"'user_name' \(user\)"):
    importers.read("generic", tmp_path / "d", _options(user="user_name"))
  with pytest.raises(DataImportError, match=r"items\.csv: missing required column.*'label'"):
    importers.read("generic", tmp_path / "d", _options(title="label"))
  # Optional columns at their default names may be absent: no rating, row order as time.
  imported = importers.read("generic", tmp_path / "d", _options(rating="rating",
                                                                timestamp="timestamp"))
  assert imported.rating is None and imported.report["has_timestamp"] is False
  assert len(imported.user) == len(GOOD) + 2  # bad_timestamp and bad_rating rows now usable
  (tmp_path / "d" / "items.csv").unlink()
  with pytest.raises(DataImportError, match=r"missing required file .*d/items\.\{csv"):
    importers.read("generic", tmp_path / "d", _options())


def _config(path, **clean):
  cfg = two_tower.get_config("tiny")
  cfg.data.source = "import"
  cfg.data.data_dir = str(path / "data")
  cfg.data.import_.update(format="generic", path=str(path / "d"), timestamp_unit="%Y-%m-%d")
  cfg.data.import_.columns.update(COLUMNS)
  cfg.data.image_size = 8
  cfg.data.clean.update(max_id_chars=100, **clean)
  return cfg


def test_import_builds_the_dataset(tmp_path, image_files):
  _write(tmp_path / "d", "csv", image_files)
  cfg = _config(tmp_path, rating_threshold=3.0, user_core=2, item_core=2)
  data = sources.load(cfg.data, tmp_path)  # Imports on first use.
  path = sources.dataset_path(cfg.data, tmp_path)
  assert path.name == "generic_d"
  # Rating >= 3: carol's 2 goes; then the 2-core: carol (1 left) and s3 go, then s2 has 2
  # (alice, bob), s1 has 2 (alice, bob): users alice and bob, items s1 and s2.
  user_ids = load_user_ids(path)
  assert sorted(user_ids) == ["alice", "bob"] and data.num_users == 2
  assert data.catalog.item_id.tolist() == ["s1", "s2"]
  got = sorted((user_ids[u], data.catalog.item_id[i], t) for s in data.splits.values()
               for u, i, t in zip(s.user, s.item, s.timestamp))
  assert got == sorted((u, i, _day(t)) for u, i, t, r in GOOD if r >= 3 and u != "carol")
  report = json.loads((path / REPORT_FILE).read_text())
  assert report == data.meta["import"]
  steps = {s["step"]: s for s in report["steps"]}
  assert steps["import"]["interactions"] == 6 and steps["import"]["dropped"]["malformed_line"] == 1
  assert steps["rating_threshold"]["dropped"] == 1
  assert steps["k_core"]["after"] == {"users": 2, "items": 2, "items_with_interactions": 2,
                                      "interactions": 4}
  final = report["final"]
  assert (final["users"], final["items"], final["interactions"], final["density"]) == (2, 2, 4, 1)
  assert final["items_with_image"] == 1
  assert final["items_without_image"] == {"no_image": 0, "corrupt_image": 1, "oversized_image": 0,
                                          "oversized_pixels": 0}
  assert final["long_tail"]["gini"] == 0.0 and final["items_with_text"] == 2
  assert load_dataset(path).catalog.image[1] == b""  # corrupt: stored without an image
  # Other cleaning options than those on disk: a clear error, not a silent reuse.
  with pytest.raises(DataImportError, match="clean.user_core: 2 on disk, 1 configured"):
    sources.load(_config(tmp_path, rating_threshold=3.0, user_core=1, item_core=2).data,
                 tmp_path)


def test_cli_data_import(tmp_path, image_files):
  _write(tmp_path / "d", "csv", image_files)
  columns = ",".join(f"{k}={v}" for k, v in COLUMNS.items())
  out = subprocess.run(
      [sys.executable, "-m", "mmrec.cli", "data", "import", "generic", f"--path={tmp_path / 'd'}",
       f"--workdir={tmp_path}", f"--columns={columns}", "--config.data.clean.max_id_chars=100",
       "--config.data.import_.timestamp_unit=%Y-%m-%d", "--config.data.image_size=8"],
      capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "bad_timestamp: 1" in out.stdout and "k_core" in out.stdout
  assert (tmp_path / "data" / "generic_d" / REPORT_FILE).exists()
  out = subprocess.run(
      [sys.executable, "-m", "mmrec.cli", "data", "import", "generic", f"--path={tmp_path / 'd'}",
       f"--workdir={tmp_path}", "--columns=item_id=sku,user=nobody"], capture_output=True,
      text=True, timeout=300)
  assert out.returncode != 0 and "'nobody' (user)" in out.stderr
  assert "Traceback" not in out.stderr
