"""Adding and removing items in a bundle without retraining."""

import json

import numpy as np
import pytest

from mmrec.retrieval import export, update
from mmrec.serving import load_bundle

D = 16


def _unit(rng, n):
  x = rng.normal(size=(n, D)).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _export(path, n=400, mode="auto", **kwargs):
  rng = np.random.default_rng(0)
  ids = np.array([f"sku-{i}" for i in range(n)])
  meta = {"title": [f"t{i}" for i in range(n)], "category": ["a"] * n}
  return export.export_bundle(path, _unit(rng, n), ids, rng.integers(0, 40, n),
                              model_info={"name": "m", "checkpoint_step": 3}, metadata=meta,
                              scann_mode=mode, **kwargs)


@pytest.mark.parametrize("mode", ["brute_force", "ah"])
def test_added_items_are_retrievable_at_once(tmp_path, mode):
  path = _export(tmp_path / "b", n=2000, mode=mode)
  new = _unit(np.random.default_rng(9), 3)
  report = update.add_items(path, new, ["new-1", "new-2", "new-3"],
                            metadata={"title": ["x", "y", "z"]})
  assert report["version"] == 2 and report["added"] == 3 and report["index"] == "incremental"
  assert report["metadata_filled"] == 3  # no category given: filled with ""
  bundle = load_bundle(path)
  assert bundle.version == 2 and bundle.num_items == 2003
  assert bundle.manifest["recall"]["recall_at_10"] >= 0.95
  assert bundle.manifest["model"] == {"name": "m", "checkpoint_step": 3}
  assert bundle.manifest["history"][-1]["action"] == "add"
  ids, _ = bundle.search(new, 1)  # each new item is its own best match (unit vectors)
  assert ids[:, 0].tolist() == ["new-1", "new-2", "new-3"]
  assert bundle.popularity[-3:].tolist() == [0, 0, 0] and not bundle.is_head[-3:].any()
  assert bundle.metadata["title"][-1] == "z" and bundle.metadata["category"][-1] == ""
  similar, _ = bundle.similar("new-2", 5)
  exact, _ = bundle.search(new[1:2], 6, exact=True)
  assert "new-2" not in similar and len(set(similar) & set(exact[0, 1:])) >= 4


def test_removed_items_are_never_returned(tmp_path):
  path = _export(tmp_path / "b")
  before = load_bundle(path)
  gone = ["sku-0", "sku-399", "sku-17", "sku-398"]  # the last rows exercise ScaNN's swap
  report = update.remove_items(path, gone)
  assert report == {**report, "version": 2, "removed": 4, "index": "incremental", "missing": 0}
  bundle = load_bundle(path)
  assert bundle.num_items == 396 and not set(gone) & set(bundle.item_ids)
  queries = before.embeddings[[0, 17, 50, 399]]
  approx, a_scores = bundle.search(queries, 10)
  exact, e_scores = bundle.search(queries, 10, exact=True)
  np.testing.assert_array_equal(approx, exact)  # brute force: the mirrored rows line up
  np.testing.assert_allclose(a_scores, e_scores, rtol=1e-5, atol=1e-5)
  for item in bundle.item_ids[:50]:  # arrays and metadata stay aligned by row
    row = before.index_of(item)
    np.testing.assert_array_equal(bundle.embeddings[bundle.index_of(item)], before.embeddings[row])
    assert bundle.metadata["title"][bundle.index_of(item)] == before.metadata["title"][row]


def test_large_changes_rebuild_and_versions_count(tmp_path):
  path = _export(tmp_path / "b")
  update.remove_items(path, [f"sku-{i}" for i in range(10)])
  report = update.add_items(path, _unit(np.random.default_rng(1), 60),
                            [f"n{i}" for i in range(60)])
  assert report["index"] == "rebuild" and report["version"] == 3
  manifest = load_bundle(path).manifest
  assert manifest["scann"]["built_num_items"] == 450 and manifest["scann"]["changed_since_build"] == 0
  assert [h["version"] for h in manifest["history"]] == [1, 2, 3]


def test_bad_updates_are_refused_and_keep_the_bundle(tmp_path, monkeypatch):
  path = _export(tmp_path / "b")
  before = (path / "manifest.json").read_text()
  with pytest.raises(ValueError, match=r"1 ids are already in the bundle, e.g. \['sku-5'\]"):
    update.add_items(path, _unit(np.random.default_rng(1), 1), ["sku-5"])
  with pytest.raises(ValueError, match="dimension 8, the bundle .* has 16"):
    update.add_items(path, np.ones((1, 8), np.float32), ["x"])
  with pytest.raises(ValueError, match=r"metadata columns \['colour'\] are not in the bundle"):
    update.add_items(path, _unit(np.random.default_rng(1), 1), ["x"], metadata={"colour": ["r"]})
  with pytest.raises(ValueError, match="1 ids are not in the bundle"):
    update.remove_items(path, ["sku-1", "nope"])
  with pytest.raises(ValueError, match="at least one item"):
    update.remove_items(path, [f"sku-{i}" for i in range(400)])

  def broken(*args):
    raise RuntimeError("killed mid-build")

  monkeypatch.setattr(update.tuning, "build_searcher", broken)
  with pytest.raises(RuntimeError, match="killed"):
    update.add_items(path, _unit(np.random.default_rng(1), 100), [f"n{i}" for i in range(100)])
  assert (path / "manifest.json").read_text() == before
  assert sorted(p.name for p in tmp_path.iterdir()) == [".b.versions", "b"]
  assert [p.name for p in (tmp_path / ".b.versions").iterdir()] == [path.resolve().name]
  assert update.remove_items(path, ["sku-1", "nope"], ignore_missing=True)["missing"] == 1


def test_extra_files_are_carried_over(tmp_path):
  tower = (b"\x00serialized", {"inputs": ["history"], "items_file": "user_tower_items.npy"},
           {"user_tower_items.npy": b"\x01items"})
  path = _export(tmp_path / "b", user_tower=tower)
  update.add_items(path, _unit(np.random.default_rng(1), 1), ["x"])
  bundle = load_bundle(path)
  assert bundle.manifest["user_tower"] == {"file": "user_tower.jax_export", "format": "jax.export",
                                           "inputs": ["history"],
                                           "items_file": "user_tower_items.npy"}
  assert (path / "user_tower.jax_export").read_bytes() == b"\x00serialized"
  assert (path / "user_tower_items.npy").read_bytes() == b"\x01items"
  files = json.loads((path / "manifest.json").read_text())["files"]
  assert {"user_tower.jax_export", "user_tower_items.npy"} <= set(files)
