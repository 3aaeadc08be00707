"""Streaming readers for delimited text, Parquet and JSON-lines files, and value parsing.

Text files are read line by line in binary, so every record keeps its physical
line number (1-based, the header is line 1; blank lines and line breaks inside
quoted values are counted) and one bad record costs only itself. Every column
is read as text (or taken as typed from Parquet) and parsed here, so one bad
value drops one row (counted by the caller), never a batch or the file.
"""

from __future__ import annotations

import codecs
import collections
from collections.abc import Iterator, Sequence
import csv
import datetime
import gzip
import json
import math
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrec.data.importers.drops import DataImportError, Drops

BATCH_ROWS = 65_536
BLOCK_BYTES = 8 << 20  # read and decoded this much at a time
MAX_RECORD_LINES = 100  # A quoted value may span this many lines (item files).
MAX_FIELD_CHARS = 64 << 20
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
# The csv module refuses fields over 128 KiB by default; item texts may be longer
# (they are cut to data.clean.max_text_chars later). Process-wide, only ever raised.
csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))

Batch = tuple[dict[str, pa.Array], np.ndarray]  # columns, line (or row) numbers


def read_lines(path: pathlib.Path, drops: Drops, encoding: str = "utf8",
               skip_blank: bool = True) -> Iterator[tuple[int, str]]:
  """(physical line number from 1, text without its line ending) for each line of `path`.

  Lines end at "\\n" ("\\r\\n" too); a UTF-8 byte order mark on line 1 is dropped;
  gzip when the name ends in .gz. A line that does not decode counts as
  `bad_encoding` (in `drops`) and is skipped; blank lines are no records.
  """
  for number, text in _lines(path, encoding):
    if text is None:
      drops.add("bad_encoding", f"{path.name} line {number}", file=path.name)
    elif not skip_blank or (text and not text.isspace()):
      yield number, text


def header(path: pathlib.Path, delimiter: str = ",", encoding: str = "utf8") -> list[str]:
  """The column names on the first line that is not blank of a delimited text file (BOM
  dropped); [] for an empty file."""
  for number, raw in _raw_lines(path):
    try:
      text = raw.decode(encoding)
    except UnicodeDecodeError:
      raise DataImportError(f"{path} line {number} (the header): not {encoding} text") from None
    if not text.strip():
      continue
    try:
      return next(csv.reader([text], delimiter=delimiter, strict=True), [])
    except csv.Error as err:
      raise DataImportError(f"{path} line {number} (the header): {err}") from None
  return []


def require_columns(path: pathlib.Path, present: Sequence[str], wanted: dict[str, str]):
  """Raises naming the file and each missing column (`wanted`: role -> column name)."""
  missing = [f"{col!r} ({role})" for role, col in wanted.items() if col not in present]
  if missing:
    raise DataImportError(f"{path}: missing required column(s) {', '.join(missing)}; "
                       f"the file has {list(present)}")


