"""TFDS builders and dataset directories: exact round trips, without TensorFlow."""

import importlib.util
import io
import json
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from mmrec.data import builders
from mmrec.data.dataset import build_dataset, decode_images, load_dataset, load_truth
from mmrec.data.schema import SPLITS, Catalog, Interactions

# Installed first in the subprocess: importing tensorflow fails even where it is
# installed (a probe with importlib.util.find_spec still sees a module spec).
_BLOCK_TF = """
import importlib.abc, importlib.machinery, sys
class _NoTF(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  def find_spec(self, name, path=None, target=None):
    if name == "tensorflow" or name.startswith("tensorflow."):
      return importlib.machinery.ModuleSpec(name, self)
    return None
  def create_module(self, spec):
    raise ModuleNotFoundError(f"blocked import of {spec.name}", name=spec.name)
  def exec_module(self, module):
    raise AssertionError("unreachable")
sys.meta_path.insert(0, _NoTF())
"""

def _png(colour, size=(8, 8)) -> bytes:
  buf = io.BytesIO()
  Image.new("RGB", size, colour).save(buf, format="PNG")
  return buf.getvalue()


def _catalog() -> tuple[Catalog, np.ndarray]:
  catalog = Catalog(
      item_id=np.array(["sku-1", "sku-2", "ü-3", "sku 4", "5"]),
      title=np.array(["Red shirt", "Blue dress", "Café crème mug ☕", "Plain", "Wool hat"]),
      description=np.array(["Soft cotton.", "Line one\nline two", "", "  spaced  ", "Warm"]),
      category=np.array(["tops", "dresses", "kitchen", "", "hats"]),
      image=[_png((255, 0, 0)), _png((0, 0, 255), (5, 9)), b"", _png((1, 2, 3)),
             b"\x00not-an-image\xff"],
      attributes={"colour": np.array([0, 1, 2, 2, 0], np.int32),
                  "price_tier": np.array([3, 0, 1, 2, 1], np.int32)},
      attribute_values={"colour": ["red", "blue", "white"],
                        "price_tier": ["low", "mid", "high", "luxury"]},
  )
  return catalog, np.array([False, True, False, True, False])


def _interactions(n, seed) -> Interactions:
  rng = np.random.default_rng(seed)
  return Interactions(rng.integers(0, 7, n), rng.integers(0, 5, n),
                      rng.integers(1_600_000_000, 1_600_000_050, n))


def _sorted(x: Interactions) -> Interactions:
  return x.take(np.lexsort((x.item, x.user, x.timestamp)))


