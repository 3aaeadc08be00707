"""Image re-encoding at import: RGB, size x size, one format; bad files never raise."""

import io
import struct
import zlib

import numpy as np
from PIL import Image
import pytest

from mmrec.data.importers.images import MAX_PIXELS, ImageEncoder, ImageFolder


def test_outcomes_and_output(tmp_path, image_files):
  good = image_files.good(tmp_path / "wide.jpg", size=(300, 100), colour=(10, 200, 30))
  rgba = image_files.good(tmp_path / "alpha.png", size=(20, 20), colour=(0, 0, 255, 0),
                          fmt="PNG", mode="RGBA")
  cut = image_files.truncated(tmp_path / "cut.jpg")
  junk = image_files.garbage(tmp_path / "junk.png")
  big = tmp_path / "big.png"
  Image.effect_noise((200, 200), 80).save(big, format="PNG")
  encoder = ImageEncoder(16, "jpeg", max_bytes=big.stat().st_size - 1)
  paths = [good, rgba, cut, junk, tmp_path / "missing.jpg", None, big]
  results = list(encoder.encode_all(paths))
  assert [r[1] for r in results] == ["ok", "ok", "corrupt_image", "corrupt_image", "no_image",
                                     "no_image", "oversized_image"]
  assert all(r[0] == b"" for r in results[2:])
  wide = Image.open(io.BytesIO(results[0][0]))
  assert wide.format == "JPEG" and wide.mode == "RGB" and wide.size == (16, 16)
  pixels = np.asarray(wide).astype(int)
  assert abs(pixels[8, 8] - [10, 200, 30]).max() < 30  # the image, fitted in the middle
  assert pixels[0, 8].min() > 220  # padded with white above
  clear = np.asarray(Image.open(io.BytesIO(results[1][0])))
  assert clear.min() > 220  # transparent pixels become white

  png = ImageEncoder(8, "png").encode_file(good)
  assert png[1] == "ok" and Image.open(io.BytesIO(png[0])).format == "PNG"


def test_many_files_in_order(tmp_path, image_files):
  colours = [(i * 9 % 256, 255 - i * 9 % 256, 100) for i in range(300)]  # > one chunk
  paths = [image_files.good(tmp_path / f"{i}.png", size=(4, 4), colour=c, fmt="PNG")
           for i, c in enumerate(colours)]
  encoder = ImageEncoder(4, "png", workers=2)
  for (data, outcome), colour in zip(encoder.encode_all(paths), colours):
    assert outcome == "ok"
    assert tuple(np.asarray(Image.open(io.BytesIO(data)))[2, 2]) == colour


def test_image_folder(tmp_path, image_files):
  image_files.good(tmp_path / "A1.jpg")
  image_files.good(tmp_path / "b.2.PNG", fmt="PNG")
  (tmp_path / "notes.txt").write_text("x")
  folder = ImageFolder(tmp_path)
  assert len(folder) == 2
  assert folder.find("A1").endswith("A1.jpg") and folder.find("b.2").endswith("b.2.PNG")
  assert folder.find("notes") is None and folder.find("A2") is None
  assert len(ImageFolder(tmp_path / "absent")) == 0 and ImageFolder(None).find("A1") is None


def _grey_png(width: int, height: int) -> bytes:
  """A 1-bit PNG written by hand: 64 megapixels fit in a few KB (a decompression bomb)."""
  chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                              + struct.pack(">I", zlib.crc32(kind + data)))
  rows = (b"\x00" + b"\x00" * ((width + 7) // 8)) * height
  header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
          + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def test_pixel_limit_refuses_bombs_by_header(tmp_path):
  bomb = tmp_path / "bomb.png"
  bomb.write_bytes(_grey_png(8000, 8000))
  assert bomb.stat().st_size < 100_000  # 64 megapixels, said by the header:
  assert struct.unpack(">II", bomb.read_bytes()[16:24]) == (8000, 8000)
  with pytest.raises(Image.DecompressionBombError):  # Pillow alone refuses it at open
    Image.open(bomb)
  encoder = ImageEncoder(8, "png")
  assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS == 25_000_000  # Pillow's guard, set explicitly
  assert encoder.encode_file(bomb) == (b"", "oversized_pixels")
  small = ImageEncoder(8, "png", max_pixels=120 * 100)  # a limit of its own, by the header
  (tmp_path / "at.png").write_bytes(_grey_png(120, 100))
  (tmp_path / "over.png").write_bytes(_grey_png(121, 100))
  assert small.encode_file(tmp_path / "at.png")[1] == "ok"
  assert small.encode_file(tmp_path / "over.png") == (b"", "oversized_pixels")
  assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS  # a lower limit leaves the guard alone
  with pytest.raises(ValueError, match="max_image_pixels"):
    ImageEncoder(8, max_pixels=0)
