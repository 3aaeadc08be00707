"""Bundle loading, validation and queries against a numpy brute-force reference."""

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mmrec.retrieval import export
from mmrec.serving import BundleError, UnknownItemError, load_bundle

N, D = 500, 16


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(N, D)).astype(np.float32)
  ids = np.array([f"item-{i}" for i in range(N)])
  meta = {"title": [f"Title {i}" for i in range(N)]}
  return export.export_bundle(
      tmp_path_factory.mktemp("bundles") / "b", emb, ids, rng.integers(0, 9, N),
      model_info={"name": "test"}, metadata=meta)


@pytest.fixture(scope="module")
def bundle(bundle_dir):
  return load_bundle(bundle_dir)


def _brute_force(emb, query, k, exclude_rows=()):
  scores = emb @ query
  order = [i for i in np.argsort(-scores, kind="stable") if i not in set(exclude_rows)]
  return np.array(order[:k]), scores[order[:k]]


@pytest.mark.parametrize("exact", [False, True])
def test_search_matches_brute_force(bundle, exact):
  queries = np.random.default_rng(1).normal(size=(7, D)).astype(np.float32)
  ids, scores = bundle.search(queries, 20, exact=exact)
  assert ids.shape == scores.shape == (7, 20) and scores.dtype == np.float32
  for q, got_ids, got_scores in zip(queries, ids, scores):
    rows, want = _brute_force(bundle.embeddings, q, 20)
    np.testing.assert_array_equal(got_ids, bundle.item_ids[rows])
    np.testing.assert_allclose(got_scores, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("exact", [False, True])
def test_search_excludes_ids(bundle, exact):
  queries = np.random.default_rng(2).normal(size=(3, D)).astype(np.float32)
  top, _ = bundle.search(queries, 5, exact=True)
  # Row 0 drops its own top 4 (forces over-fetch), row 1 nothing, row 2 an unknown id.
  exclude = [list(top[0, :4]), [], ["no-such-item", top[2, 0]]]
  ids, _ = bundle.search(queries, 5, exclude=exclude, exact=exact)
  for q, got, ex in zip(queries, ids, exclude):
    rows, _ = _brute_force(bundle.embeddings, q, 5, [bundle._row[i] for i in ex if i in bundle._row])
    np.testing.assert_array_equal(got, bundle.item_ids[rows])


@pytest.mark.parametrize("exact", [False, True])
def test_too_few_items_left_pads_rows(bundle, exact):
  keep = ["item-3", "item-7"]
  exclude = [[i for i in bundle.item_ids if i not in keep]]
  ids, scores = bundle.search(bundle.embeddings[:1], 4, exclude=exclude, exact=exact)
  assert sorted(ids[0, :2]) == keep and list(ids[0, 2:]) == ["", ""]
  assert np.isfinite(scores[0, :2]).all() and (scores[0, 2:] == -np.inf).all()


def test_similar_excludes_itself(bundle):
  ids, scores = bundle.similar("item-42", 10)
  assert "item-42" not in ids and ids.shape == scores.shape == (10,)
  rows, want = _brute_force(bundle.embeddings, bundle.embeddings[42], 10, [42])
  np.testing.assert_array_equal(ids, bundle.item_ids[rows])
  np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5)


def test_search_by_history_pools_normalised_mean(bundle):
  history = ["item-1", "item-2", "item-30"]
  query = bundle.embeddings[[1, 2, 30]].mean(axis=0)
  query /= np.linalg.norm(query)
  ids, scores = bundle.search_by_history(history, 8)
  rows, want = _brute_force(bundle.embeddings, query, 8, [1, 2, 30])
  np.testing.assert_array_equal(ids, bundle.item_ids[rows])
  np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5)
  ids, _ = bundle.search_by_history(history, 8, exclude_history=False)
  np.testing.assert_array_equal(ids, bundle.item_ids[_brute_force(bundle.embeddings, query, 8)[0]])
  with pytest.raises(ValueError, match="non-empty"):
    bundle.search_by_history([], 3)


