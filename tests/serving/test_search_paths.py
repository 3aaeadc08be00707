"""`Bundle.search`'s vectorised and fast paths against per-query brute force in plain Python.

Every combination of exclusions, restrictions (shared, small, per query) and
tail knobs, through exact search and through ScaNN (brute-force mode, so the
answer must equal numpy's), batched and one query at a time.
"""

import itertools
import math

import numpy as np
import pytest

from mmrec.retrieval import export
from mmrec.serving import load_bundle, tail
from mmrec.serving import search as search_lib

N, D = 1500, 16


@pytest.fixture(scope="module")
def catalog():
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(N, D)).astype(np.float32)
  pop = (rng.pareto(1.2, N) * 4).astype(np.int64)
  ids = np.array([f"item{i}" for i in range(N)])
  queries = rng.normal(size=(70, D)).astype(np.float32)  # 70 >= 64: ScaNN's thread pool too
  return emb, pop, ids, queries


def _export(tmp_path_factory, catalog, mode):
  emb, pop, ids, _ = catalog
  path = export.export_bundle(tmp_path_factory.mktemp(mode) / "b", emb, ids, pop,
                              model_info={"name": "test"}, scann_mode=mode)
  return load_bundle(path)


@pytest.fixture(scope="module")
def brute(tmp_path_factory, catalog):
  return _export(tmp_path_factory, catalog, "brute_force")


@pytest.fixture(scope="module")
def tree(tmp_path_factory, catalog):
  return _export(tmp_path_factory, catalog, "tree_ah")


def _reference(emb, pop, is_head, query, k, excluded, allowed, beta, lam, candidates=None):
  """One query in plain Python: filter, best `f` by (-score, row), calibrate, greedy balance."""
  scores = (emb.astype(np.float64) @ query.astype(np.float64)).tolist()
  rows = [r for r in range(len(emb)) if r not in excluded and (allowed is None or r in allowed)]
  f = min(len(emb), candidates or tail.default_candidates(k, beta, lam))
  cand = sorted(rows, key=lambda r: (-scores[r], r))[:f]
  cal = {r: scores[r] - beta * math.log(pop[r] + 1) for r in cand}
  if lam == 0:
    return sorted(cand, key=lambda r: (-cal[r], cand.index(r)))[:k]
  lo, hi = min(cal.values(), default=0), max(cal.values(), default=0)
  rel = {r: (cal[r] - lo) / (hi - lo) if hi > lo else 1.0 for r in cand}
  chosen, left = [], list(cand)
  while left and len(chosen) < k:
    def gain(r):
      same = sum(is_head[c] == is_head[r] for c in chosen)
      return (1 - lam) * rel[r] + lam * 0.5 * (1.0 if not chosen else 1 - same / len(chosen))
    best = max(left, key=lambda r: (gain(r), -left.index(r)))
    chosen.append(best)
    left.remove(best)
  return chosen


def _cases(ids, num_queries, rng):
  excludes = {
      "none": None,
      "empty lists": [[] for _ in range(num_queries)],
      "per query": [list(rng.choice(ids, int(rng.integers(0, 40)), replace=False)) + ["unknown"]
                    for _ in range(num_queries)],
  }
  restricts = {
      "none": None,
      "shared large": list(rng.choice(ids, N // 2, replace=False)),
      "shared small": list(rng.choice(ids, 60, replace=False)),
      "per query": [list(rng.choice(ids, int(rng.integers(5, 900)), replace=False))
                    for _ in range(num_queries)],
  }
  return itertools.product(excludes.items(), restricts.items())


def _check(bundle, catalog, queries, k, exclude, restrict, beta, lam, exact, candidates=None):
  emb, pop, ids, _ = catalog
  got_ids, got_scores = bundle.search(queries, k, exclude=exclude, restrict=restrict, beta=beta,
                                      tail_balance=lam, exact=exact, candidates=candidates)
  row_of = {i: r for r, i in enumerate(ids)}
  for r, query in enumerate(queries):
    excluded = {row_of[i] for i in (exclude[r] if exclude else ()) if i in row_of}
    allowed = None
    if restrict is not None:
      names = restrict if restrict and isinstance(restrict[0], str) else restrict[r]
      allowed = {row_of[i] for i in names if i in row_of}
    want = _reference(emb, pop, bundle.is_head, query, k, excluded, allowed, beta, lam,
                      candidates)
    assert got_ids[r, :len(want)].tolist() == ids[want].tolist(), r
    assert (got_ids[r, len(want):] == "").all() and (got_scores[r, len(want):] == -np.inf).all()
    np.testing.assert_allclose(got_scores[r, :len(want)],
                               emb[want] @ query - beta * np.log1p(pop[want]), rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "scann"])
@pytest.mark.parametrize("beta, lam", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.3, 0.7)])
def test_every_path_matches_brute_force(brute, catalog, exact, beta, lam):
  rng = np.random.default_rng(1)
  queries = catalog[3][:12]
  for (_, exclude), (_, restrict) in _cases(catalog[2], len(queries), rng):
    _check(brute, catalog, queries, 10, exclude, restrict, beta, lam, exact)


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "scann"])
def test_large_batches_and_wide_candidates_match_brute_force(brute, catalog, exact):
  rng = np.random.default_rng(2)
  queries = catalog[3]  # on ScaNN's threads
  for (_, exclude), (_, restrict) in _cases(catalog[2], len(queries), rng):
    _check(brute, catalog, queries, 7, exclude, restrict, 0.0, 0.0, exact, candidates=50)
  _check(brute, catalog, queries[:3], N, None, None, 0.0, 0.0, exact)  # every item


