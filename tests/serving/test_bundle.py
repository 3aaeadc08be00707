"""Bundle loading, validation and queries against a numpy brute-force reference."""

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mmrec.retrieval import export
from mmrec.serving import BundleError, UnknownItemError, head_tail_split, load_bundle

N, D = 500, 16


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(N, D)).astype(np.float32)
  ids = np.array([f"item-{i}" for i in range(N)])
  meta = {"title": [f"Title {i}" for i in range(N)],
          "category": [("dress", "shoe", "bag")[i % 3] for i in range(N)]}
  popularity = (rng.pareto(1.0, N) * 5).astype(np.int64)
  return export.export_bundle(
      tmp_path_factory.mktemp("bundles") / "b", emb, ids, popularity,
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


def test_large_batches_use_scann_threads_and_agree(bundle):
  queries = np.random.default_rng(8).normal(size=(150, D)).astype(np.float32)
  ids, scores = bundle.search(queries, 10)  # >= 64 queries: search_batched_parallel
  exact_ids, exact_scores = bundle.search(queries, 10, exact=True)
  np.testing.assert_array_equal(ids, exact_ids)
  np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-5)


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


def _reference(bundle, query, k, exclude=(), restrict=None, beta=0.0, lam=0.0):
  """Plain Python: score all, drop excluded / not allowed, best F, calibrate, smooth xQuAD."""
  scores = (bundle.embeddings @ query).tolist()
  allowed = [i for i in range(N) if bundle.item_ids[i] not in set(exclude)
             and (restrict is None or bundle.item_ids[i] in set(restrict))]
  f = k if beta == 0 and lam == 0 else max(10 * k, 100)
  pool = sorted(allowed, key=lambda i: (-scores[i], i))[:f]
  pop = bundle.popularity
  head = {i for i in range(N) if bundle.is_head[i]}
  cal = {i: scores[i] - beta * math.log(pop[i] + 1) for i in pool}
  if lam == 0:
    return [bundle.item_ids[i] for i in sorted(pool, key=lambda i: (-cal[i], pool.index(i)))[:k]]
  lo, hi = min(cal.values()), max(cal.values())
  chosen = []
  while pool and len(chosen) < k:
    def gain(i):
      same = sum((j in head) == (i in head) for j in chosen)
      cover = 1.0 if not chosen else 1 - same / len(chosen)
      return (1 - lam) * (cal[i] - lo) / (hi - lo) + lam * 0.5 * cover
    best = max(pool, key=lambda i: (gain(i), -pool.index(i)))
    chosen.append(best)
    pool.remove(best)
  return [bundle.item_ids[i] for i in chosen]


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("beta, lam", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.5, 0.8)])
def test_options_match_reference(bundle, exact, beta, lam):
  rng = np.random.default_rng(5)
  queries = rng.normal(size=(4, D)).astype(np.float32)
  top, _ = bundle.search(queries, 5, exact=True)
  exclude = [list(top[0, :3]), [], ["no-such-item"], list(bundle.item_ids[:300])]
  for restrict in (None, list(bundle.ids_where(category="shoe")), list(bundle.item_ids[:450])):
    ids, scores = bundle.search(queries, 15, exclude=exclude, restrict=restrict, beta=beta,
                                tail_balance=lam, exact=exact)
    for r, q in enumerate(queries):
      want = _reference(bundle, q, 15, exclude[r], restrict, beta, lam)
      assert ids[r].tolist() == want, (r, restrict is None)
      rows = bundle.index_of(want)
      np.testing.assert_allclose(
          scores[r], bundle.embeddings[rows] @ q - beta * np.log1p(bundle.popularity[rows]),
          rtol=1e-4, atol=1e-4)


def test_restrict_per_query_and_ids_where(bundle):
  shoes = bundle.ids_where(category="shoe")
  assert len(shoes) == len(range(1, N, 3)) and all(bundle.metadata["category"][bundle.index_of(i)]
                                                   == "shoe" for i in shoes)
  assert len(bundle.ids_where(category=["shoe", "bag"])) == len(shoes) + N // 3
  queries = bundle.embeddings[:2]
  ids, _ = bundle.search(queries, 4, restrict=[list(shoes), ["item-0", "item-3"]])
  assert set(ids[0]) <= set(shoes)
  assert sorted(ids[1][:2]) == ["item-0", "item-3"] and list(ids[1][2:]) == ["", ""]
  with pytest.raises(ValueError, match="no field 'colour'"):
    bundle.ids_where(colour="red")
  with pytest.raises(ValueError, match="restrict must hold one list of ids per query"):
    bundle.search(queries, 4, restrict=[["item-1"]])


