"""Image re-encoding at import: RGB, size x size, one format; bad files never raise."""

import io

import numpy as np
from PIL import Image

from mmrec.data.importers.images import ImageEncoder, ImageFolder


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
