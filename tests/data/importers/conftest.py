"""Image files for the importer fixtures: good, truncated and garbage."""

import io
import pathlib

from PIL import Image
import pytest


class ImageFiles:
  """Writes image files: good ones of a given size and colour, and broken ones."""

  @staticmethod
  def good(path: pathlib.Path, size=(40, 30), colour=(200, 30, 30), fmt="JPEG",
           mode="RGB") -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, format=fmt)
    return path

  @staticmethod
  def truncated(path: pathlib.Path) -> pathlib.Path:
    """A JPEG cut in half: the header reads, the pixels do not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, format="JPEG")
    path.write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    return path

  @staticmethod
  def garbage(path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an image at all")
    return path


@pytest.fixture
def image_files() -> ImageFiles:
  return ImageFiles()


def rows_of(imported):
  """The imported interactions as (user id, item id, timestamp, rating) tuples."""
  ids = imported.catalog.item_id
  rating = imported.rating if imported.rating is not None else [None] * len(imported.user)
  return sorted((imported.user_ids[u], str(ids[i]), int(t), None if r is None else float(r))
                for u, i, t, r in zip(imported.user.tolist(), imported.item.tolist(),
                                      imported.timestamp.tolist(), list(rating)))


@pytest.fixture
def imported_rows():
  return rows_of
