"""ScaNN tuning: recall against exact search, cheapest setting that meets the target."""

import numpy as np
import pytest

from mmrec.retrieval import tuning


@pytest.fixture(scope="module")
def clustered():
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(100, 24))
  x = centers[rng.integers(0, 100, 8000)] + 0.6 * rng.normal(size=(8000, 24))
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_top_and_recall_against_argsort(clustered):
  queries = tuning.held_out_queries(clustered, 20, seed=3)
  want = np.argsort(-(queries @ clustered.T), axis=1, kind="stable")[:, :10]
  np.testing.assert_array_equal(tuning.exact_top(clustered, queries), want)
  assert tuning.recall(want, want) == 1.0
  assert tuning.recall(want[:, ::-1], want) == 1.0  # order inside the top-k does not matter
  half = np.concatenate([want[:, :5], np.full((20, 5), -1)], axis=1)
  assert tuning.recall(half, want) == 0.5


def test_held_out_queries_are_seeded_and_new(clustered):
  a = tuning.held_out_queries(clustered, 50, seed=1)
  np.testing.assert_array_equal(a, tuning.held_out_queries(clustered, 50, seed=1))
  assert a.shape == (50, 24) and a.dtype == np.float32
  assert not (a[:, None, :] == clustered[None]).all(axis=2).any()


def test_tree_tuning_is_the_cheapest_setting_that_meets_the_target(clustered):
  params = tuning.scann_params(len(clustered), 24, "tree_ah")
  searcher = tuning.build_searcher(clustered, params)
  queries = tuning.held_out_queries(clustered, 200, seed=0)
  tuned, measured = tuning.tune(searcher, params, clustered, queries, target=0.95)
  assert measured >= 0.95
  assert measured == tuning.measure(searcher, tuned, clustered, queries)
  cost = tuning.estimated_cost(tuned, len(clustered), 24)
  truth = tuning.exact_top(clustered, queries)
  leaves_grid = sorted({max(1, int(np.ceil(f * tuned["num_leaves"])))
                        for f in tuning._LEAF_FRACTIONS})
  for reorder in tuning._REORDERS:  # no cheaper grid point reaches the target
    for leaves in leaves_grid:
      trial = {**tuned, "reorder": reorder, "num_leaves_to_search": leaves}
      if tuning.estimated_cost(trial, len(clustered), 24) < cost:
        got = tuning.recall(tuning.search_rows(searcher, queries, trial), truth)
        assert got < 0.95, trial


def test_configure_reports_recall(clustered):
  _, params, report = tuning.configure(clustered[:500], "auto")
  assert params["mode"] == "brute_force" and report["recall_at_10"] == 1.0
  queries = tuning.held_out_queries(clustered[:2000], 100, seed=4)
  searcher, params, report = tuning.configure(clustered[:2000], "ah", queries, target=0.99)
  measured = tuning.measure(searcher, params, clustered[:2000], queries)
  assert report["recall_at_10"] == round(measured, 4) and report["num_queries"] == 100
  assert report["target_met"] == (measured >= 0.99) and report["queries"] == "given"
  with pytest.raises(ValueError, match="target=1.5"):
    tuning.configure(clustered[:500], target=1.5)
