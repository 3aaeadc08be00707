"""Streaming readers for delimited text, Parquet and JSON-lines files, and value parsing.

Every column is read as text (or taken as typed from Parquet) and parsed here,
so one bad value drops one row (counted by the caller), never a batch.
Rows with the wrong number of fields are skipped and counted as
`malformed_line` with their row number (1-based; the header is row 1).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import datetime
import gzip
import json
import math
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mmrec.data.importers.base import Drops, DataImportError

BATCH_ROWS = 65_536
BLOCK_BYTES = 8 << 20
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"

Batch = tuple[dict[str, pa.Array], np.ndarray]  # columns, row numbers


def header(path: pathlib.Path, delimiter: str = ",", encoding: str = "utf8") -> list[str]:
  """The column names on the first line of a delimited text file."""
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rt", encoding=encoding, errors="replace", newline="") as f:
    line = f.readline().rstrip("\r\n")
  import csv  # Only for the header: quoting rules as in the data.
  return next(csv.reader([line], delimiter=delimiter)) if line else []


def require_columns(path: pathlib.Path, present: Sequence[str], wanted: dict[str, str]):
  """Raises naming the file and each missing column (`wanted`: role -> column name)."""
  missing = [f"{col!r} ({role})" for role, col in wanted.items() if col not in present]
  if missing:
    raise DataImportError(f"{path}: missing required column(s) {', '.join(missing)}; "
                       f"the file has {list(present)}")


def read_delimited(path: pathlib.Path, columns: Sequence[str], drops: Drops, *,
                   delimiter: str = ",", names: Sequence[str] | None = None,
                   encoding: str = "utf8", quote: bool = True,
                   multiline: bool = False) -> Iterator[Batch]:
  """Streams `columns` of a delimited file as string arrays, with their row numbers.

  `names`: the column names of a file without a header line (else the first
  line is the header). Rows with another number of fields are counted in
  `drops` as `malformed_line` and skipped. `multiline`: quoted values may hold
  line breaks (slower; for item files).
  """
  invalid: list[int] = []

  def on_invalid(row) -> str:
    drops.add("malformed_line", f"{path.name} row {row.number}" if row.number else path.name)
    if row.number:
      invalid.append(row.number)
    return "skip"

  read = pacsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES, encoding=encoding,
                           column_names=list(names) if names else None)
  parse = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quote else False,
                             newlines_in_values=multiline, invalid_row_handler=on_invalid)
  convert = pacsv.ConvertOptions(include_columns=list(columns),
                                 column_types={c: pa.string() for c in columns},
                                 strings_can_be_null=False, quoted_strings_can_be_null=False)
  next_row = 1 if names else 2
  try:
    reader = pacsv.open_csv(path, read_options=read, parse_options=parse,
                            convert_options=convert)
    for batch in reader:
      n = batch.num_rows
      pending = np.array(sorted(r for r in invalid if r >= next_row), np.int64)
      rows = np.arange(next_row, next_row + n + len(pending), dtype=np.int64)
      rows = rows[~np.isin(rows, pending)][:n]
      next_row = int(rows[-1]) + 1 if n else next_row
      invalid[:] = [r for r in invalid if r >= next_row]  # keep only rows not yet passed
      yield {c: batch.column(c) for c in columns}, rows
  except pa.ArrowInvalid as err:
    raise DataImportError(f"{path}: cannot be read as a table ({err}); a single row may exceed "
                       f"{BLOCK_BYTES >> 20} MiB or the delimiter/encoding may be wrong") from err


def read_parquet(path: pathlib.Path, columns: Sequence[str]) -> Iterator[Batch]:
  """Streams `columns` of a Parquet file (row numbers from 1, no header)."""
  start = 1
  for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=list(columns)):
    yield ({c: batch.column(c) for c in columns},
           np.arange(start, start + batch.num_rows, dtype=np.int64))
    start += batch.num_rows


def parquet_columns(path: pathlib.Path) -> list[str]:
  return list(pq.ParquetFile(path).schema_arrow.names)


def read_json_lines(path: pathlib.Path, drops: Drops,
                    batch_rows: int = BATCH_ROWS) -> Iterator[tuple[list[dict], np.ndarray]]:
  """Streams JSON objects, one per line (gzip when the name ends in .gz), with line numbers.

  Blank lines are skipped; lines that are not a JSON object count as `malformed_line`.
  """
  opener = gzip.open if path.suffix == ".gz" else open
  records, rows = [], []
  with opener(path, "rt", encoding="utf8", errors="replace") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except ValueError:
        record = None
      if not isinstance(record, dict):
        drops.add("malformed_line", f"{path.name} line {number}")
        continue
      records.append(record)
      rows.append(number)
      if len(records) == batch_rows:
        yield records, np.array(rows, np.int64)
        records, rows = [], []
  if records:
    yield records, np.array(rows, np.int64)


def to_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
  """Any column as trimmed strings (nulls stay null)."""
  if isinstance(column, pa.ChunkedArray):
    column = column.combine_chunks()
  if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
    column = pc.cast(column, pa.string())
  return pc.utf8_trim_whitespace(column)


def to_float(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
  """float64 values; NaN where the value is null, not a number or not finite."""
  if isinstance(column, pa.ChunkedArray):
    column = column.combine_chunks()
  if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
  else:
    text = to_text(column)
    ok = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
    values = pc.cast(pc.if_else(ok, text, "nan"), pa.float64()).to_numpy(zero_copy_only=False)
  values = np.array(values, np.float64)
  values[~np.isfinite(values)] = np.nan
  return values


def to_seconds(column: pa.Array | pa.ChunkedArray, unit: str) -> np.ndarray:
  """Timestamps in seconds (float64, NaN when unreadable).

  `unit`: s | ms | us for numbers, or a strptime format (e.g. %Y-%m-%d) for text.
  """
  scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
  if unit in scale:
    return np.floor(to_float(column) * scale[unit])
  if "%" not in unit:
    raise DataImportError(f"timestamp unit {unit!r}: use s, ms, us or a strptime format "
                          "like %Y-%m-%d")
  if isinstance(column, pa.ChunkedArray):
    column = column.combine_chunks()
  if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
    seconds = pc.cast(pc.cast(column, pa.timestamp("s")), pa.int64())
    return np.array(seconds.to_numpy(zero_copy_only=False), np.float64)  # nulls became NaN
  # Python's strptime is strict (2024-02-30 fails); each distinct string is parsed once.
  encoded = pc.dictionary_encode(pc.fill_null(to_text(column), ""))
  values = np.array([_parse_time(v, unit) for v in encoded.dictionary.to_pylist()] or [np.nan])
  return values[encoded.indices.to_numpy(zero_copy_only=False)]


def _parse_time(text: str, fmt: str) -> float:
  """Seconds since the epoch; times without a zone are UTC; NaN when `text` does not parse."""
  try:
    parsed = datetime.datetime.strptime(text, fmt)
  except ValueError:
    return np.nan
  if parsed.tzinfo is None:
    parsed = parsed.replace(tzinfo=datetime.timezone.utc)
  return float(math.floor(parsed.timestamp()))
