"""Value checks shared by the importers: each format's rules, and masks of bad values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclasses.dataclass(frozen=True)
class Rules:
  """What a format's documentation defines for its values (docs/data.md, "Validation").

  `user_id`, `item_id`: regular expressions an id must match in full ("" = any);
  `rating`: the (lowest, highest) rating, None = any number; `whole_rating`: whole
  stars only; `whole_timestamp`: whole units (seconds, or milliseconds for Amazon).
  """

  user_id: str = ""
  item_id: str = ""
  rating: tuple[float, float] | None = None
  whole_rating: bool = False
  whole_timestamp: bool = False


def bad_ratings(rating: np.ndarray, rules: Rules) -> np.ndarray:
  """Ratings that are NaN, outside `rules.rating`, or not whole when `rules.whole_rating`."""
  bad = np.isnan(rating)
  if rules.rating is not None:
    with np.errstate(invalid="ignore"):
      bad |= (rating < rules.rating[0]) | (rating > rules.rating[1])
  if rules.whole_rating:
    bad |= np.where(np.isnan(rating), True, rating != np.floor(np.nan_to_num(rating)))
  return bad


def location(source: str, number: int) -> str:
  """'u.data line 7' (text files: the physical line), 'x.parquet row 7' (Parquet)."""
  return f"{source} {'row' if source.endswith('.parquet') else 'line'} {number}"


def bad_form(ids: pa.Array, pattern: str) -> np.ndarray:
  if not pattern:
    return np.zeros(len(ids), bool)
  ok = pc.match_substring_regex(ids, f"^(?:{pattern})$")
  return ~pc.fill_null(ok, False).to_numpy(zero_copy_only=False)


def blank(ids: pa.Array) -> np.ndarray:
  return pc.fill_null(pc.equal(ids, ""), True).to_numpy(zero_copy_only=False)


def longer(ids: pa.Array, limit: int) -> np.ndarray:
  return pc.fill_null(pc.greater(pc.utf8_length(ids), limit), False).to_numpy(zero_copy_only=False)
