"""Amazon Reviews 2023 and H&M layouts: good rows all arrive, bad ones are counted,
images are read from the local folder (missing = no image, broken = corrupt_image)."""

import io
import json
import re

import numpy as np
from PIL import Image
import pytest

from mmrec.data import importers
from mmrec.data.dataset import decode_images
from mmrec.data.importers import DataImportError, Options


def _decoded(catalog, size):
  images, has_image = decode_images(catalog, size)
  return images, has_image.tolist()


def test_amazon(tmp_path, image_files, imported_rows):
  meta = [
      {"parent_asin": "B0000000A1", "title": "Lip <b>balm</b>", "features": ["Soft", "Warm"],
       "description": ["<p>Made &amp; packed</p>"], "categories": ["Beauty", "Lips"],
       "images": [{"large": "https://m.media-amazon.com/images/I/zz1.jpg"}]},
      {"parent_asin": "B0000000A2", "title": "Mug", "main_category": "Kitchen", "categories": [],
       "images": [{"thumb": "https://x/71abc._SL75_.jpg",
                   "hi_res": "https://x/71abc._SL1500_.jpg"}]},
      {"parent_asin": "B0000000A3", "title": "Broken image"},
      {"parent_asin": "B0000000A4", "title": "No image file", "description": ["word " * 1000]},
      {"title": "No id"},
      {"parent_asin": "B0000000A1", "title": "Duplicate"},
  ]
  meta_lines = [json.dumps(m) for m in meta]
  meta_lines.insert(2, "{not json")
  (tmp_path / "meta_Beauty.jsonl").write_text("\n".join(meta_lines) + "\n")
  image_files.good(tmp_path / "images" / "B0000000A1.jpg", size=(50, 80), colour=(250, 0, 0))
  image_files.good(tmp_path / "images" / "71abc._SL1500_.png", fmt="PNG", colour=(0, 0, 250))
  image_files.truncated(tmp_path / "images" / "B0000000A3.jpg")

  good = [("U1", "B0000000A1", 5.0, 1588687728923), ("U2", "B0000000A1", 4.0, 1588687729923),
          ("U1", "B0000000A2", 1.0, 1600000000000), ("U3", "B0000000A4", 3.0, 1600000001000)]
  reviews = [json.dumps({"user_id": u, "parent_asin": a, "rating": r, "timestamp": t,
                         "text": "<br/>nice"}) for u, a, r, t in good]
  bad = {"malformed_line": ["{oops", "[1, 2]"],
         "missing_id": [json.dumps({"parent_asin": "B0000000A1", "rating": 5, "timestamp": 1})],
         "bad_rating": [json.dumps({"user_id": "U9", "parent_asin": "B0000000A1", "rating": "five",
                                    "timestamp": 1600000000000})],
         "bad_timestamp": [json.dumps({"user_id": "U9", "parent_asin": "B0000000A1", "rating": 5,
                                       "timestamp": "soon"})],
         "unknown_item": [json.dumps({"user_id": "U9", "parent_asin": "B0000000ZZ", "rating": 5,
                                      "timestamp": 1600000000000})]}
  reviews[1:1] = sum(bad.values(), [])
  (tmp_path / "Beauty.jsonl").write_text("\n".join(reviews) + "\n\n")

  imported = importers.read("amazon", tmp_path, Options(image_size=16, max_text_chars=3000))
  assert imported_rows(imported) == sorted((u, a, t // 1000, r) for u, a, r, t in good)
  counts = imported.report["interactions"]["counts"]
  assert {k: v for k, v in counts.items() if v} == {k: len(v) for k, v in bad.items()}
  items = imported.report["items"]
  assert {k: v for k, v in items["counts"].items() if v} == {
      "malformed_line": 1, "missing_id": 1, "duplicate_item": 1, "oversized_text": 1}
  assert items["images"] == {"ok": 2, "no_image": 1, "corrupt_image": 1, "oversized_image": 0,
                                                "oversized_pixels": 0}
  assert items["image_examples"] == {"corrupt_image": ["B0000000A3"]}
  catalog = imported.catalog
  assert catalog.item_id.tolist() == ["B0000000A1", "B0000000A2", "B0000000A3", "B0000000A4"]
  assert catalog.title[0] == "Lip balm"
  assert catalog.description[0] == "Soft Warm Made & packed"
  assert catalog.category.tolist() == ["Beauty > Lips", "Kitchen", "", ""]
  assert catalog.description[3] == " ".join(["word"] * 600)  # cut at a word, kept
  images, has_image = _decoded(catalog, 16)
  assert has_image == [True, True, False, False]
  assert images[0, 8, 8, 0] > 200 and images[1, 8, 8, 2] > 200  # red A1, blue A2 (by URL)


def test_amazon_needs_both_files(tmp_path):
  (tmp_path / "reviews.jsonl").write_text("")
  with pytest.raises(DataImportError,
                     match=r"one metadata file.*found reviews \['reviews.jsonl'\]"):
    importers.read("amazon", tmp_path)


def _customer(name: str) -> str:
  """A customer id of H&M's form (64 hex digits) standing for `name`, e.g. "c1"."""
  return (name * 64)[:64]


def _customers_in(text: str) -> str:
  return re.sub(r"\bc[0-9]\b", lambda m: _customer(m.group()), text)


def _write_hm(path, image_files, with_customers=True):
  path.mkdir()
  (path / "articles.csv").write_text(
      "article_id,product_code,prod_name,product_type_name,product_group_name,"
      "colour_group_name,graphical_appearance_name,detail_desc\n"
      '108775015,108775,Strap top,Vest top,Garment Upper body,Black,Solid,"Jersey top, narrow"\n'
      "0108775044,108775,Strap top (1),Vest top,Garment Upper body,White,Solid,Jersey top\n"
      "0110065001,110065,OP T-shirt,Bra,Underwear,Black,Solid,<b>Microfibre</b> T-shirt bra\n"
      "0111111111,1,too,many,fields,x,y,z,extra\n")
  if with_customers:
    (path / "customers.csv").write_text(
        _customers_in("customer_id,FN,Active,age\nc1,1,1,25\nc2,,,30\nc3,,,40\n"))
  image_files.good(path / "images" / "010" / "0108775015.jpg", size=(60, 90), colour=(0, 250, 0))
  image_files.truncated(path / "images" / "010" / "0108775044.jpg")


HM_GOOD = [("2018-09-20", "c1", "0108775015"), ("2018-09-20", "c1", "0110065001"),
           ("2018-09-21", "c2", "0108775044"), ("2018-09-22", "c3", "0108775015")]


def test_hm(tmp_path, image_files, imported_rows):
  _write_hm(tmp_path / "hm", image_files)
  lines = ["t_dat,customer_id,article_id,price,sales_channel_id"]
  lines += [f"{d},{c},{a},0.05,2" for d, c, a in HM_GOOD]
  lines[2:2] = ["2018-13-45,c1,0108775015,0.05,2", "2018-09-20,c9,0108775015,0.05,2",
                "2018-09-20,c1,0999999999,0.05,2", "2018-09-20,c1", "2018-09-20,c2,108775015,0.1,1"]
  (tmp_path / "hm" / "transactions_train.csv").write_text(_customers_in("\n".join(lines) + "\n"))

  imported = importers.read("hm", tmp_path / "hm", Options(image_size=8))
  day = lambda d: int(np.datetime64(d, "s").astype(np.int64))
  expected = [(_customer(c), a, day(d), None) for d, c, a in HM_GOOD] + [
      (_customer("c2"), "0108775015", day("2018-09-20"), None)]
  assert imported_rows(imported) == sorted(expected)
  assert imported.rating is None
  counts = imported.report["interactions"]["counts"]
  assert {k: v for k, v in counts.items() if v} == {"bad_timestamp": 1, "unknown_user": 1,
                                                    "unknown_item": 1, "malformed_line": 1}
  assert imported.report["items"]["counts"]["malformed_line"] == 1
  catalog = imported.catalog
  assert catalog.item_id.tolist() == ["0108775015", "0108775044", "0110065001"]
  assert catalog.description[0] == "Vest top, Black, Solid. Jersey top, narrow"
  assert catalog.description[2] == "Bra, Black, Solid. Microfibre T-shirt bra"
  assert catalog.category[2] == "Underwear > Bra"
  assert catalog.attribute_values["colour"] == ["Black", "White"]
  assert catalog.attributes["colour"].tolist() == [0, 1, 0]
  assert imported.report["items"]["images"] == {"ok": 1, "no_image": 1, "corrupt_image": 1,
                                                "oversized_image": 0,
                                                "oversized_pixels": 0}
  images, has_image = _decoded(catalog, 8)
  assert has_image == [True, False, False] and images[0, 4, 4, 1] > 200
  assert Image.open(io.BytesIO(catalog.image[0])).format == "JPEG"


def test_hm_missing_column_and_file(tmp_path, image_files):
  _write_hm(tmp_path / "hm", image_files, with_customers=False)
  (tmp_path / "hm" / "transactions_train.csv").write_text("t_dat,customer,article_id\n")
  with pytest.raises(DataImportError,
                     match=r"transactions_train\.csv: missing required column.*'customer_id'"):
    importers.read("hm", tmp_path / "hm")
  (tmp_path / "hm" / "articles.csv").unlink()
  with pytest.raises(DataImportError, match=r"missing required file .*hm/articles\.csv"):
    importers.read("hm", tmp_path / "hm")
