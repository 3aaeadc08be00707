"""Bundle export: parameters, file layout, atomic replace, input validation."""

import datetime
import hashlib
import json
import shutil

import numpy as np
import pytest

from mmrec.retrieval import export, tuning
from mmrec.serving import load_bundle, tail


def _catalog(n=300, d=8, seed=0):
  rng = np.random.default_rng(seed)
  emb = rng.normal(size=(n, d)).astype(np.float32)
  ids = np.array([f"sku-{i:05d}" for i in range(n)])
  pop = rng.integers(0, 50, n)
  return emb, ids, pop


def _export(path, n=300, d=8, seed=0, **kwargs):
  emb, ids, pop = _catalog(n, d, seed)
  kwargs.setdefault("model_info", {"name": "two_tower", "step": seed})
  return export.export_bundle(path, emb, ids, pop, **kwargs)


def test_scann_params_choose_by_size():
  assert tuning.scann_params(19_999, 64) == {"mode": "brute_force", "num_neighbors": 10}
  assert tuning.scann_params(50_000, 64)["mode"] == "ah"
  p = tuning.scann_params(250_000, 64)
  assert p["mode"] == "tree_ah" and p["num_leaves"] == 500 and p["num_leaves_to_search"] == 50
  assert p["reorder"] >= p["num_neighbors"]
  assert tuning.scann_params(400_000, 64, "brute_force")["mode"] == "brute_force"
  assert tuning.scann_params(500, 16, "tree_ah")["num_leaves"] == 22
  with pytest.raises(ValueError, match="scann_mode='fast'"):
    tuning.scann_params(10, 4, "fast")
  with pytest.raises(ValueError, match="at least 16 items"):
    tuning.scann_params(10, 4, "tree_ah")


def test_export_layout_and_manifest(tmp_path):
  emb, ids, pop = _catalog()
  meta = {"title": [f"t{i}" for i in range(300)], "category": ["c"] * 300}
  out = export.export_bundle(tmp_path / "b", emb, ids, pop,
                             model_info={"name": "m", "step": 7}, metadata=meta)
  assert out == (tmp_path / "b").absolute()
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["format_version"] == 3 and manifest["version"] == 1
  assert manifest["updated_at"] == manifest["created_at"]
  assert manifest["history"] == [{"version": 1, "action": "export", "at": manifest["created_at"],
                                  "num_items": 300}]
  created = datetime.datetime.fromisoformat(manifest["created_at"])
  assert created.utcoffset() == datetime.timedelta(0)
  assert manifest["model"] == {"name": "m", "step": 7}
  assert (manifest["num_items"], manifest["dimension"]) == (300, 8)
  assert manifest["distance"] == "dot_product"
  assert manifest["scann"] == {**tuning.scann_params(300, 8), "mode_requested": "auto",
                               "built_num_items": 300, "changed_since_build": 0}
  assert manifest["recall"]["recall_at_10"] == 1.0 and manifest["recall"]["estimate"]
  assert manifest["recall"]["target_met"] is None  # made-up queries: an estimate only
  assert manifest["recall"]["queries"] == "perturbed_items"
  assert manifest["popularity"] == tail.head_cut(pop)
  on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
  assert sorted(manifest["files"]) == [f for f in on_disk if f != "manifest.json"]
  assert {"item_ids.npy", "item_id_order.npy", "popularity.npy", "metadata.json",
          "scann/scann_assets.pbtxt", "scann/dataset.npy"} <= set(manifest["files"])
  assert "embeddings.npy" not in manifest["files"]  # the vectors are stored once
  for name, digest in manifest["files"].items():
    assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
  assert not any(f.endswith(".pkl") for f in on_disk)
  np.testing.assert_array_equal(np.load(out / "scann/dataset.npy", allow_pickle=False), emb)
  order = np.load(out / "item_id_order.npy", allow_pickle=False)
  np.testing.assert_array_equal(order, np.argsort(ids))
  np.testing.assert_array_equal(np.load(out / "item_ids.npy", allow_pickle=False), ids)
  assert np.load(out / "popularity.npy", allow_pickle=False).dtype == np.int64
  assert json.loads((out / "metadata.json").read_text()) == meta
  # ScaNN wrote its asset paths relative to scann/.
  assert str(tmp_path) not in (out / "scann" / "scann_assets.pbtxt").read_text()


def test_bundle_still_loads_after_move(tmp_path):
  _export(tmp_path / "a")
  shutil.move(tmp_path / "a", tmp_path / "moved")
  bundle = load_bundle(tmp_path / "moved")
  ids, _ = bundle.search(bundle.embeddings[:3], 5)
  assert ids.shape == (3, 5)


@pytest.mark.parametrize("mode", ["ah", "tree_ah"])
def test_tuned_recall_against_brute_force(tmp_path, mode):
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(200, 32))
  items = centers[rng.integers(0, 200, 30_000)] + 0.5 * rng.normal(size=(30_000, 32))
  items /= np.linalg.norm(items, axis=1, keepdims=True)
  ids = np.array([str(i) for i in range(30_000)])
  export.export_bundle(tmp_path / "b", items.astype(np.float32), ids,
                       np.zeros(30_000, np.int64), model_info={}, scann_mode=mode)
  bundle = load_bundle(tmp_path / "b")
  scann, recall = bundle.manifest["scann"], bundle.manifest["recall"]
  assert scann["mode"] == mode and recall["recall_at_10"] >= 0.95
  assert recall["target_met"] is None and recall["estimate"]  # no user-tower queries
  if mode == "tree_ah":
    assert scann["num_leaves"] == 173 and 1 <= scann["num_leaves_to_search"] <= 173
  # Fresh queries from the same mixture, not the tuning queries.
  queries = (centers[rng.integers(0, 200, 300)] + 0.5 * rng.normal(size=(300, 32)))
  approx, _ = bundle.search(queries.astype(np.float32), 10)
  exact, _ = bundle.search(queries.astype(np.float32), 10, exact=True)
  assert np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)]) >= 0.9


