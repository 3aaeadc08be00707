"""Cleaning: each kind of bad input is counted and handled; good rows all arrive."""

import dataclasses
import io

import numpy as np
from PIL import Image
import pytest

from mmrec.data.clean import DROP_REASONS, FIX_REASONS, format_report, validate
from mmrec.data.schema import Catalog, Interactions


def _png(colour) -> bytes:
  buf = io.BytesIO()
  Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
  return buf.getvalue()


def _jpeg() -> bytes:
  buf = io.BytesIO()
  Image.new("RGB", (300, 200), (9, 99, 199)).save(buf, format="JPEG")
  return buf.getvalue()


def _catalog() -> Catalog:
  good = _png((200, 10, 10))
  return Catalog(
      item_id=np.array(["a", "b", "c", "d", "e"]),
      title=np.array(["Red shirt", "   ", "", "Blue mug", "Hat"]),
      description=np.array(["Cotton.", "Soft wool hat for cold days and long nights out", "",
                            "Tall", ""]),
      category=np.array(["tops", "hats", "kitchen", "kitchen", "hats"]),
      image=[good, _jpeg(), b"", good[:len(good) // 2], b"GIF89a garbage"],
      attributes={"colour": np.array([0, 1, 1, 0, 1], np.int32)},
      attribute_values={"colour": ["red", "blue"]},
  )


def test_each_problem_counted_and_handled():
  catalog = _catalog()
  # Rows: 0-3 good, 4 unknown item (= N), 5 duplicate of 1, 6 negative user,
  # 7 negative timestamp, 8 milliseconds, 9 item -1, 10 good, 11 duplicate of 10.
  user = [0, 1, 2, 0, 3, 1, -1, 2, 2, 0, 4, 4]
  item = [0, 1, 2, 3, 5, 1, 0, 0, 1, -1, 4, 4]
  ts = [10, 20, 30, 40, 50, 20, 60, -5, 1_700_000_000_000, 70, 80, 80]
  inter = Interactions(user, item, ts)
  before = dataclasses.replace(catalog, title=catalog.title.copy(), image=list(catalog.image))

  cleaned, kept, report = validate(catalog, inter)

  good = [0, 1, 2, 3, 10]
  for field in ("user", "item", "timestamp"):  # Every good row, in input order.
    np.testing.assert_array_equal(getattr(kept, field), getattr(inter, field)[good])
  assert report["counts"] == {"unknown_item": 2, "bad_user": 1, "bad_timestamp": 2,
                              "duplicate": 2, "empty_title": 2, "corrupt_image": 2}
  assert report["examples"] == {"unknown_item": [4, 9], "bad_user": [6],
                                "bad_timestamp": [7, 8], "duplicate": [5, 11],
                                "empty_title": [1, 2], "corrupt_image": [3, 4]}
  assert (report["interactions_in"], report["interactions_kept"], report["items"]) == (12, 5, 5)

  # Items are all kept: titles repaired, corrupt images dropped, the rest untouched.
  assert cleaned.title.tolist() == ["Red shirt", "Soft wool hat for cold days and long",
                                    "kitchen", "Blue mug", "Hat"]
  assert cleaned.image[:3] == catalog.image[:3] and cleaned.image[3:] == [b"", b""]
  assert cleaned.item_id.tolist() == catalog.item_id.tolist()
  np.testing.assert_array_equal(cleaned.attributes["colour"], catalog.attributes["colour"])
  # The input is not modified.
  assert catalog.title.tolist() == before.title.tolist() and catalog.image == before.image

  text = format_report(report)
  assert "5 of 12 interactions kept" in text
  for reason in (*DROP_REASONS, *FIX_REASONS):
    assert reason in text


def test_users_beyond_num_users_and_clean_input():
  catalog = _catalog()
  catalog.image[3:] = [b"", b""]
  catalog.title[1:3] = ["x", "y"]
  inter = Interactions([0, 1, 2, 3], [0, 1, 2, 3], [1, 2, 3, 4])
  _, kept, report = validate(catalog, inter, num_users=3)
  assert report["counts"]["bad_user"] == 1 and report["examples"]["bad_user"] == [3]
  assert len(kept) == 3
  _, kept, report = validate(catalog, inter)
  assert len(kept) == 4 and not any(report["counts"].values())
  assert "nothing to drop or repair" in format_report(report)


def test_structural_errors():
  catalog = _catalog()
  inter = Interactions([0], [0], [1])
  with pytest.raises(ValueError, match="duplicate ids.*'a'"):
    validate(dataclasses.replace(catalog, item_id=np.array(["a", "a", "c", "d", "e"])), inter)
  with pytest.raises(ValueError, match="'description': 2"):
    validate(dataclasses.replace(catalog, description=np.array(["x", "y"])), inter)
  bad_colour = {"colour": np.array([0, 1, 2, 0, 1], np.int32)}
  with pytest.raises(ValueError, match=r"attributes\['colour'\].*items \[2\]"):
    validate(dataclasses.replace(catalog, attributes=bad_colour), inter)