def read_delimited(path: pathlib.Path, columns: Sequence[str], drops: Drops, *,
                   delimiter: str = ",", names: Sequence[str] | None = None,
                   encoding: str = "utf8", quote: bool = True, multiline: bool = False,
                   batch_rows: int = BATCH_ROWS) -> Iterator[Batch]:
  """Streams `columns` of a delimited file as string arrays, with each record's line number.

  `names`: the column names of a file without a header line (else line 1 is the
  header). Each record is parsed on its own, so a bad one costs only itself: a
  record with another number of fields, or a quote left open, counts as
  `malformed_line`, a line that is not `encoding` text as `bad_encoding` (in
  `drops`, e.g. "u.data line 7": the physical line, blank lines and line breaks
  inside quotes included). `multiline`: a quoted value may hold line breaks (for
  item files), up to MAX_RECORD_LINES lines; a quote that does not close within
  them costs its first line only, and the lines after it are read again as records.
  """
  back: collections.deque = collections.deque()  # lines to read again
  lines = _lines(path, encoding, back)
  if names is None:
    first = next(lines, None)
    while first is not None and first[1] is not None and not first[1].strip():
      first = next(lines, None)
    if first is None:
      return
    if first[1] is None:
      raise DataImportError(f"{path} line {first[0]} (the header): not {encoding} text")
    names = _split(first[1], delimiter, lambda: None)
    if names is None:
      raise DataImportError(f"{path} line {first[0]} (the header): a quote is left open")
  index = {}
  for i, name in enumerate(names):
    index.setdefault(name, i)
  wanted = [index[c] for c in columns]
  width = len(names)
  records: list[list[str]] = []
  numbers: list[int] = []
  no_more = lambda: None
  for number, text in lines:
    if text is None:
      drops.add("bad_encoding", f"{path.name} line {number}", file=path.name)
      continue
    if quote and '"' in text:
      taken: list[tuple[int, str]] = []
      fields = _split(text, delimiter, (lambda: _take(lines, taken)) if multiline else no_more)
      if fields is None or len(fields) != width:
        back.extendleft(reversed(taken))  # The lines after a bad first line: records again.
    elif not text or text.isspace():
      continue
    else:
      fields = text.split(delimiter)
    if fields is None or len(fields) != width:
      drops.add("malformed_line", f"{path.name} line {number}", file=path.name)
      continue
    records.append(fields)
    numbers.append(number)
    if len(numbers) == batch_rows:
      yield _batch(columns, wanted, records, numbers)
      records, numbers = [], []
  if numbers:
    yield _batch(columns, wanted, records, numbers)


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

  Blank lines are skipped; lines that are not a JSON object count as `malformed_line`,
  lines that are not UTF-8 as `bad_encoding`.
  """
  records, rows = [], []
  for number, line in read_lines(path, drops):
    try:
      record = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting.
      record = None
    if not isinstance(record, dict):
      drops.add("malformed_line", f"{path.name} line {number}", file=path.name)
      continue
    records.append(record)
    rows.append(number)
    if len(records) == batch_rows:
      yield records, np.array(rows, np.int64)
      records, rows = [], []
  if records:
    yield records, np.array(rows, np.int64)


def _raw_lines(path: pathlib.Path) -> Iterator[tuple[int, bytes]]:
  """(line number, bytes without the line ending); a UTF-8 BOM on line 1 is dropped."""
  for start, block in _blocks(path):
    for number, raw in enumerate(block, start):
      yield number, raw.removesuffix(b"\r")


def _blocks(path: pathlib.Path) -> Iterator[tuple[int, list[bytes]]]:
  """(first line number, whole lines without "\\n") about BLOCK_BYTES at a time."""
  opener = gzip.open if path.name.endswith(".gz") else open
  number, rest = 1, b""
  with opener(path, "rb") as f:
    while chunk := f.read(BLOCK_BYTES):
      if number == 1 and not rest and chunk.startswith(codecs.BOM_UTF8):
        chunk = chunk[len(codecs.BOM_UTF8):]
      lines = (rest + chunk).split(b"\n")
      rest = lines.pop()
      yield number, lines
      number += len(lines)
  if rest:
    yield number, [rest]


def _lines(path: pathlib.Path, encoding: str,
           back: collections.deque | None = None) -> Iterator[tuple[int, str | None]]:
  """(line number, text without the line ending) of every line, blank ones included;
  text None: the line does not decode. Lines put in `back` are given again before
  the next one."""
  for start, block in _blocks(path):
    try:  # The whole block at once; line by line only when it holds a bad byte.
      texts = b"\n".join(block).decode(encoding).replace("\r\n", "\n").split("\n")
    except UnicodeDecodeError:
      texts = [_decode(raw.removesuffix(b"\r"), encoding) for raw in block]
    for number, text in enumerate(texts, start):
      while back:
        yield back.popleft()
      yield number, text
  while back:
    yield back.popleft()


def _decode(raw: bytes, encoding: str) -> str | None:
  try:
    return raw.decode(encoding)
  except UnicodeDecodeError:
    return None


def _take(lines: Iterator[tuple[int, str | None]], taken: list) -> str | None:
  """The next line for a quoted value that goes on (None: no more, the limit, or a line
  that does not decode: the value stops there and that line is read again on its own)."""
  if len(taken) >= MAX_RECORD_LINES - 1:
    return None
  line = next(lines, None)
  if line is None:
    return None
  taken.append(line)
  return line[1]


def _split(text: str, delimiter: str, more) -> list[str] | None:
  """The fields of one quoted record, parsed strictly by `csv` (None: a quote left open
  or misplaced); `more()` gives the next line while a quoted value stays open."""

  def feed():
    yield text + "\n"
    while (line := more()) is not None:
      yield line + "\n"

  try:
    return next(csv.reader(feed(), delimiter=delimiter, strict=True))
  except (csv.Error, StopIteration):
    return None


def _batch(columns: Sequence[str], wanted: list[int], records: list[list[str]],
           numbers: list[int]) -> Batch:
  fields = list(zip(*records))
  return ({c: pa.array(fields[i], pa.string()) for c, i in zip(columns, wanted)},
          np.array(numbers, np.int64))


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


def to_seconds(column: pa.Array | pa.ChunkedArray, unit: str, whole: bool = False,
               pattern: str = "") -> np.ndarray:
  """Timestamps in seconds (float64, NaN when unreadable).

  `unit`: s | ms | us for numbers, or a strptime format (e.g. %Y-%m-%d) for text;
  `whole`: a number must be a whole count of `unit`; `pattern`: a regular
  expression the text must match in full (e.g. `\\d{4}-\\d{2}-\\d{2}`).
  """
  if pattern:
    text = to_text(column)
    ok = pc.fill_null(pc.match_substring_regex(text, f"^(?:{pattern})$"), False)
    column = pc.if_else(ok, text, pa.scalar(None, pa.string()))
  scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
  if unit in scale:
    values = to_float(column)
    if whole:
      values[values != np.floor(values)] = np.nan
    return np.floor(values * scale[unit])
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
