"""Validation and cleaning of the in-memory tables before they are split and written.

Interactions that cannot be used are dropped and counted per reason; items are
never dropped, only repaired (an empty title, a corrupt image). Structural
problems (columns of different lengths, duplicate item ids, attribute values
outside their names) raise a ValueError naming the field.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np
from PIL import Image

from mmrec.data.schema import Catalog, Interactions

# 2100-01-01 in seconds: later timestamps are taken for milliseconds or garbage.
MAX_TIMESTAMP = 4_102_444_800
DROP_REASONS = ("unknown_item", "bad_user", "bad_timestamp", "duplicate")
FIX_REASONS = ("empty_title", "corrupt_image")
NUM_EXAMPLES = 5
TITLE_WORDS = 8


def validate(catalog: Catalog, interactions: Interactions,
             num_users: int | None = None) -> tuple[Catalog, Interactions, dict[str, Any]]:
  """Returns the cleaned (catalog, interactions) and a report of what was done.

  Interactions (row = position in the input, from 0), first reason that applies:
    unknown_item: item index outside `[0, len(catalog))`;
    bad_user: user index negative, or `>= num_users` when given;
    bad_timestamp: negative or after `MAX_TIMESTAMP`;
    duplicate: same (user, item, timestamp) as an earlier kept row.
  Items (kept, repaired):
    empty_title: blank title, replaced by the first `TITLE_WORDS` words of the
      description, else the category (else left empty);
    corrupt_image: image bytes PIL cannot decode, replaced by b"" (no image).

  The report: `interactions_in`, `interactions_kept`, `items`, `counts`
  (every reason, 0 included) and `examples` (up to `NUM_EXAMPLES` rows or
  item indices per reason that occurred).
  """
  _check_catalog(catalog)
  n, m = len(catalog), len(interactions)
  reason = drop_reasons(n, interactions, num_users)
  rows = {r: np.flatnonzero(reason == i) for i, r in enumerate(DROP_REASONS)}

  titles = [str(t) for t in catalog.title]
  images = list(catalog.image)
  empty_title = [i for i, t in enumerate(titles) if not t.strip()]
  for i in empty_title:
    words = str(catalog.description[i]).split()[:TITLE_WORDS]
    titles[i] = " ".join(words) if words else str(catalog.category[i]).strip()
  corrupt = [i for i, b in enumerate(images) if b and not _decodes(b)]
  for i in corrupt:
    images[i] = b""
  rows |= {"empty_title": np.array(empty_title, int), "corrupt_image": np.array(corrupt, int)}

  report = {
      "interactions_in": m,
      "interactions_kept": int((reason < 0).sum()),
      "items": n,
      "counts": {r: len(rows[r]) for r in (*DROP_REASONS, *FIX_REASONS)},
      "examples": {r: rows[r][:NUM_EXAMPLES].tolist() for r in rows if len(rows[r])},
  }
  cleaned = dataclasses.replace(catalog, title=np.array(titles, dtype=str), image=images)
  return cleaned, interactions.take(reason < 0), report


def drop_reasons(num_items: int, interactions: Interactions,
                 num_users: int | None = None) -> np.ndarray:
  """Per interaction row, the index in DROP_REASONS of why `validate` drops it (-1: kept)."""
  user, item, ts = interactions.user, interactions.item, interactions.timestamp
  reason = np.full(len(interactions), -1, np.int8)
  bad = (
      (item < 0) | (item >= num_items),
      (user < 0) | (user >= num_users if num_users is not None else False),
      (ts < 0) | (ts > MAX_TIMESTAMP),
  )
  for r, mask in enumerate(bad):
    reason[(reason < 0) & mask] = r
  ok = np.flatnonzero(reason < 0)
  keys = np.stack([user[ok].astype(np.int64), item[ok].astype(np.int64), ts[ok]], axis=1)
  _, first = np.unique(keys, axis=0, return_index=True)
  duplicate = np.ones(len(ok), bool)
  duplicate[first] = False
  reason[ok[duplicate]] = DROP_REASONS.index("duplicate")
  return reason


def format_report(report: dict[str, Any]) -> str:
  """A few lines for the console: what was dropped or repaired, with examples."""
  lines = [f"cleaning: {report['interactions_kept']} of {report['interactions_in']} "
           f"interactions kept; {report['items']} items"]
  for r, count in report["counts"].items():
    if count:
      what = "interaction rows" if r in DROP_REASONS else "items"
      verb = "dropped" if r in DROP_REASONS else "repaired"
      examples = ", ".join(map(str, report["examples"].get(r, [])))
      more = ", ..." if count > NUM_EXAMPLES else ""
      lines.append(f"  {verb} {count} {r} ({what} {examples}{more})")
  if len(lines) == 1:
    lines.append("  nothing to drop or repair")
  return "\n".join(lines)


def _check_catalog(catalog: Catalog):
  n = len(catalog)
  columns = {k: getattr(catalog, k) for k in ("title", "description", "category", "image")}
  columns |= {f"attributes[{k!r}]": v for k, v in catalog.attributes.items()}
  wrong = {k: len(v) for k, v in columns.items() if len(v) != n}
  if wrong:
    raise ValueError(f"catalog.item_id has {n} items but these columns differ in length: {wrong}")
  ids, first, counts = np.unique(np.asarray(catalog.item_id, str), return_index=True,
                                 return_counts=True)
  if (counts > 1).any():
    dup = [f"{i!r} (first at item {f})" for i, f in zip(ids[counts > 1][:NUM_EXAMPLES],
                                                        first[counts > 1])]
    raise ValueError(f"catalog.item_id: {int((counts > 1).sum())} duplicate ids, e.g. {dup}")
  for name, values in catalog.attributes.items():
    names = catalog.attribute_values.get(name)
    values = np.asarray(values)
    out = np.flatnonzero((values < 0) | (values >= len(names))) if names is not None else []
    if len(out):
      raise ValueError(f"catalog.attributes[{name!r}]: values outside 0..{len(names) - 1} "
                       f"(attribute_values) at items {out[:NUM_EXAMPLES].tolist()}")


def _decodes(data: bytes) -> bool:
  """Whether PIL can verify and fully decode the image."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.verify()
    with Image.open(io.BytesIO(data)) as image:
      image.draft("RGB", (64, 64))  # JPEGs decode at reduced scale, still reading every byte.
      image.load()
  except Exception:  # PIL raises many types (OSError, SyntaxError, ValueError, ...).
    return False
  return True