def test_plain_search_is_scanns_own_answer(tree, catalog):
  """Batched (ScaNN's threads or not) and single queries: ScaNN's rows and scores, ids mapped.

  (ScaNN's single and batched kernels may round differently, so each is
  compared with its own raw call.)"""
  queries, ids = catalog[3], catalog[2]
  reorder, leaves = tree.search_knobs
  for k in (10, 25):
    pre = max(k, reorder)
    for batch in (queries, queries[:5]):
      raw, dist = tree.searcher.search_batched(batch, k, pre_reorder_num_neighbors=pre,
                                               leaves_to_search=leaves)
      got, scores = tree.search(batch, k)
      assert got.tolist() == ids[np.asarray(raw)].tolist()
      np.testing.assert_array_equal(scores, dist)
    for query in queries[::7]:
      raw, dist = tree.searcher.search(query, k, pre, leaves)
      got, scores = tree.search(query[None], k)
      assert got[0].tolist() == ids[np.asarray(raw)].tolist()
      np.testing.assert_array_equal(scores[0], dist)


def test_short_scann_answers_fall_back_to_exact(tree, catalog):
  """k beyond what the searched leaves hold: ScaNN pads with NaN, those rows go exact."""
  queries = catalog[3][:5]
  one_leaf = load_bundle(tree.path)
  one_leaf.manifest["scann"]["num_leaves_to_search"] = 1  # before its first search
  k = N - 1  # more than one leaf holds (3x the mean leaf was not always enough)
  _, dist = search_lib.scann(one_leaf.searcher.searcher, one_leaf.search_knobs, queries, k)
  assert np.isnan(dist).any(axis=1).all()  # ScaNN comes up short on every query
  got, got_scores = one_leaf.search(queries, k)
  _check(one_leaf, catalog, queries, k, None, None, 0.0, 0.0, exact=True)
  want, want_scores = one_leaf.search(queries, k, exact=True)
  assert got.tolist() == want.tolist()
  np.testing.assert_array_equal(got_scores, want_scores)


@pytest.mark.parametrize("rows", [1, 2, 70])
def test_non_finite_queries_are_refused_on_every_path(tree, catalog, rows):
  queries = catalog[3][:rows].copy()
  queries[-1, 3] = np.nan if rows != 2 else np.inf
  for options in [{}, {"exact": True}, {"exclude": [["item1"]] * rows}, {"beta": 0.5}]:
    with pytest.raises(ValueError, match="queries contain NaN or inf"):
      tree.search(queries, 5, **options)


def test_plain_search_skips_reranking(brute, catalog, monkeypatch):
  calls = []
  real = tail.rerank
  monkeypatch.setattr(tail, "rerank", lambda *a, **kw: calls.append(1) or real(*a, **kw))
  queries = catalog[3][:4]
  for one in (queries[:1], queries):
    _check(brute, catalog, one, 10, None, None, 0.0, 0.0, exact=False)
    _check(brute, catalog, one, 10, [[]] * len(one), None, 0.0, 0.0, exact=False)
  assert not calls
  _check(brute, catalog, queries, 10, None, None, 0.2, 0.0, exact=False)
  assert calls