def test_similar_and_history_take_options(bundle):
  ids, _ = bundle.similar("item-4", 5, restrict=list(bundle.ids_where(category="bag")),
                          exclude=["item-7"])
  assert all(bundle.metadata["category"][bundle.index_of(i)] == "bag" for i in ids)
  assert "item-4" not in ids and "item-7" not in ids
  query = bundle.embeddings[[1, 2]].mean(axis=0)
  query /= np.linalg.norm(query)
  ids, _ = bundle.search_by_history(["item-1", "item-2"], 6, beta=0.4, tail_balance=0.5)
  assert ids.tolist() == _reference(bundle, query, 6, ["item-1", "item-2"], None, 0.4, 0.5)


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
  assert bundle.version == 1 and bundle.manifest["format_version"] == 3
  np.testing.assert_array_equal(bundle.is_head, head_tail_split(bundle.popularity))
  assert bundle.manifest["popularity"]["num_head_items"] == bundle.is_head.sum()


def test_bad_queries_are_refused(bundle):
  with pytest.raises(ValueError, match=r"queries must be \[Q, 16\]"):
    bundle.search(np.zeros((2, 3), np.float32), 5)
  with pytest.raises(ValueError, match="beta=-0.5"):
    bundle.search(np.zeros((1, D), np.float32), 5, beta=-0.5)
  with pytest.raises(ValueError, match="tail_balance=2"):
    bundle.similar("item-1", 5, tail_balance=2)
  with pytest.raises(ValueError, match="k=501"):
    bundle.search(np.zeros((1, D), np.float32), 501)
  with pytest.raises(ValueError, match="NaN"):
    bundle.search(np.full((1, D), np.nan, np.float32), 5)
  with pytest.raises(ValueError, match="one list of ids per query"):
    bundle.search(np.zeros((1, D), np.float32), 5, exclude=["item-1"])


def test_memory_mapped_bundle_answers_identically(bundle_dir, bundle):
  """The vectors are ScaNN's dataset.npy, mapped by default; read into memory, same answers."""
  in_memory = load_bundle(bundle_dir, mmap=False)
  assert isinstance(bundle.embeddings, np.memmap) and not isinstance(in_memory.embeddings,
                                                                     np.memmap)
  np.testing.assert_array_equal(bundle.embeddings, in_memory.embeddings)
  queries = np.random.default_rng(11).normal(size=(70, D)).astype(np.float32)
  shoes = list(bundle.ids_where(category="shoe"))
  for options in ({}, {"exact": True}, {"beta": 0.4, "tail_balance": 0.5},
                  {"restrict": shoes, "exclude": [["item-1"]] * 70}):
    for got, want in zip(bundle.search(queries, 12, **options),
                         in_memory.search(queries, 12, **options)):
      np.testing.assert_array_equal(got, want)
  for got, want in zip(bundle.similar("item-8", 9), in_memory.similar("item-8", 9)):
    np.testing.assert_array_equal(got, want)
  for got, want in zip(bundle.search_by_history(["item-2", "item-9"], 7),
                       in_memory.search_by_history(["item-2", "item-9"], 7)):
    np.testing.assert_array_equal(got, want)


def test_id_lookup_by_binary_search(bundle):
  """`rows` (no dict) agrees with a plain dict, unknown, longer and non-str ids give -1."""
  reference = {item_id: i for i, item_id in enumerate(bundle.item_ids.tolist())}
  asked = ["item-7", "item-499", "item-0", "item-4999", "item-", "", "nope", 5, "item-70"]
  want = [reference.get(i, -1) if isinstance(i, str) else -1 for i in asked]
  assert bundle.rows(asked).tolist() == want
  assert bundle.rows([]).tolist() == []


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
    ids, scores = bundle.search(bundle.embeddings[:2], 3, beta=0.5, tail_balance=0.5,
                                restrict=list(bundle.ids_where(category="dress")))
    similar, _ = bundle.similar("item-0", 3)
    import mmrec.serving.tail
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print(ids[0][0], len(similar))
""")


def test_serving_needs_no_jax(bundle_dir):
  done = subprocess.run([sys.executable, "-c", _JAX_FREE_CONSUMER, str(bundle_dir)],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert done.stdout.split()[1] == "3" and done.stdout.split()[0].startswith("item-")


def test_default_beta_from_the_manifest(bundle_dir, tmp_path):
  """A bundle exported with model.default_beta uses it when no beta is given, 0 overrides it."""
  rng = np.random.default_rng(6)
  queries = rng.normal(size=(3, D)).astype(np.float32)
  plain = load_bundle(bundle_dir)
  assert plain.default_beta == 0.0
  src = load_bundle(bundle_dir)
  tuned = load_bundle(export.export_bundle(
      tmp_path / "b", src.embeddings, src.item_ids, src.popularity,
      model_info={"name": "test", "default_beta": 0.3}))
  assert tuned.default_beta == 0.3
  for exact in (False, True):
    default, _ = tuned.search(queries, 10, exact=exact)
    explicit, _ = plain.search(queries, 10, beta=0.3, exact=exact)
    np.testing.assert_array_equal(default, explicit)
    off, _ = tuned.search(queries, 10, beta=0.0, exact=exact)
    np.testing.assert_array_equal(off, plain.search(queries, 10, exact=exact)[0])
  for r, q in enumerate(queries):
    assert default[r].tolist() == _reference(tuned, q, 10, beta=0.3)