# Interaction cleaning for imported data (run before `validate`; see docs/data.md).
REPEAT_MODES = ("latest", "all")


def exact_duplicates(user, item, timestamp) -> np.ndarray:
  """Mask of rows repeating an earlier row's (user, item, timestamp); the first is kept."""
  user, item, timestamp = map(np.asarray, (user, item, timestamp))
  order = np.lexsort((timestamp, item, user))  # Stable: equal keys keep input order.
  same = np.zeros(len(order), bool)
  same[1:] = ((user[order][1:] == user[order][:-1]) & (item[order][1:] == item[order][:-1])
              & (timestamp[order][1:] == timestamp[order][:-1]))
  out = np.zeros(len(order), bool)
  out[order[same]] = True
  return out


def earlier_repeats(user, item, timestamp) -> np.ndarray:
  """Mask of rows with a later event of the same (user, item): all but the latest.

  Latest = largest timestamp; on equal timestamps the later row.
  """
  user, item, timestamp = map(np.asarray, (user, item, timestamp))
  order = np.lexsort((timestamp, item, user))
  last = np.ones(len(order), bool)
  last[:-1] = (user[order][1:] != user[order][:-1]) | (item[order][1:] != item[order][:-1])
  out = np.zeros(len(order), bool)
  out[order[~last]] = True
  return out


def k_core(user, item, user_k: int, item_k: int) -> tuple[np.ndarray, int]:
  """(mask of rows in the k-core, rounds): every kept user has >= user_k kept rows and
  every kept item >= item_k, removing rows until nothing changes (0 disables a side)."""
  user, item = np.asarray(user, np.int64), np.asarray(item, np.int64)
  keep = np.ones(len(user), bool)
  rounds = 0
  while True:
    rounds += 1
    users = np.bincount(user[keep], minlength=int(user.max(initial=-1)) + 1)
    items = np.bincount(item[keep], minlength=int(item.max(initial=-1)) + 1)
    new = keep & (users[user] >= user_k) & (items[item] >= item_k)
    if new.sum() == keep.sum():
      return keep, rounds
    keep = new


def clean_interactions(user, item, timestamp, rating, num_items: int, *, dedupe: str = "latest",
                       rating_threshold: float = 0.0, user_core: int = 0,
                       item_core: int = 0) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
  """The cleaning steps in order; returns (rows kept, items kept, per-step report).

  Steps: exact duplicates (same user, item, timestamp; first kept); repeated
  (user, item) events (`dedupe`: "latest" keeps the latest, "all" keeps all);
  rating threshold (`rating_threshold` > 0 keeps rating >= it; needs ratings);
  k-core (`user_core`, `item_core`; items outside the core leave the catalog
  when `item_core` > 0, otherwise items without interactions stay, as cold items).
  Each step reports users, items and interactions before and after it, and rows dropped.
  """
  if dedupe not in REPEAT_MODES:
    raise ValueError(f"data.clean.dedupe={dedupe!r}; choose from {REPEAT_MODES}")
  if rating_threshold > 0 and rating is None:
    raise ValueError(f"data.clean.rating_threshold={rating_threshold} but the data has no ratings")
  user, item, timestamp = map(np.asarray, (user, item, timestamp))
  keep = np.ones(len(user), bool)
  items_kept = np.ones(num_items, bool)
  steps = []

  def sizes():
    return {"users": int(np.count_nonzero(np.bincount(user[keep]))),
            "items": int(items_kept.sum()),
            "items_with_interactions": int(np.count_nonzero(np.bincount(item[keep]))),
            "interactions": int(keep.sum())}

  def step(name, drop, **options):
    before = sizes()
    keep[np.flatnonzero(keep)[drop]] = False
    steps.append({"step": name, **options, "before": before, "after": sizes(),
                  "dropped": int(drop.sum())})

  idx = lambda: np.flatnonzero(keep)
  step("exact_duplicates", exact_duplicates(user[idx()], item[idx()], timestamp[idx()]))
  i = idx()
  repeats = earlier_repeats(user[i], item[i], timestamp[i]) if dedupe == "latest" else np.zeros(
      len(i), bool)
  step("repeated_events", repeats, mode=dedupe)
  i = idx()
  below = rating[i] < rating_threshold if rating_threshold > 0 else np.zeros(len(i), bool)
  step("rating_threshold", below, threshold=float(rating_threshold))
  i = idx()
  core, rounds = k_core(user[i], item[i], user_core, item_core)
  before = sizes()
  keep[i[~core]] = False
  if item_core > 0:
    items_kept[:] = np.bincount(item[keep], minlength=num_items) >= item_core
  steps.append({"step": "k_core", "user_core": int(user_core), "item_core": int(item_core),
                "rounds": rounds, "before": before, "after": sizes(),
                "dropped": int((~core).sum())})
  return keep, items_kept, steps
