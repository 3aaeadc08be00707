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


def test_grids_hold_the_cheap_points():
  leaves = tuning.geometric_grid(1, 316)
  assert leaves[:10] == list(range(1, 11)) and leaves[-1] == 316
  assert set(range(10, 17)) <= set(leaves)  # every count from 10 to 16 of 316 leaves
  assert all(b - a == 1 or b / a <= 1.1 + 0.5 / a for a, b in zip(leaves, leaves[1:]))
  assert 100 in tuning.REORDERS and min(tuning.REORDERS) == 20


def test_split_queries_is_seeded_and_disjoint(clustered):
  queries = tuning.held_out_queries(clustered, 101, seed=2)
  a, b = tuning.split_queries(queries, seed=5)
  assert len(a) + len(b) == 101 and abs(len(a) - len(b)) <= 1
  rows = {tuple(q) for q in a}
  assert not rows & {tuple(q) for q in b} and rows | {tuple(q) for q in b} == {
      tuple(q) for q in queries}
  np.testing.assert_array_equal(a, tuning.split_queries(queries, seed=5)[0])
  with pytest.raises(ValueError, match="at least 2 queries"):
    tuning.split_queries(queries[:1])


def _reference_choice(searcher, params, emb, tune_q, check_q, target, cost):
  """The selection rule by exhaustive scan: per reorder, the fewest leaves reaching the
  target on the tuning half; only points with fewer leaves than every smaller reorder's;
  those that hold on the held-out half, or else the first of their next 3 reorders (same
  leaves) and the first of their next 3 leaf counts (same reorder) that hold; the cheapest."""
  tune_truth, check_truth = tuning.exact_top(emb, tune_q), tuning.exact_top(emb, check_q)
  grid = tuning.geometric_grid(1, params["num_leaves"])
  reorders = list(tuning.REORDERS)
  holds = lambda r, l: tuning.recall(tuning.search_rows(
      searcher, check_q, {**params, "reorder": r, "num_leaves_to_search": l}), check_truth) >= target
  best_leaves, candidates = np.inf, []
  for reorder in reorders:
    for leaves in grid:
      trial = {**params, "reorder": reorder, "num_leaves_to_search": leaves}
      if tuning.recall(tuning.search_rows(searcher, tune_q, trial), tune_truth) >= target:
        if leaves < best_leaves:
          best_leaves = leaves
          if holds(reorder, leaves):
            candidates.append((reorder, leaves))
          else:
            i, j = reorders.index(reorder), grid.index(leaves)
            candidates += [next(((r, leaves) for r in reorders[i + 1:i + 4] if holds(r, leaves)),
                                None),
                           next(((reorder, l) for l in grid[j + 1:j + 4] if holds(reorder, l)),
                                None)]
        break
  best = min((c for c in candidates if c), key=lambda c: cost(
      {**params, "reorder": c[0], "num_leaves_to_search": c[1]}))
  return {**params, "reorder": best[0], "num_leaves_to_search": best[1]}


def test_tree_tuning_matches_exhaustive_scan_and_holds_on_held_out(clustered):
  params = tuning.scann_params(len(clustered), 24, "tree_ah")
  searcher = tuning.build_searcher(clustered, params)
  queries = tuning.held_out_queries(clustered, 200, seed=0)
  estimate = lambda trial: tuning.estimated_cost(trial, len(clustered), 24)
  report = tuning.tune_report(searcher, params, clustered, queries, target=0.95,
                              cost=lambda trials: [estimate(t) for t in trials])
  tune_q, check_q = tuning.split_queries(queries)
  assert report["held_out_recall"] >= 0.95
  assert report["held_out_recall"] == tuning.measure(searcher, report["params"], clustered,
                                                     check_q)
  assert report["tuning_recall"] == tuning.measure(searcher, report["params"], clustered, tune_q)
  assert (report["num_tuning"], report["num_held_out"]) == (100, 100)
  want = _reference_choice(searcher, params, clustered, tune_q, check_q, 0.95, estimate)
  assert report["params"] == want
  # the default cost is measured time; whatever it picks holds on held-out queries too
  tuned, held_out = tuning.tune(searcher, params, clustered, queries, target=0.95)
  assert held_out >= 0.95 and held_out == tuning.measure(searcher, tuned, clustered, check_q)


def test_unreachable_target_keeps_the_most_accurate_setting(clustered):
  params = tuning.scann_params(2000, 24, "ah")
  searcher = tuning.build_searcher(clustered[:2000], params)
  queries = tuning.held_out_queries(clustered[:2000], 60, seed=1)
  tuned, held_out = tuning.tune(searcher, params, clustered[:2000], queries, target=1.0)
  _, check_q = tuning.split_queries(queries)
  assert held_out == tuning.measure(searcher, tuned, clustered[:2000], check_q)
  tune_q, _ = tuning.split_queries(queries)
  best = tuning.measure(searcher, tuned, clustered[:2000], tune_q)
  for reorder in tuning.REORDERS:  # no re-order size does better on the tuning half
    trial = {**params, "reorder": min(2000, reorder)}
    assert tuning.measure(searcher, trial, clustered[:2000], tune_q) <= best


def test_configure_reports_held_out_recall_and_honesty(clustered):
  _, params, report = tuning.configure(clustered[:500], "auto")
  assert params["mode"] == "brute_force" and report["recall_at_10"] == 1.0
  # made-up queries: an estimate, never a claim that the target is met
  assert report["target_met"] is None and report["estimate"] is True
  assert report["queries"] == "perturbed_items"
  queries = tuning.held_out_queries(clustered[:2000], 100, seed=4)
  searcher, params, report = tuning.configure(clustered[:2000], "ah", queries, target=0.99)
  _, check_q = tuning.split_queries(queries)
  measured = tuning.measure(searcher, params, clustered[:2000], check_q)
  assert report["recall_at_10"] == round(measured, 4) and report["num_queries"] == 100
  assert report["num_held_out"] == 50 and report["estimate"] is False
  assert report["target_met"] == (measured >= 0.99) and report["queries"] == "given"
  _, _, report = tuning.configure(clustered[:2000], "ah", queries, query_source="user_tower:test")
  assert report["queries"] == "user_tower:test" and isinstance(report["target_met"], bool)
  with pytest.raises(ValueError, match="target=1.5"):
    tuning.configure(clustered[:500], target=1.5)


@pytest.mark.parametrize("n, k", [(5, 10), (300, 10), (1290, 10), (4000, 7), (2600, 40)])
def test_exact_top_blocks_against_full_sort_with_ties(n, k):
  rng = np.random.default_rng(n)
  emb = rng.integers(-2, 3, (n, 6)).astype(np.float32)  # small integers: many tied scores
  queries = rng.integers(-2, 3, (30, 6)).astype(np.float32)
  scores = queries @ emb.T
  got = tuning.exact_top(emb, queries, k)
  for row, found in zip(scores, got):
    want = np.sort(row)[::-1][:k]  # the k best scores; which of tied items is free
    np.testing.assert_array_equal(row[found], want)
    assert len(set(found.tolist())) == len(found)
    assert all(a < b for a, b, x, y in zip(found, found[1:], row[found], row[found[1:]]) if x == y)
