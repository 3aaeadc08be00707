"""The bundle's ScaNN searcher, read without pickle (docs/bundle.md, "No pickle").

scann's `scann_ops_pybind.load_searcher` unpickles `scann_docids.pkl` whenever
that file is there. mmrec never calls it: the searcher is built with the pybind
constructor `ScannNumpy(artifacts_dir, assets_pbtxt)` itself, which reads only
the assets named in the text it is given and has no pickle path. That text is
rebuilt here from a strict parse of `scann/scann_assets.pbtxt`: each asset a
plain file name in `scann/` that the manifest lists. Item ids live in the
bundle's own arrays; ScaNN only ever sees row numbers. numpy and scann only.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np

from mmrec.serving.format import VECTORS_FILE, BundleError, npy_header

ASSETS_FILE = "scann/scann_assets.pbtxt"
_ASSET = re.compile(r'assets\s*\{\s*asset_type:\s*([A-Z][A-Z0-9_]*)\s+'
                    r'asset_path:\s*"([A-Za-z0-9_.-]+)"\s*\}')
_ROW_ASSETS = ("AH_DATASET_NPY", "TOKENIZATION_NPY")  # one row per item, like the vectors


def read_assets(path: pathlib.Path, files: dict) -> dict[str, str]:
  """Asset type -> file name inside `scann/`, every one listed in the manifest."""
  file = path / ASSETS_FILE
  try:
    text = file.read_text(encoding="utf-8")
  except UnicodeDecodeError as e:
    raise BundleError(f"{file}: not UTF-8 text: {e}") from e
  assets, end = {}, 0
  for match in _ASSET.finditer(text):
    if text[end:match.start()].strip():
      break
    kind, name = match.groups()
    if kind in assets:
      raise BundleError(f"{file}: asset_type {kind} is listed twice")
    if name in (".", "..") or f"scann/{name}" not in files:
      raise BundleError(f"{file}: asset_path {name!r} is not a file of scann/ listed in "
                        "manifest.json 'files'")
    assets[kind] = name
    end = match.end()
  if text[end:].strip():
    raise BundleError(f"{file}: unexpected text at character {end} (only `assets {{ asset_type: "
                      "X asset_path: \"NAME\" }` entries with plain file names are read)")
  if assets.get("DATASET_NPY") != pathlib.PurePosixPath(VECTORS_FILE).name:
    raise BundleError(f"{file}: the DATASET_NPY asset must be {VECTORS_FILE} (the item vectors)")
  return assets


def check_assets(path: pathlib.Path, assets: dict[str, str], manifest: dict) -> None:
  """Per-item assets hold one row per item; tree tokens name existing leaves."""
  n = manifest["num_items"]
  for kind in _ROW_ASSETS:
    if kind not in assets:
      continue
    file = path / "scann" / assets[kind]
    shape, dtype, _ = npy_header(file)
    if not shape or shape[0] != n:
      raise BundleError(f"{file}: {shape[0] if shape else 0} rows disagree with "
                        f"{VECTORS_FILE} and manifest.json num_items={n}")
    if kind == "TOKENIZATION_NPY" and "num_leaves" in manifest["scann"]:
      tokens = np.load(file, allow_pickle=False)
      leaves = manifest["scann"]["num_leaves"]
      if dtype.kind not in "iu" or (tokens < 0).any() or (tokens >= leaves).any():
        raise BundleError(f"{file}: leaf numbers outside [0, scann.num_leaves={leaves})")


def assets_text(assets: dict[str, str]) -> str:
  """The canonical `scann_assets.pbtxt` text for `assets`."""
  return "".join(f'assets {{\n  asset_type: {kind}\n  asset_path: "{name}"\n}}\n'
                 for kind, name in assets.items())


def load_searcher(path: pathlib.Path, assets: dict[str, str]):
  """The ScaNN searcher of the bundle at `path`, without docids (no pickle is read)."""
  from scann.scann_ops.py import scann_ops_pybind
  try:
    native = scann_ops_pybind.scann_pybind.ScannNumpy(str(path / "scann"), assets_text(assets))
  except (RuntimeError, ValueError) as e:
    raise BundleError(f"{path}/scann: the ScaNN searcher does not load: {e}") from e
  return scann_ops_pybind.ScannSearcher(native, docids=None)
