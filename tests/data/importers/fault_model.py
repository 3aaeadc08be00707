"""The fault corpus's model (see fault_corpus.py): what is planted (`Fault`), what a correct
import gives (`Corpus`), files written line by line (`TextFile`), and shared helpers."""

from __future__ import annotations

import dataclasses
import pathlib
import random
import struct
import zlib

from mmrec.data.importers.base import Options

LAYOUTS = ("movielens-100k", "movielens-1m", "recbole", "amazon", "hm", "generic")
FORMAT = {"movielens-100k": "movielens", "movielens-1m": "movielens"}
BAD_BYTE = b"\xff"  # never valid in UTF-8
TITLES = ['Jersey top, narrow', 'The "Best" mug', 'Café crème, 2 pack', '漢字 T-shirt',
          'Socks 😀 with "quotes", and commas', 'Plain shirt', "Señor's hat"]
HUGE_CHARS = 200_000


@dataclasses.dataclass
class Fault:
  section: str  # items | interactions | users | images
  kind: str  # e.g. "unbalanced quote"
  reason: str  # the report's reason (or image outcome)
  where: str  # the report's example: "FILE line N", or the item id for images


@dataclasses.dataclass
class Corpus:
  layout: str
  root: pathlib.Path
  options: Options
  items: list[str] = dataclasses.field(default_factory=list)  # kept item ids, in order
  titles: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> expected title
  rows: list[tuple] = dataclasses.field(default_factory=list)  # kept (user, item, ts, rating)
  faults: list[Fault] = dataclasses.field(default_factory=list)
  records: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # section->file->n
  images: dict[str, int] = dataclasses.field(default_factory=dict)  # outcome -> kept items

  @property
  def format(self) -> str:
    return FORMAT.get(self.layout, self.layout)


class TextFile:
  """Physical lines of one file with mixed line ends; records remember their first line."""

  def __init__(self, path: pathlib.Path, rng: random.Random, encoding="utf8", bom=True):
    self.path, self.rng, self.encoding = path, rng, encoding
    self.chunks = [b"\xef\xbb\xbf"] if bom else []
    self.line, self.records = 1, 0

  def _end(self) -> bytes:
    return b"\r\n" if self.rng.random() < 0.3 else b"\n"

  def add(self, record: str | bytes, count: bool = True) -> int:
    """Writes a record (it may hold line breaks); returns its first physical line."""
    if self.rng.random() < 0.15:  # a blank line first: no record, but a line
      self.chunks.append(self._end())
      self.line += 1
    data = record if isinstance(record, bytes) else record.encode(self.encoding)
    first = self.line
    for i, part in enumerate(data.split(b"\n")):
      self.chunks += [self._end()] if i else []
      self.chunks.append(part)
      self.line += bool(i)
    self.chunks.append(self._end())
    self.line += 1
    self.records += count
    return first

  def close(self):
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self.path.write_bytes(b"".join(self.chunks) + self._end())


def csv_field(value: str) -> str:
  if any(c in value for c in ',"\n'):
    return '"' + value.replace('"', '""') + '"'
  return value


def png(width: int, height: int, grey: int = 128) -> bytes:
  """A 1-bit greyscale PNG (a bomb when large: 64 megapixels in ~8 KB) or a small grey one."""
  bits = 1 if width * height > 1_000_000 else 8
  row = b"\x00" + (b"\x00" * ((width + 7) // 8) if bits == 1 else bytes([grey]) * width)
  chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                              + struct.pack(">I", zlib.crc32(kind + data)))
  header = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
          + chunk(b"IDAT", zlib.compress(row * height, 9)) + chunk(b"IEND", b""))


class Planter:
  """Shared bookkeeping: valid records and faults, shuffled, with their lines."""

  def __init__(self, corpus: Corpus, rng: random.Random):
    self.corpus, self.rng = corpus, rng

  def write(self, section: str, file: TextFile, valid: list, faults: list, on_valid=None):
    """`valid`: (record, payload); `faults`: (kind, reason, record). Written in random order;
    `on_valid(payload, where)` is called for each valid record in file order."""
    entries = [(False, v) for v in valid] + [(True, f) for f in faults]
    head, rest = entries[:2], entries[2:]  # the first rows stay valid (the header's neighbours)
    self.rng.shuffle(rest)
    for is_fault, entry in head + rest:
      if is_fault:
        kind, reason, record = entry
        line = file.add(record)
        self.corpus.faults.append(Fault(section, kind, reason, f"{file.path.name} line {line}"))
      else:
        record, payload = entry
        line = file.add(record)
        if on_valid:
          on_valid(payload, f"{file.path.name} line {line}")
    self.corpus.records.setdefault(section, {})[file.path.name] = file.records
    file.close()


def ids(rng, n, make):
  out = []
  while len(out) < n:
    value = make(rng)
    if value not in out:
      out.append(value)
  return out


def pick_faults(rng: random.Random, kinds: list[tuple[str, str, object]]) -> list:
  """Each fault kind 1-2 times: (kind, reason, record made by the kind's maker)."""
  return [(kind, reason, make()) for kind, reason, make in kinds for _ in range(rng.randint(1, 2))]


def huge(rng) -> str:
  """A field of HUGE_CHARS characters, with commas (so CSV writes it quoted)."""
  words = ["soft", "warm,", "cotton", "blend"]
  return " ".join(rng.choice(words) for _ in range(HUGE_CHARS // 5))


def flags(rng) -> str:
  return "|".join(rng.choice("01") for _ in range(19))


def titled(corpus: Corpus, payload: tuple[str, str, bool], where: str):
  """A valid item: kept, with its title (unchecked when huge: it is cut, and counted)."""
  item_id, title, huge = payload
  corpus.items.append(item_id)
  if huge:
    corpus.faults.append(Fault("items", "huge field", "oversized_text", where))
  else:
    corpus.titles[item_id] = title


def row(corpus: Corpus, row: tuple, where: str):
  corpus.rows.append(row)


def images(corpus: Corpus, rng: random.Random, kept: list[str], path_of):
  """Image files for kept items: a few good ones, one decompression bomb, one corrupt file."""
  chosen = rng.sample(kept, 4)
  for item_id in chosen[:2]:
    path_of(item_id).parent.mkdir(parents=True, exist_ok=True)
    path_of(item_id).write_bytes(png(12, 9, rng.randint(0, 255)))
  path_of(chosen[2]).parent.mkdir(parents=True, exist_ok=True)
  path_of(chosen[2]).write_bytes(png(8000, 8000))  # 64 megapixels in a few KB
  path_of(chosen[3]).parent.mkdir(parents=True, exist_ok=True)
  path_of(chosen[3]).write_bytes(png(12, 9)[:40])  # cut inside the image data
  corpus.faults += [Fault("images", "decompression bomb", "oversized_pixels", chosen[2]),
                    Fault("images", "corrupt image", "corrupt_image", chosen[3])]
  corpus.images = {"ok": 2, "no_image": len(corpus.items) - 4, "oversized_pixels": 1,
                   "corrupt_image": 1}
