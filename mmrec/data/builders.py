"""TFDS builders (ArrayRecord, no TensorFlow) for the catalog and the interactions.

Both builders are generic: the embedded shop and the importers hand them
in-memory tables (`mmrec.data.schema`) through the constructor. They write
`<data_dir>/mmrec_catalog/1.0.0/` and `<data_dir>/mmrec_interactions/1.0.0/`.
The readers return rows in a deterministic order (catalog by item index,
interactions by (timestamp, user, item)), whatever order TFDS stored them in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import json
import pathlib
import re
import tempfile

from absl import logging
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from mmrec.data.schema import SPLITS, Catalog, Interactions

VERSION = "1.0.0"
CATALOG_NAME = "mmrec_catalog"
INTERACTIONS_NAME = "mmrec_interactions"
ATTR_PREFIX = "attr_"
_TEXT_FIELDS = ("item_id", "title", "description", "category")
_ATTR_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class _LocalBuilder(tfds.core.GeneratorBasedBuilder):
  """Builds from in-memory tables: TFDS's "Downloading and preparing" prints (always to
  stdout) would mislead, so they go to the INFO log instead."""

  def _log_download_bytes(self) -> None:
    logging.info("writing %s to %s", self.name, self.data_dir)

  def _log_download_done(self) -> None:
    logging.info("wrote %s to %s", self.name, self.data_dir)


class MmrecCatalog(_LocalBuilder):
  """One example per item in split `items`; attribute value names go to metadata.json."""

  VERSION = tfds.core.Version(VERSION)
  code_path = None  # No checksums file; TFDS's lookup would need `importlib_resources`.

  def __init__(self, catalog: Catalog, is_cold: np.ndarray, **kwargs):
    self._catalog = catalog
    self._is_cold = np.asarray(is_cold, bool)
    _check_catalog(catalog, self._is_cold)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    text = {k: tfds.features.Text() for k in _TEXT_FIELDS}
    attrs = {ATTR_PREFIX + k: tfds.features.Scalar(np.int32) for k in self._catalog.attributes}
    features = tfds.features.FeaturesDict({
        "item_index": tfds.features.Scalar(np.int64),
        **text,
        "image": tfds.features.Tensor(shape=(), dtype=np.object_),
        "is_cold": tfds.features.Scalar(np.bool_),
        **attrs,
    })
    values = {k: list(map(str, v)) for k, v in self._catalog.attribute_values.items()}
    return tfds.core.DatasetInfo(
        builder=self, description="mmrec item catalog, one example per item.",
        features=features, metadata=tfds.core.MetadataDict(attribute_values=values),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"items": self._generate_examples()}

  def _generate_examples(self):
    c = self._catalog
    columns = {k: [str(x) for x in getattr(c, k)] for k in _TEXT_FIELDS}
    attrs = {ATTR_PREFIX + k: np.asarray(v).tolist() for k, v in c.attributes.items()}
    is_cold = self._is_cold.tolist()
    for i in range(len(c)):
      example = {k: v[i] for k, v in columns.items()}
      example.update({k: v[i] for k, v in attrs.items()})
      example.update(item_index=i, image=bytes(c.image[i]), is_cold=is_cold[i])
      yield i, example


class MmrecInteractions(_LocalBuilder):
  """Splits `train`/`valid`/`test` of (user, item, timestamp); empty splits are omitted."""

  VERSION = tfds.core.Version(VERSION)
  code_path = None  # As in MmrecCatalog.

  def __init__(self, splits: Mapping[str, Interactions], **kwargs):
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
      raise ValueError(f"interaction splits {unknown} are not among {SPLITS}")
    # TFDS cannot write a split without examples; readers give it back empty.
    self._splits = {k: v for k, v in splits.items() if len(v)}
    if not self._splits:
      raise ValueError("no interactions to write: every split is empty")
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    features = tfds.features.FeaturesDict(
        {k: tfds.features.Scalar(np.int64) for k in ("user", "item", "timestamp")})
    return tfds.core.DatasetInfo(
        builder=self, description="mmrec user-item interactions (timestamps in seconds).",
        features=features, disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {k: self._generate_examples(v) for k, v in self._splits.items()}

  def _generate_examples(self, interactions: Interactions):
    rows = zip(interactions.user.tolist(), interactions.item.tolist(),
               interactions.timestamp.tolist())
    for i, (u, it, t) in enumerate(rows):
      yield i, {"user": u, "item": it, "timestamp": t}


def write_catalog(data_dir: str | pathlib.Path, catalog: Catalog,
                  is_cold: np.ndarray) -> pathlib.Path:
  """Writes `<data_dir>/mmrec_catalog/1.0.0/`; returns that directory."""
  return _prepare(MmrecCatalog(catalog, is_cold, **_builder_kwargs(data_dir)))


def write_interactions(data_dir: str | pathlib.Path,
                       splits: Mapping[str, Interactions]) -> pathlib.Path:
  """Writes `<data_dir>/mmrec_interactions/1.0.0/`; returns that directory."""
  return _prepare(MmrecInteractions(splits, **_builder_kwargs(data_dir)))


def read_catalog(path: str | pathlib.Path) -> tuple[Catalog, np.ndarray]:
  """Reads a catalog (dataset dir or its version dir) -> (Catalog, is_cold bool [N])."""
  version_dir = _version_dir(path, CATALOG_NAME)
  builder = tfds.builder_from_directory(str(version_dir))
  keys = list(builder.info.features.keys())
  required = ("item_index", *_TEXT_FIELDS, "image", "is_cold")
  missing = [k for k in required if k not in keys]
  if missing:
    raise ValueError(f"{version_dir}/features.json: catalog lacks fields {missing}")
  cols = _read_split(builder, "items", keys)
  index = np.asarray(cols["item_index"], np.int64)
  order = np.argsort(index)
  if not np.array_equal(index[order], np.arange(len(index))):
    raise ValueError(f"{version_dir}: item_index is not a permutation of 0..{len(index) - 1}")
  cols = {k: [v[i] for i in order] for k, v in cols.items()}
  text = {k: np.array([s.decode("utf-8") for s in cols[k]], dtype=str) for k in _TEXT_FIELDS}
  attributes = {k[len(ATTR_PREFIX):]: np.array(v, np.int32)
                for k, v in cols.items() if k.startswith(ATTR_PREFIX)}
  metadata = version_dir / "metadata.json"
  values = json.loads(metadata.read_text())["attribute_values"] if metadata.exists() else {}
  catalog = Catalog(**text, image=cols["image"], attributes=attributes,
                    attribute_values=values)
  return catalog, np.array(cols["is_cold"], bool)


def read_interactions(path: str | pathlib.Path) -> dict[str, Interactions]:
  """Reads the splits (dataset dir or version dir), rows sorted by (timestamp, user, item)."""
  version_dir = _version_dir(path, INTERACTIONS_NAME)
  builder = tfds.builder_from_directory(str(version_dir))
  out = {}
  for split in SPLITS:
    if split not in builder.info.splits:
      out[split] = Interactions(np.zeros(0), np.zeros(0), np.zeros(0))
      continue
    cols = {k: np.asarray(v, np.int64) for k, v in
            _read_split(builder, split, ("user", "item", "timestamp")).items()}
    order = np.lexsort((cols["item"], cols["user"], cols["timestamp"]))
    out[split] = Interactions(cols["user"][order], cols["item"][order],
                              cols["timestamp"][order])
  return out


def _check_catalog(catalog: Catalog, is_cold: np.ndarray):
  n = len(catalog)
  if n == 0:
    raise ValueError("catalog is empty: nothing to write")
  lengths = {k: len(getattr(catalog, k)) for k in (*_TEXT_FIELDS, "image")}
  lengths |= {f"attributes[{k!r}]": len(v) for k, v in catalog.attributes.items()}
  lengths["is_cold"] = len(is_cold)
  wrong = {k: m for k, m in lengths.items() if m != n}
  if wrong:
    raise ValueError(f"catalog has {n} items but these columns differ in length: {wrong}")
  for name in catalog.attributes:
    if not _ATTR_NAME.match(name):
      raise ValueError(f"catalog attribute name {name!r} must match {_ATTR_NAME.pattern}")


def _builder_kwargs(data_dir: str | pathlib.Path) -> dict:
  return {"data_dir": str(data_dir), "file_format": "array_record"}


def _prepare(builder: tfds.core.GeneratorBasedBuilder) -> pathlib.Path:
  out = pathlib.Path(builder.data_dir)
  if out.exists():
    raise FileExistsError(f"{out} already exists; build into a fresh directory")
  with tempfile.TemporaryDirectory() as downloads:  # TFDS wants one; nothing is downloaded
    builder.download_and_prepare(download_dir=downloads)
  return out


def _version_dir(path: str | pathlib.Path, name: str) -> pathlib.Path:
  path = pathlib.Path(path)
  if (path / "dataset_info.json").exists():
    return path
  version_dir = path / name / VERSION
  if not (version_dir / "dataset_info.json").exists():
    raise FileNotFoundError(f"{path}: no {name} dataset (expected {version_dir}/dataset_info.json)")
  return version_dir


def _read_split(builder, split: str, keys: Sequence[str]) -> dict[str, list]:
  """Reads one split in batch: raw records, parsed straight from the Example protos."""
  source = builder.as_data_source(
      split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  records = source.__getitems__(range(len(source)))
  kinds = {k: builder.info.features[k].np_dtype.kind for k in keys}
  cols = {k: [] for k in keys}
  for record in records:
    feature = tf_example_pb2.Example.FromString(record).features.feature
    for k, col in cols.items():
      values = feature[k].bytes_list.value if kinds[k] in "OSU" else feature[k].int64_list.value
      col.append(values[0])
  return cols
