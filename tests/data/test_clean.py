"""Cleaning: each kind of bad input is counted and handled; good rows all arrive."""

from collections import Counter
import dataclasses
import io

import numpy as np
from PIL import Image
import pytest

from mmrec.data.clean import (DROP_REASONS, FIX_REASONS, clean_interactions, earlier_repeats,
                              exact_duplicates, format_report, k_core, validate)
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


# Interaction cleaning for imported data, against brute-force references.

def _brute_force_core(rows, user_k, item_k):
  """The largest subset of rows where every user has >= user_k and every item >= item_k rows
  (the union of all valid subsets, found by trying every subset)."""
  best = set()
  for mask in range(1 << len(rows)):
    subset = [i for i in range(len(rows)) if mask >> i & 1]
    users = Counter(rows[i][0] for i in subset)
    items = Counter(rows[i][1] for i in subset)
    if all(users[rows[i][0]] >= user_k and items[rows[i][1]] >= item_k for i in subset):
      best |= set(subset)
  return best


@pytest.mark.parametrize("seed", range(12))
def test_k_core_matches_brute_force(seed):
  rng = np.random.default_rng(seed)
  m = 11
  user, item = rng.integers(0, 4, m), rng.integers(0, 4, m)
  user_k, item_k = int(rng.integers(0, 4)), int(rng.integers(0, 4))
  keep, rounds = k_core(user, item, user_k, item_k)
  expected = _brute_force_core(list(zip(user.tolist(), item.tolist())), user_k, item_k)
  assert set(np.flatnonzero(keep).tolist()) == expected
  assert rounds >= 1


def test_duplicates_and_repeats_match_references():
  rng = np.random.default_rng(0)
  m = 400
  user, item, ts = rng.integers(0, 6, m), rng.integers(0, 5, m), rng.integers(0, 8, m)
  seen, expected_dup = set(), set()
  for r, key in enumerate(zip(user.tolist(), item.tolist(), ts.tolist())):
    if key in seen:
      expected_dup.add(r)
    seen.add(key)
  assert set(np.flatnonzero(exact_duplicates(user, item, ts)).tolist()) == expected_dup
  latest = {}
  for r, (u, i, t) in enumerate(zip(user.tolist(), item.tolist(), ts.tolist())):
    if (u, i) not in latest or t >= ts[latest[(u, i)]]:
      latest[(u, i)] = r
  expected_repeat = set(range(m)) - set(latest.values())
  assert set(np.flatnonzero(earlier_repeats(user, item, ts)).tolist()) == expected_repeat


def test_clean_interactions_steps_and_report():
  # user, item, timestamp, rating; 4 items in the catalog (item 3 has no interaction).
  rows = [(0, 0, 1, 5.0), (0, 0, 1, 5.0),  # exact duplicate
          (0, 1, 2, 2.0), (0, 1, 9, 4.0),  # repeated: the later (rating 4) is kept
          (1, 0, 3, 4.0), (1, 1, 4, 1.0),  # below the threshold 3
          (2, 2, 5, 5.0),                  # user 2 and item 2: 1 interaction, out of the 2-core
          (1, 2, 6, 3.0), (2, 0, 7, 4.0)]
  user, item, ts, rating = (np.array(c) for c in zip(*rows))
  keep, items_kept, steps = clean_interactions(user, item, ts, rating, 4, dedupe="latest",
                                               rating_threshold=3, user_core=2, item_core=2)
  # After dedupe + threshold: (0,0,1) (0,1,9) (1,0,3) (2,2,5) (1,2,6) (2,0,7); the 2-core
  # drops user 0's item 1 (only interaction of item 1) -> user 0 has 1 -> dropped, and so on.
  expected = _brute_force_core([rows[i][:2] for i in (0, 3, 4, 6, 7, 8)], 2, 2)
  kept_rows = {(0, 3, 4, 6, 7, 8)[i] for i in expected}
  assert set(np.flatnonzero(keep).tolist()) == kept_rows
  assert [s["step"] for s in steps] == ["exact_duplicates", "repeated_events",
                                        "rating_threshold", "k_core"]
  assert [s["dropped"] for s in steps] == [1, 1, 1, 6 - len(kept_rows)]
  assert steps[0]["before"] == {"users": 3, "items": 4, "items_with_interactions": 3,
                                "interactions": 9}
  assert steps[-1]["after"]["interactions"] == len(kept_rows)
  counts = np.bincount(item[keep], minlength=4)
  np.testing.assert_array_equal(items_kept, counts >= 2)
  # "all" keeps repeated events; no ratings + a threshold is a clear error.
  keep_all, _, _ = clean_interactions(user, item, ts, rating, 4, dedupe="all")
  assert keep_all.sum() == 8
  with pytest.raises(ValueError, match="no ratings"):
    clean_interactions(user, item, ts, None, 4, rating_threshold=3)
  with pytest.raises(ValueError, match="dedupe='first'"):
    clean_interactions(user, item, ts, rating, 4, dedupe="first")