def _assert_tables_equal(a: Interactions, b: Interactions):
  for field in ("user", "item", "timestamp"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert getattr(a, field).dtype == getattr(b, field).dtype, field


def _assert_catalog_equal(a: Catalog, b: Catalog):
  for field in ("item_id", "title", "description", "category"):
    assert getattr(a, field).tolist() == getattr(b, field).tolist(), field
  assert a.image == b.image
  assert sorted(a.attributes) == sorted(b.attributes)
  for k in a.attributes:
    np.testing.assert_array_equal(a.attributes[k], b.attributes[k], err_msg=k)
    assert a.attributes[k].dtype == np.int32
  assert a.attribute_values == b.attribute_values


def _roundtrip(data_dir: str):
  """Writes both builders, reads them back and compares every field of every row."""
  catalog, is_cold = _catalog()
  splits = {"train": _interactions(300, 0), "valid": _interactions(40, 1),
            "test": Interactions([], [], [])}  # An empty split is omitted on disk.
  cat_dir = builders.write_catalog(data_dir, catalog, is_cold)
  int_dir = builders.write_interactions(data_dir, splits)
  assert cat_dir == pathlib.Path(data_dir, "mmrec_catalog", "1.0.0")
  assert int_dir == pathlib.Path(data_dir, "mmrec_interactions", "1.0.0")

  for path in (data_dir, cat_dir):  # The dataset dir or the version dir.
    read, read_cold = builders.read_catalog(path)
    _assert_catalog_equal(read, catalog)
    np.testing.assert_array_equal(read_cold, is_cold)
  read_splits = builders.read_interactions(data_dir)
  assert list(read_splits) == list(SPLITS)
  for s in SPLITS:
    _assert_tables_equal(read_splits[s], _sorted(splits[s]))
  assert "tensorflow" not in sys.modules


def test_tensorflow_is_not_installed():
  assert importlib.util.find_spec("tensorflow") is None


def test_roundtrip_without_tensorflow(tmp_path):
  here = str(pathlib.Path(__file__).parent)
  code = _BLOCK_TF + (f"sys.path.insert(0, {here!r})\n"
                      f"import test_builders\ntest_builders._roundtrip({str(tmp_path)!r})\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr[-5000:]


def test_errors(tmp_path):
  catalog, is_cold = _catalog()
  builders.write_catalog(tmp_path, catalog, is_cold)
  with pytest.raises(FileExistsError, match="mmrec_catalog"):
    builders.write_catalog(tmp_path, catalog, is_cold)
  with pytest.raises(ValueError, match="is_cold"):
    builders.MmrecCatalog(catalog, is_cold[:2], data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="every split is empty"):
    builders.MmrecInteractions({"train": Interactions([], [], [])}, data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="not among"):
    builders.MmrecInteractions({"eval": _interactions(3, 0)}, data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="mmrec_interactions"):
    builders.read_interactions(tmp_path)


def test_build_and_load_dataset(tmp_path):
  catalog, _ = _catalog()
  rng = np.random.default_rng(0)
  interactions = Interactions(np.repeat(np.arange(6), 6), rng.integers(0, 5, 36),
                              np.arange(36) + 1_600_000_000)
  is_new = np.array([False, False, False, False, True])
  truth = {"user_latent": rng.normal(size=(6, 3)).astype(np.float32)}
  path = build_dataset(tmp_path, "tiny", catalog, interactions, is_new=is_new, seed=3,
                       vocab_size=200, extra_meta={"size": "tiny"}, truth=truth)
  assert path == tmp_path / "tiny"
  ds = load_dataset(path)
  assert ds.num_users == 6 and ds.num_items == 5
  assert sum(len(v) for v in ds.splits.values()) == 36
  assert not np.isin(ds.splits["train"].item, [4]).any()
  np.testing.assert_array_equal(ds.is_cold, ds.train_counts() == 0)
  assert ds.catalog.image[4] == b""  # Corrupt image cleaned away.
  meta = ds.meta
  assert (meta["name"], meta["seed"], meta["size"]) == ("tiny", 3, "tiny")
  report = meta["report"]
  assert report["interactions"]["total"] == 36 and report["items_with_image"] == 3
  assert report["new_items"] == 1 and report["cleaning"]["counts"]["corrupt_image"] == 1
  assert 0 <= report["train_long_tail"]["gini"] <= 1
  np.testing.assert_array_equal(load_truth(path)["user_latent"], truth["user_latent"])
  assert ds.tokenizer_path == str(path / "tokenizer.json")

  images, has_image = decode_images(ds.catalog, 16)
  assert images.shape == (5, 16, 16, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(has_image, [True, True, False, True, False])
  np.testing.assert_array_equal(images[0], np.broadcast_to([255, 0, 0], (16, 16, 3)))
  np.testing.assert_array_equal(images[1], np.broadcast_to([0, 0, 255], (16, 16, 3)))
  assert not images[2].any()

  # Rebuilding replaces the directory and leaves no temporary directories behind.
  build_dataset(tmp_path, "tiny", catalog, interactions, seed=4, vocab_size=200)
  assert json.loads((path / "meta.json").read_text())["seed"] == 4
  assert load_truth(path) is None
  assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
