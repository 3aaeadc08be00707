"""Image files -> small re-encoded RGB images, once, at import time.

Each file is decoded (JPEGs at a reduced scale when large), converted to RGB
(transparency composited on white), fitted inside `size x size` keeping its
aspect ratio and padded with white, then re-encoded as JPEG (default, quality
90) or PNG. Files are processed in bounded chunks by a few threads, so only a
chunk of decoded images is ever in memory.

Outcome per item: `ok`; `no_image` (no file: an item without an image, never an
error); `corrupt_image` (the file does not decode, e.g. truncated);
`oversized_image` (the file is larger than `max_bytes`); `oversized_pixels`
(width x height above `max_pixels`, read from the header before any decoding:
a decompression bomb). The last three keep the item, without an image.
Pillow's own decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`, process-wide)
is set explicitly to MAX_PIXELS when this module loads, and raised to an
encoder's `max_pixels` when that is larger (never lowered: other decoders in
the process keep the guard).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
import concurrent.futures
import io
import os
import pathlib
import warnings

from PIL import Image, ImageOps

OUTCOMES = ("ok", "no_image", "corrupt_image", "oversized_image", "oversized_pixels")
MAX_PIXELS = 25_000_000  # 25 megapixels (5000 x 5000): larger product photos are bombs.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow warns above this, refuses at twice it.
FORMATS = {"jpeg": "JPEG", "png": "PNG"}
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
CHUNK = 256


class ImageEncoder:
  """Turns image files into encoded `size x size` RGB images."""

  def __init__(self, size: int, image_format: str = "jpeg", quality: int = 90,
               max_bytes: int = 20_000_000, workers: int = 2, max_pixels: int = MAX_PIXELS):
    if image_format not in FORMATS:
      raise ValueError(f"data.import_.image_format={image_format!r}; choose from {list(FORMATS)}")
    if int(max_pixels) <= 0:
      raise ValueError(f"data.clean.max_image_pixels={max_pixels!r}: must be positive")
    self.size, self.format, self.quality = int(size), FORMATS[image_format], int(quality)
    self.max_bytes, self.workers = int(max_bytes), max(1, int(workers))
    self.max_pixels = int(max_pixels)
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, self.max_pixels)

  def encode_file(self, path: str | os.PathLike | None) -> tuple[bytes, str]:
    """(encoded bytes or b"", outcome) for one file; never raises for bad files."""
    if path is None:
      return b"", "no_image"
    try:
      nbytes = os.path.getsize(path)
    except OSError:
      return b"", "no_image"
    if nbytes > self.max_bytes:
      return b"", "oversized_image"
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
          width, height = image.size  # From the header: nothing decoded yet.
          if width * height > self.max_pixels:
            return b"", "oversized_pixels"
          image.draft("RGB", (self.size, self.size))
          image.load()
          rgb = _to_rgb(image)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
      return b"", "oversized_pixels"  # Pillow's guard, at open (the warning is made an error).
    except Exception:  # PIL raises many types (OSError, SyntaxError, ValueError, ...).
      return b"", "corrupt_image"
    rgb = ImageOps.pad(rgb, (self.size, self.size), Image.Resampling.BICUBIC,
                       color=(255, 255, 255))
    out = io.BytesIO()
    if self.format == "JPEG":
      rgb.save(out, format="JPEG", quality=self.quality)
    else:
      rgb.save(out, format="PNG")
    return out.getvalue(), "ok"

  def encode_all(self, paths: Iterable[str | os.PathLike | None]) -> Iterator[tuple[bytes, str]]:
    """`encode_file` over `paths`, in order, a chunk at a time on `workers` threads."""
    with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
      chunk = []
      for path in paths:
        chunk.append(path)
        if len(chunk) == CHUNK:
          yield from pool.map(self.encode_file, chunk)
          chunk = []
      yield from pool.map(self.encode_file, chunk)


class ImageFolder:
  """Image files of one folder, found by stem (`<stem>.<any image extension>`)."""

  def __init__(self, folder: str | os.PathLike | None):
    self.folder = pathlib.Path(folder) if folder else None
    self._by_stem: dict[str, str] = {}
    if self.folder is not None and self.folder.is_dir():
      with os.scandir(self.folder) as entries:
        for entry in entries:
          stem, ext = os.path.splitext(entry.name)
          if ext.lower() in EXTENSIONS and stem not in self._by_stem:
            self._by_stem[stem] = entry.path

  def __len__(self) -> int:
    return len(self._by_stem)

  def find(self, stem: str) -> str | None:
    """The file for `stem`, or None."""
    return self._by_stem.get(stem)


def _to_rgb(image: Image.Image) -> Image.Image:
  if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
  return image.convert("RGB")