def test_tuning_queries_are_recorded(tmp_path):
  emb, ids, pop = _catalog()
  queries = np.random.default_rng(1).normal(size=(50, 8))
  out = export.export_bundle(tmp_path / "b", emb, ids, pop, model_info={},
                             tuning_queries=queries, tuning_query_source="user_tower")
  recall = load_bundle(out).manifest["recall"]
  assert recall["queries"] == "user_tower" and recall["num_queries"] == 50
  with pytest.raises(ValueError, match=r"tuning_queries must be \[Q, 8\]"):
    export.export_bundle(tmp_path / "c", emb, ids, pop, model_info={}, tuning_queries=queries[:, :3])


def test_replace_swaps_bundle_and_leaves_no_temp_dirs(tmp_path):
  _export(tmp_path / "b", seed=1)
  _export(tmp_path / "b", seed=2)
  assert load_bundle(tmp_path / "b").manifest["model"]["step"] == 2
  assert sorted(p.name for p in tmp_path.iterdir()) == [".b.versions", "b"]
  # b is a pointer to its version; the previous version is kept for readers still on it
  versions = sorted(p.name for p in (tmp_path / ".b.versions").iterdir())
  assert (tmp_path / "b").is_symlink() and len(versions) == 2
  assert (tmp_path / "b").resolve().name in versions
  _export(tmp_path / "b", seed=3)
  assert len(list((tmp_path / ".b.versions").iterdir())) == 2


def test_failed_export_keeps_previous_bundle(tmp_path, monkeypatch):
  _export(tmp_path / "b", seed=1)
  before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

  def broken(*args):
    raise RuntimeError("searcher build interrupted")

  monkeypatch.setattr(export.tuning, "build_searcher", broken)
  with pytest.raises(RuntimeError, match="interrupted"):
    _export(tmp_path / "b", seed=2)
  with pytest.raises(RuntimeError, match="interrupted"):
    _export(tmp_path / "new", seed=3)
  after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
  assert after == before  # old bundle byte for byte, no temp dir, no "new"
  assert load_bundle(tmp_path / "b").manifest["model"]["step"] == 1


def test_refuses_to_replace_a_directory_that_is_not_a_bundle(tmp_path):
  (tmp_path / "b").mkdir()
  (tmp_path / "b" / "precious.txt").write_text("keep me")
  with pytest.raises(ValueError, match="neither empty nor a bundle"):
    _export(tmp_path / "b")
  assert (tmp_path / "b" / "precious.txt").read_text() == "keep me"
  (tmp_path / "empty").mkdir()
  _export(tmp_path / "empty")
  assert (tmp_path / "empty" / "manifest.json").is_file()


@pytest.mark.parametrize("change, message", [
    (lambda e, i, p: (e[:, :0], i, p), r"embeddings must be \[N, D\]"),
    (lambda e, i, p: (e.astype(np.int32), i, p), "floating point"),
    (lambda e, i, p: (np.where(np.arange(300)[:, None] == 5, np.nan, e), i, p), "row 5 is not finite"),
    (lambda e, i, p: (e, i[:-1], p), r"item_ids must be str \[300\]"),
    (lambda e, i, p: (e, np.arange(300), p), "item_ids must be str"),
    (lambda e, i, p: (e, np.where(np.arange(300) == 9, "sku-00003", i), p), "repeat 'sku-00003'"),
    (lambda e, i, p: (e, np.where(np.arange(300) == 4, "", i), p), "row 4 is empty"),
    (lambda e, i, p: (e, i, p.astype(np.float32)), r"popularity must be int \[300\]"),
    (lambda e, i, p: (e, i, -p - 1), "negative"),
])
def test_invalid_inputs_are_refused(tmp_path, change, message):
  emb, ids, pop = change(*_catalog())
  with pytest.raises(ValueError, match=message):
    export.export_bundle(tmp_path / "b", emb, ids, pop, model_info={})
  assert not any(tmp_path.iterdir())


def test_invalid_metadata_and_model_info(tmp_path):
  with pytest.raises(ValueError, match=r"metadata\['title'\] has 2 entries, expected 300"):
    _export(tmp_path / "b", metadata={"title": ["a", "b"]})
  with pytest.raises(ValueError, match="model_info is not JSON-serializable"):
    _export(tmp_path / "b", model_info={"step": object()})
  assert not any(tmp_path.iterdir())


def test_object_id_arrays_and_wide_floats_are_accepted(tmp_path):
  emb, ids, pop = _catalog()
  export.export_bundle(tmp_path / "b", emb.astype(np.float64), ids.astype(object),
                       pop.astype(np.int32), model_info={})
  bundle = load_bundle(tmp_path / "b")
  assert bundle.embeddings.dtype == np.float32 and bundle.item_ids[0] == "sku-00000"