def test_index_of_and_unknown_ids(bundle):
  assert bundle.index_of("item-9") == 9
  np.testing.assert_array_equal(bundle.index_of(["item-3", "item-0"]), [3, 0])
  with pytest.raises(UnknownItemError, match="unknown item id 'nope'") as info:
    bundle.similar("nope", 3)
  assert isinstance(info.value, KeyError) and info.value.item_id == "nope"
  with pytest.raises(KeyError, match="'gone'"):
    bundle.search_by_history(["item-1", "gone"], 3)


def test_attributes_and_metadata(bundle):
  assert (bundle.num_items, bundle.dimension) == (N, D)
  assert bundle.popularity.dtype == np.int64 and bundle.popularity.shape == (N,)
  assert bundle.metadata["title"][5] == "Title 5"
  assert bundle.manifest["model"] == {"name": "test"}


def test_bad_queries_are_refused(bundle):
  with pytest.raises(ValueError, match=r"queries must be \[Q, 16\]"):
    bundle.search(np.zeros((2, 3), np.float32), 5)
  with pytest.raises(ValueError, match="k=501"):
    bundle.search(np.zeros((1, D), np.float32), 501)
  with pytest.raises(ValueError, match="NaN"):
    bundle.search(np.full((1, D), np.nan, np.float32), 5)
  with pytest.raises(ValueError, match="one list of ids per query"):
    bundle.search(np.zeros((1, D), np.float32), 5, exclude=["item-1"])


def _rehash(path, name):
  manifest = json.loads((path / "manifest.json").read_text())
  manifest["files"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
  (path / "manifest.json").write_text(json.dumps(manifest))


def _edit_manifest(**changes):
  def edit(path):
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))
  return edit


def _flip_byte(path):
  data = bytearray((path / "embeddings.npy").read_bytes())
  data[-7] ^= 0x01
  (path / "embeddings.npy").write_bytes(bytes(data))


def _int32_popularity(path):
  pop = np.load(path / "popularity.npy")
  np.save(path / "popularity.npy", pop.astype(np.int32))
  _rehash(path, "popularity.npy")


def _planted_pickle(path):
  (path / "scann" / "scann_docids.pkl").write_bytes(b"\x80\x04N.")


@pytest.mark.parametrize("corrupt, message", [
    (lambda p: (p / "item_ids.npy").unlink(), r"item_ids.npy: missing \(listed"),
    (lambda p: (p / "scann" / "dataset.npy").unlink(), r"scann/dataset.npy: missing"),
    (lambda p: (p / "manifest.json").unlink(), r"manifest.json: missing"),
    (_flip_byte, r"embeddings.npy: SHA-256 does not match"),
    (_edit_manifest(dimension=8), r"embeddings.npy: shape \(500, 16\) disagrees .*dimension=8"),
    (_edit_manifest(format_version=2), r"format_version 2 is not supported"),
    (_edit_manifest(num_items="500"), r"field 'num_items' must be a int"),
    (_edit_manifest(distance="cosine"), r"distance 'cosine' is not supported"),
    (lambda p: (p / "manifest.json").write_text('{"format_version": 1,'), r"malformed JSON"),
    (_int32_popularity, r"popularity.npy: dtype int32, expected int64"),
    (_planted_pickle, r"scann_docids.pkl: not listed in manifest.json"),
])
def test_corrupt_bundles_are_refused(bundle_dir, tmp_path, corrupt, message):
  path = tmp_path / "copy"
  shutil.copytree(bundle_dir, path)
  load_bundle(path)  # the copy is fine before corruption
  corrupt(path)
  with pytest.raises(BundleError, match=message):
    load_bundle(path)


def test_missing_directory(tmp_path):
  with pytest.raises(BundleError, match="does not exist"):
    load_bundle(tmp_path / "nothing")


_JAX_FREE_CONSUMER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = {"jax", "jaxlib", "flax", "tensorflow", "ml_collections"}

    class Block(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
          raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
        return None

    sys.meta_path.insert(0, Block())
    import mmrec.serving
    bundle = mmrec.serving.load_bundle(sys.argv[1])
    ids, scores = bundle.search(bundle.embeddings[:2], 3)
    similar, _ = bundle.similar("item-0", 3)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print(ids[0][0], len(similar))
""")


def test_serving_needs_no_jax(bundle_dir):
  done = subprocess.run([sys.executable, "-c", _JAX_FREE_CONSUMER, str(bundle_dir)],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert done.stdout.split() == ["item-0", "3"]
