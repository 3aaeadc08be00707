"""Tampered bundles, each with the refusal it must meet, and `fault_summary()` for the
fault table (benchmarks/faults.py: `sys.path.insert(0, "tests/serving"); import tamper`).

Every tamper edits a plain copy of a freshly exported bundle. `hashed=True` marks a
tamper that leaves the structure intact (a flipped bit in a float): only the
SHA-256 check (`mmrec bundle verify`, `mmrec serve`) can see it. All others are
refused by every load. Pickles carry a canary: unpickling them creates a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable

import numpy as np

from mmrec.retrieval import export
from mmrec.serving import BundleError, load_bundle
from mmrec.serving.verify import verify_bundle

N, D = 200, 8
CANARY_NAME = "CANARY_UNPICKLED"


class Canary:
  """Unpickling this creates `path`: the proof that a pickle ran."""

  def __init__(self, path: pathlib.Path):
    self.path = str(path)

  def __reduce__(self):
    return (open, (self.path, "w"))


def canary_pickle(path: pathlib.Path) -> bytes:
  return pickle.dumps(Canary(path.parent / CANARY_NAME), protocol=4)


def make_bundle(out: pathlib.Path, mode: str = "brute_force", n: int = N) -> pathlib.Path:
  """A small bundle with metadata and a (fake) user tower file; returns a plain dir copy."""
  rng = np.random.default_rng(0)
  tower = (b"\x1c\x00\x00\x00exported", {"history_len": 4, "items_file": "user_tower_items.npy"},
           {"user_tower_items.npy": _npy(np.array([f"item-{i}" for i in range(n)]))})
  pointer = export.export_bundle(
      out.parent / f".{out.name}.pointer", rng.normal(size=(n, D)).astype(np.float32),
      np.array([f"item-{i}" for i in range(n)]), rng.integers(0, 30, n),
      model_info={"name": "tamper", "checkpoint_step": 1},
      metadata={"category": [("a", "b")[i % 2] for i in range(n)]}, scann_mode=mode,
      user_tower=tower)
  shutil.copytree(pointer, out)  # through the pointer: a plain directory
  return out


def _npy(array: np.ndarray) -> bytes:
  with tempfile.TemporaryFile() as f:
    np.save(f, array, allow_pickle=False)
    f.seek(0)
    return f.read()


def _manifest(path: pathlib.Path) -> dict:
  return json.loads((path / "manifest.json").read_text())


def _save_manifest(path: pathlib.Path, manifest: dict) -> None:
  (path / "manifest.json").write_text(json.dumps(manifest))


def rehash(path: pathlib.Path, name: str) -> None:
  """Lists `name` with its true SHA-256, as a tamperer who writes the manifest would."""
  manifest = _manifest(path)
  manifest["files"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
  _save_manifest(path, manifest)


def edit(**dotted) -> Callable[[pathlib.Path], None]:
  """Sets manifest fields, e.g. edit(**{"scann.num_neighbors": -5})."""
  def apply(path):
    manifest = _manifest(path)
    for name, value in dotted.items():
      *sections, key = name.split(".")
      holder = manifest
      for section in sections:
        holder = holder.setdefault(section, {})
      holder[key] = value
    _save_manifest(path, manifest)
  return apply


def write_npy(name: str, change: Callable[[np.ndarray], np.ndarray], listed: bool = True):
  def apply(path):
    array = np.load(path / name, allow_pickle=False)
    np.save(path / name, change(array.copy()), allow_pickle=True)
    if listed:
      rehash(path, name)
  return apply


def _set_row(row, value):
  def change(a):
    a[row, 0] = value
    return a
  return change


def _ids(change, keep_order_sorted: bool):
  def apply(path):
    ids = change(np.load(path / "item_ids.npy").copy())
    np.save(path / "item_ids.npy", ids)
    rehash(path, "item_ids.npy")
    if keep_order_sorted:
      np.save(path / "item_id_order.npy", np.argsort(ids, kind="stable").astype(np.int64))
      rehash(path, "item_id_order.npy")
  return apply


def _put(i, value):
  def change(ids):
    ids[i] = value
    return ids
  return change


def _pickle_file(name: str, listed: bool):
  def apply(path):
    (path / name).write_bytes(canary_pickle(path))
    if listed:
      rehash(path, name)
  return apply


def _object_npy(name: str):
  def apply(path):
    np.save(path / name, np.array([Canary(path.parent / CANARY_NAME)] * N, object),
            allow_pickle=True)
    rehash(path, name)
  return apply


def _flip(name: str, offset: int):
  def apply(path):
    data = bytearray((path / name).read_bytes())
    data[offset] ^= 0x01
    (path / name).write_bytes(bytes(data))
  return apply


def _truncate(name: str):
  def apply(path):
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[:-16])
    rehash(path, name)
  return apply


def _symlink_out(name: str):
  def apply(path):
    outside = path.parent / f"outside-{pathlib.Path(name).name}"
    shutil.copy(path / name, outside)
    (path / name).unlink()
    os.symlink(outside, path / name)
  return apply


def _list_outside(name: str):
  def apply(path):
    manifest = _manifest(path)
    manifest["files"][name] = "0" * 64
    _save_manifest(path, manifest)
  return apply


def _assets(text_change):
  def apply(path):
    file = path / "scann" / "scann_assets.pbtxt"
    file.write_text(text_change(file.read_text()))
    rehash(path, "scann/scann_assets.pbtxt")
  return apply


def _raw_manifest(change):
  def apply(path):
    (path / "manifest.json").write_text(change((path / "manifest.json").read_text()))
  return apply


def _unlink(name):
  return lambda path: (path / name).unlink()


def _extra_file(path):
  (path / "notes.txt").write_text("not listed")


@dataclasses.dataclass(frozen=True)
class Tamper:
  fault: str  # the kind, one row of the fault table
  case: str
  apply: Callable[[pathlib.Path], None]
  message: str  # regex the BundleError must match
  mode: str = "brute_force"  # the exported bundle it starts from
  hashed: bool = False  # only the SHA-256 check can see it


_PICKLE = r"(a pickle file in the bundle|holds a pickle|holds Python objects|without pickle)"
TAMPERS = [
    Tamper("pickle file", "scann_docids.pkl listed with its right SHA-256",
           _pickle_file("scann/scann_docids.pkl", True), _PICKLE),
    Tamper("pickle file", "scann_docids.pkl not listed", _pickle_file("scann/scann_docids.pkl",
                                                                      False), _PICKLE),
    Tamper("pickle file", "pickle renamed scann/extra.bin, listed",
           _pickle_file("scann/extra.bin", True), _PICKLE),
    Tamper("pickle file", "object array pickled into item_ids.npy", _object_npy("item_ids.npy"),
           _PICKLE),
    Tamper("pickle file", "object array pickled into scann/dataset.npy",
           _object_npy("scann/dataset.npy"), _PICKLE),
    Tamper("path outside the bundle", "files lists ../outside.npy", _list_outside("../outside.npy"),
           "points outside the bundle"),
    Tamper("path outside the bundle", "files lists /etc/hostname", _list_outside("/etc/hostname"),
           "points outside the bundle"),
    Tamper("path outside the bundle", "user_tower.file=/etc/hostname",
           edit(**{"user_tower.file": "/etc/hostname"}), "user_tower.file='/etc/hostname' is not"),
    Tamper("path outside the bundle", "explain.items_file=../../outside.npy",
           edit(**{"explain.items_file": "../../outside.npy"}),
           "explain.items_file='../../outside.npy' is not a file listed"),
    Tamper("path outside the bundle", "item_ids.npy a symlink to a file outside",
           _symlink_out("item_ids.npy"), "symbolic link inside the bundle"),
    Tamper("path outside the bundle", "ScaNN asset_path ../../etc/hostname",
           _assets(lambda t: t.replace('"dataset.npy"', '"../../etc/hostname"')),
           "scann_assets.pbtxt: unexpected text"),
    Tamper("path outside the bundle", "ScaNN DATASET_NPY another listed file",
           _assets(lambda t: t.replace('"dataset.npy"', '"scann_config.pb"')),
           "DATASET_NPY asset must be scann/dataset.npy"),
    Tamper("numeric field", "scann.num_neighbors=-5", edit(**{"scann.num_neighbors": -5}),
           "scann.num_neighbors=-5 must be >= 1"),
    Tamper("numeric field", "scann.num_neighbors=2.5", edit(**{"scann.num_neighbors": 2.5}),
           "scann.num_neighbors=2.5 must be a finite integer"),
    Tamper("numeric field", "scann.num_neighbors=true", edit(**{"scann.num_neighbors": True}),
           "scann.num_neighbors=True must be a finite integer"),
    Tamper("numeric field", "recall.recall_at_10=1.5", edit(**{"recall.recall_at_10": 1.5}),
           r"recall.recall_at_10=1.5 must be in \[0, 1\]"),
    Tamper("numeric field", "recall.recall_at_10=NaN",
           _raw_manifest(lambda t: re.sub(r'"recall_at_10": [0-9.]+', '"recall_at_10": NaN', t)),
           "NaN is not a JSON number"),
    Tamper("numeric field", "popularity.head_share=-0.2", edit(**{"popularity.head_share": -0.2}),
           r"popularity.head_share=-0.2 must be in \[0, 1\]"),
    Tamper("numeric field", "model.default_beta=-1", edit(**{"model.default_beta": -1}),
           "model.default_beta=-1 must be >= 0"),
    Tamper("numeric field", "user_tower.history_len=0", edit(**{"user_tower.history_len": 0}),
           "user_tower.history_len=0 must be >= 1"),
    Tamper("numeric field", "num_items='200'", edit(num_items="200"),
           "field 'num_items' must be a int"),
    Tamper("numeric field", "scann.num_leaves_to_search > num_leaves", edit(**{
        "scann.num_leaves_to_search": 10_000}), r"num_leaves_to_search=10000 must be in \[1, \d+\]",
           mode="tree_ah"),
    Tamper("non-finite vectors", "NaN in row 3, rehashed",
           write_npy("scann/dataset.npy", _set_row(3, np.nan)), r"row 3 \(item 3\) is NaN"),
    Tamper("non-finite vectors", "+inf in row 7, rehashed",
           write_npy("scann/dataset.npy", _set_row(7, np.inf)), r"row 7 \(item 7\) is NaN"),
    Tamper("bad item ids", "duplicate id, order rebuilt, rehashed",
           _ids(_put(9, "item-5"), True), "id 'item-5' repeats"),
    Tamper("bad item ids", "empty id, order rebuilt, rehashed", _ids(_put(4, ""), True),
           "row 4 is an empty id"),
    Tamper("bad item ids", "ids changed, order stale", _ids(_put(4, "zzz"), False),
           "item_id_order.npy: does not sort"),
    Tamper("files disagree", "scann/dataset.npy one row short, rehashed",
           write_npy("scann/dataset.npy", lambda a: a[:-1]), r"shape \(199, 8\) disagrees"),
    Tamper("files disagree", "manifest num_items=199", edit(num_items=199),
           r"dataset.npy: shape \(200, 8\) disagrees .*num_items=199"),
    Tamper("files disagree", "manifest dimension=4", edit(dimension=4),
           r"dataset.npy: shape \(200, 8\) disagrees .*dimension=4"),
    Tamper("files disagree", "popularity.npy one short, rehashed",
           write_npy("popularity.npy", lambda a: a[:-1]), r"popularity.npy: shape \(199,\)"),
    Tamper("files disagree", "popularity changed, cut stale, rehashed",
           write_npy("popularity.npy", lambda a: a + 1000 * (a == a.max())),
           "head/tail cut .* disagrees"),
    Tamper("files disagree", "hashed_dataset.npy one row short, rehashed",
           write_npy("scann/hashed_dataset.npy", lambda a: a[:-1]), "rows disagree",
           mode="tree_ah"),
    Tamper("files disagree", "tree token past the last leaf, rehashed",
           write_npy("scann/datapoint_to_token.npy", lambda a: a + 10_000),
           "leaf numbers outside", mode="tree_ah"),
    Tamper("damaged or missing file", "one bit flipped in scann/dataset.npy",
           _flip("scann/dataset.npy", -7), "dataset.npy: SHA-256 does not match", hashed=True),
    Tamper("damaged or missing file", "one bit flipped in user_tower.jax_export",
           _flip("user_tower.jax_export", -2), "user_tower.jax_export: SHA-256 does not match",
           hashed=True),
    Tamper("damaged or missing file", "scann/dataset.npy truncated, rehashed",
           _truncate("scann/dataset.npy"), "truncated or padded"),
    Tamper("damaged or missing file", "item_ids.npy deleted", _unlink("item_ids.npy"),
           r"item_ids.npy: missing \(listed"),
    Tamper("damaged or missing file", "manifest.json deleted", _unlink("manifest.json"),
           "manifest.json: missing"),
    Tamper("damaged or missing file", "manifest.json cut short",
           _raw_manifest(lambda t: t[:len(t) // 2]), "malformed JSON"),
    Tamper("damaged or missing file", "an unlisted file", _extra_file,
           "notes.txt: not listed in manifest.json"),
    Tamper("damaged or missing file", "format_version 2", edit(format_version=2),
           "format_version 2 is no longer read; re-export"),
]


def refusal(tamper: Tamper, base: pathlib.Path, work: pathlib.Path) -> dict:
  """Applies `tamper` to a copy of `base`; what plain load, verify and the canary saw."""
  path = work / "bundle"
  shutil.copytree(base, path, symlinks=True)
  tamper.apply(path)
  seen = {}
  for how, load in (("load", load_bundle), ("verify", verify_bundle)):
    try:
      load(path)
      seen[how] = None
    except BundleError as e:
      seen[how] = str(e)
  canary = (work / CANARY_NAME).exists()
  shutil.rmtree(work)
  work.mkdir()
  verified = seen["verify"] is not None and re.search(tamper.message, seen["verify"])
  loaded_ok = seen["load"] is None if tamper.hashed else (
      seen["load"] is not None and re.search(tamper.message, seen["load"]))
  return {**seen, "canary": canary, "ok": bool(verified and loaded_ok and not canary)}


def fault_summary(include_kills: bool = False) -> list[dict]:
  """One row per tamper kind: {"area", "fault", "cases", "outcome", "ok", "example"};
  `include_kills` adds the row of exports killed with SIGKILL (`killing.kill_summary`,
  about 15 s more)."""
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    bases = {mode: make_bundle(tmp / mode, mode, N if mode == "brute_force" else 400)
             for mode in ("brute_force", "tree_ah")}
    rows: dict[str, dict] = {}
    for tamper in TAMPERS:
      work = tmp / "work"
      work.mkdir(exist_ok=True)
      seen = refusal(tamper, bases[tamper.mode], work)
      row = rows.setdefault(tamper.fault, {
          "area": "bundle", "fault": tamper.fault, "cases": 0,
          "outcome": "refused with message", "ok": True, "example": seen["verify"]})
      row["cases"] += 1
      row["ok"] &= seen["ok"]
  if include_kills:
    import killing  # beside this file
    rows["kill"] = killing.kill_summary()
  return list(rows.values())
