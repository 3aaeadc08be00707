"""Tail-aware re-ranking against straightforward per-list references."""

import math

import numpy as np
import pytest

from mmrec.serving import tail


def _reference_head(popularity, share):
  """Head by definition: the first round(share * #items with interactions) items by count."""
  warm = [i for i in range(len(popularity)) if popularity[i] > 0]
  ranked = sorted(warm, key=lambda i: (-popularity[i], i))
  head = set(ranked[:int(share * len(warm) + 0.5)])
  return [i in head for i in range(len(popularity))]


@pytest.mark.parametrize("seed", range(5))
def test_head_tail_split_matches_definition(seed):
  rng = np.random.default_rng(seed)
  pop = (rng.pareto(1.2, 200) * 3).astype(np.int64)
  for share in (0.2, 0.5, 1.0):
    assert tail.head_tail_split(pop, share).tolist() == _reference_head(pop.tolist(), share)


def test_head_tail_split_edges():
  assert not tail.head_tail_split(np.zeros(5, np.int64)).any()
  np.testing.assert_array_equal(tail.head_tail_split(np.array([0, 10, 0, 1, 2, 3, 4])),
                                [False, True, False, False, False, False, False])
  cut = tail.head_cut(np.array([0, 10, 3, 1, 2, 7]))
  assert cut == {"head_share": 0.2, "num_head_items": 1, "head_min_popularity": 10,
                 "total_interactions": 23}
  with pytest.raises(ValueError, match="negative"):
    tail.head_tail_split(np.array([1, -1]))
  with pytest.raises(ValueError, match="integer"):
    tail.head_tail_split(np.array([1.0, 2.0]))


def _reference_rerank(scores, popularity, is_head, k, beta, lam):
  """One list, plain Python: calibrate, then smooth xQuAD greedy selection."""
  cal = [s - beta * math.log(p + 1) if s != -math.inf else -math.inf
         for s, p in zip(scores, popularity)]
  valid = [i for i, s in enumerate(cal) if s != -math.inf]
  if lam == 0:
    return sorted(valid, key=lambda i: (-cal[i], i))[:k]
  lo, hi = min(cal[i] for i in valid), max(cal[i] for i in valid)
  rel = {i: (cal[i] - lo) / (hi - lo) if hi > lo else 1.0 for i in valid}
  chosen = []
  while valid and len(chosen) < k:
    def gain(i):
      same = sum(is_head[j] == is_head[i] for j in chosen)
      cover = 1.0 if not chosen else 1 - same / len(chosen)
      return (1 - lam) * rel[i] + lam * 0.5 * cover
    best = max(valid, key=lambda i: (gain(i), -i))
    chosen.append(best)
    valid.remove(best)
  return chosen


@pytest.mark.parametrize("beta, lam", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.3), (0.2, 0.7), (1.0, 1.0)])
def test_rerank_matches_reference(beta, lam):
  rng = np.random.default_rng(7)
  q, f, k = 6, 40, 12
  scores = np.sort(rng.normal(size=(q, f)).astype(np.float32), axis=1)[:, ::-1].copy()
  scores[2, 30:] = -np.inf  # a short candidate list
  scores[3, 5:] = -np.inf  # fewer candidates than k
  pop = rng.integers(0, 100, (q, f))
  head = pop > 50
  pos, out = tail.rerank(scores, pop, head, k, beta=beta, tail_balance=lam)
  for r in range(q):
    want = _reference_rerank(scores[r].tolist(), pop[r].tolist(), head[r].tolist(), k, beta, lam)
    assert pos[r, :len(want)].tolist() == want
    assert (pos[r, len(want):] == -1).all() and (out[r, len(want):] == -np.inf).all()
    np.testing.assert_allclose(out[r, :len(want)],
                               scores[r, want] - beta * np.log1p(pop[r, want]), rtol=1e-5)


def test_balance_raises_tail_share():
  rng = np.random.default_rng(0)
  scores = np.sort(rng.normal(size=(50, 200)), axis=1)[:, ::-1].astype(np.float32)
  head = np.zeros((50, 200), bool)
  head[:, :150] = True  # the best-scored candidates are head items
  pop = np.where(head, 100, 1)
  share = [(~np.take_along_axis(head, tail.rerank(scores, pop, head, 20, tail_balance=lam)[0],
                                 axis=1)).mean() for lam in (0.0, 0.5, 1.0)]
  assert share[0] == 0 and share[0] < share[1] < share[2] and share[2] == pytest.approx(0.5)
  beta_share = (~np.take_along_axis(head, tail.rerank(scores, pop, head, 20, beta=2.0)[0],
                                    axis=1)).mean()
  assert beta_share > 0


def test_rerank_full_equals_candidates_then_rerank():
  rng = np.random.default_rng(3)
  scores = rng.normal(size=(4, 300)).astype(np.float32)
  scores[0, :250] = -np.inf  # e.g. seen items
  pop = rng.integers(0, 30, 300)
  head = tail.head_tail_split(pop)
  rows, out = tail.rerank_full(scores, pop, head, 10, beta=0.3, tail_balance=0.4)
  for r in range(4):
    top = sorted(range(300), key=lambda i: (-scores[r, i], i))[:100]
    want = _reference_rerank(scores[r, top].tolist(), pop[top].tolist(), head[top].tolist(), 10,
                             0.3, 0.4)
    assert rows[r].tolist() == [top[i] for i in want]


def test_defaults_and_bad_knobs():
  assert tail.default_candidates(10) == 10 and tail.default_candidates(10, beta=0.1) == 100
  assert tail.default_candidates(30, tail_balance=0.5) == 300
  with pytest.raises(ValueError, match="beta=-1"):
    tail.rerank(np.zeros((1, 3)), np.zeros((1, 3), int), np.zeros((1, 3), bool), 2, beta=-1)
  with pytest.raises(ValueError, match="tail_balance=1.5"):
    tail.check_knobs(0.0, 1.5)


@pytest.mark.parametrize("seed", range(3))
def test_serving_cut_matches_evaluation_groups(seed):
  from mmrec.evaluation.metrics import HEAD, popularity_groups
  pop = (np.random.default_rng(seed).pareto(1.1, 500) * 2).astype(np.int64)
  for share in (0.1, 0.2, 0.5, 1.0):
    np.testing.assert_array_equal(tail.head_tail_split(pop, share),
                                  popularity_groups(pop, pop == 0, share) == HEAD)


def test_serving_imports_nothing_from_evaluation():
  import subprocess
  import sys
  code = ("import sys, mmrec.serving, mmrec.serving.tail; "
          "bad = [m for m in sys.modules if m.startswith(('mmrec.evaluation', 'jax', 'flax'))]; "
          "assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True)
