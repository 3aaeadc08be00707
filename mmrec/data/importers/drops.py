"""What an importer drops and how it fails: the reasons, their counts, the one error.

Shared by the readers (`tables.py`) and the collectors (`base.py`), below both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

NUM_EXAMPLES = 5
# Interaction rows, first reason that applies (bad_encoding and malformed_line from the readers).
ROW_REASONS = ("bad_encoding", "malformed_line", "missing_id", "oversized_id", "bad_id",
               "bad_timestamp", "bad_rating", "unknown_item", "unknown_user")
# Item rows: dropped (all but oversized_text) or repaired (oversized_text).
ITEM_REASONS = ("bad_encoding", "malformed_line", "missing_id", "oversized_id", "bad_id",
                "duplicate_item", "oversized_text")
# Rows of an optional user file (users.dat, NAME.user, customers.csv).
USER_REASONS = ("bad_encoding", "malformed_line", "missing_id", "oversized_id", "bad_id")
REPAIRED = ("oversized_text",)  # Counted, but the row is kept.


class DataImportError(ValueError):
  """A required file or column is missing, or an option is unusable; the message names it."""


class Drops:
  """Counts per reason (and per file), with up to NUM_EXAMPLES examples (e.g.
  'u.data line 7', the physical line) each."""

  def __init__(self, reasons: Sequence[str]):
    self.counts = {r: 0 for r in reasons}
    self.examples: dict[str, list[str]] = {}
    self.by_file: dict[str, dict[str, int]] = {}
    self.kept: dict[str, int] = {}  # rows kept per file, told by the collector

  def add(self, reason: str, example: str | None = None, n: int = 1, file: str = ""):
    self.add_many(reason, [] if example is None else [example], n, file)

  def add_many(self, reason: str, examples: Sequence[str], n: int, file: str = ""):
    if n <= 0:
      return
    self.counts[reason] = self.counts.get(reason, 0) + int(n)
    kept = self.examples.setdefault(reason, [])
    kept.extend(list(examples)[:NUM_EXAMPLES - len(kept)])
    if file:
      per_file = self.by_file.setdefault(file, {})
      per_file[reason] = per_file.get(reason, 0) + int(n)

  def total(self) -> int:
    """Rows dropped (repaired ones are kept, so not counted)."""
    return sum(n for r, n in self.counts.items() if r not in REPAIRED)

  def files(self) -> dict[str, dict[str, Any]]:
    """Per file: records `read` = `kept` + the sum of `dropped` (per reason)."""
    out = {}
    for name in dict.fromkeys([*self.kept, *self.by_file]):
      dropped = {r: n for r, n in self.by_file.get(name, {}).items() if r not in REPAIRED}
      kept = self.kept.get(name, 0)
      out[name] = {"read": kept + sum(dropped.values()), "kept": kept, "dropped": dropped}
    return out

  def as_dict(self) -> dict[str, Any]:
    return {"counts": dict(self.counts), "examples": {k: v for k, v in self.examples.items() if v},
            "files": self.files()}
