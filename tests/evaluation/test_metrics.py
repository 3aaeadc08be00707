"""Ranking metrics against hand-computed values and a brute-force reference."""

import math

import numpy as np
import pytest

from mmrec.evaluation import metrics


def _reference_topk(scores, exclude, k):
  out = []
  for row, ex in zip(scores, exclude):
    s = [(-math.inf if i in set(ex.tolist()) else float(v)) for i, v in enumerate(row)]
    out.append(sorted(range(len(s)), key=lambda i: (-s[i], i))[:k])
  return np.array(out)


def _reference_metrics(lists, targets, num_items, ks, groups, names):
  """Pure-Python metrics, one user at a time."""
  disc = lambda r: 1.0 / math.log2(r + 2)
  users = [(l, set(t.tolist())) for l, t in zip(lists, targets) if len(t)]
  out = {"users@all": float(len(users))}
  for k in ks:
    rec, nd, hit, aplt = [], [], [], []
    exposure = [0] * num_items
    for l, t in users:
      top = list(l[:k])
      got = [i in t for i in top]
      rec.append(sum(got) / len(t))
      dcg = sum(disc(r) for r, g in enumerate(got) if g)
      nd.append(dcg / sum(disc(r) for r in range(min(len(t), k))))
      hit.append(float(any(got)))
      aplt.append(sum(groups[i] != 0 for i in top) / k)
      for i in top:
        exposure[i] += 1
    out[f"recall@{k}"] = sum(rec) / len(users)
    out[f"ndcg@{k}"] = sum(nd) / len(users)
    out[f"hit@{k}"] = sum(hit) / len(users)
    out[f"aplt@{k}"] = sum(aplt) / len(users)
    out[f"coverage@{k}"] = sum(c > 0 for c in exposure) / num_items
    x = sorted(exposure)
    n, total = len(x), sum(x)
    out[f"gini@{k}"] = sum((2 * i - n - 1) * v for i, v in enumerate(x, 1)) / (n * total)
    for g, name in enumerate(names):
      g_rec, g_nd = [], []
      for l, t in users:
        tg = {i for i in t if groups[i] == g}
        if not tg:
          continue
        got = [i in tg for i in l[:k]]
        g_rec.append(sum(got) / len(tg))
        dcg = sum(disc(r) for r, h in enumerate(got) if h)
        g_nd.append(dcg / sum(disc(r) for r in range(min(len(tg), k))))
      out[f"users@{name}"] = float(len(g_rec))
      if g_rec:
        out[f"recall@{k}/{name}"] = sum(g_rec) / len(g_rec)
        out[f"ndcg@{k}/{name}"] = sum(g_nd) / len(g_nd)
  return out


def test_hand_computed_example():
  # 6 items: 0,1 head; 2,3 tail; 4,5 cold.
  groups = np.array([0, 0, 1, 1, 2, 2])
  acc = metrics.RankingAccumulator(6, ks=(2, 3), item_group=groups)
  topk = np.array([[0, 2, 4], [1, 3, 0], [5, 4, 3]])
  # User A: targets {2, 5}; user B: {1}; user C: none -> ignored everywhere.
  acc.add(topk, [np.array([2, 5]), np.array([1]), np.array([], np.int64)])
  r = acc.result()
  d1 = 1 / math.log2(3)  # discount at rank 1 = 0.63093
  # A@2: [0, 2] hits item 2 at rank 1: recall 1/2, ndcg d1 / (1 + d1) = 0.386853.
  # B@2: [1, 3] hits item 1 at rank 0: recall 1, ndcg 1.
  assert r["users@all"] == 2
  assert r["recall@2"] == pytest.approx(0.75)
  assert r["ndcg@2"] == pytest.approx((d1 / (1 + d1) + 1) / 2)  # 0.693426
  assert r["hit@2"] == pytest.approx(1.0)
  # @3: A's list [0, 2, 4] still misses 5, B unchanged: same recall and ndcg.
  assert r["recall@3"] == pytest.approx(0.75)
  assert r["ndcg@3"] == pytest.approx(0.693426, abs=1e-6)
  # Coverage: @2 {0, 1, 2, 3} = 4/6; @3 adds item 4 -> 5/6 (C's list ignored).
  assert r["coverage@2"] == pytest.approx(4 / 6)
  assert r["coverage@3"] == pytest.approx(5 / 6)
  # APLT: @2 A [0, 2] -> 1/2, B [1, 3] -> 1/2; @3 A -> 2/3, B -> 1/3: both 0.5.
  assert r["aplt@2"] == pytest.approx(0.5)
  assert r["aplt@3"] == pytest.approx(0.5)
  # Gini@2 of exposure [1, 1, 1, 1, 0, 0]: (-1 + 1 + 3 + 5) / (6 * 4) = 1/3.
  assert r["gini@2"] == pytest.approx(1 / 3)
  # Groups: head = B (target 1, rank 0); tail = A (target 2, rank 1); cold = A (5 missed).
  assert (r["users@head"], r["users@tail"], r["users@cold"]) == (1, 1, 1)
  assert r["recall@2/head"] == pytest.approx(1.0)
  assert r["ndcg@2/head"] == pytest.approx(1.0)
  assert r["recall@2/tail"] == pytest.approx(1.0)
  assert r["ndcg@2/tail"] == pytest.approx(d1)
  assert r["recall@3/cold"] == 0.0 and r["ndcg@3/cold"] == 0.0


def test_matches_bruteforce_reference_on_random_batches():
  rng = np.random.default_rng(0)
  n, ks, names = 40, (1, 5, 10), ("head", "tail", "cold")
  groups = rng.integers(0, 3, n)
  acc = metrics.RankingAccumulator(n, ks=ks, item_group=groups, group_names=names)
  all_lists, all_targets = [], []
  for _ in range(4):  # several batches: sums must combine exactly
    b = 25
    lists = np.stack([rng.permutation(n)[:12] for _ in range(b)])
    targets = [rng.choice(n, rng.integers(0, 6), replace=False) for _ in range(b)]
    acc.add(lists, targets)
    all_lists += list(lists)
    all_targets += targets
  got = acc.result()
  want = _reference_metrics(all_lists, all_targets, n, ks, groups, names)
  intervals = {key for key in got if key.endswith(("/ci_low", "/ci_high"))}
  assert set(got) - intervals == set(want)
  # every metric but the user counts has an interval around its value
  for key in set(want) - {k for k in want if k.startswith("users@")}:
    assert got[f"{key}/ci_low"] <= got[key] + 1e-12 <= got[f"{key}/ci_high"] + 2e-12, key
  for key in want:
    assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_group_without_users_reports_zero_count_only():
  acc = metrics.RankingAccumulator(4, ks=(2,), item_group=np.array([0, 0, 1, 1]))
  acc.add(np.array([[0, 1]]), [np.array([0])])
  r = acc.result()
  assert r["users@cold"] == 0 and "recall@2/cold" not in r
  assert r["recall@2/head"] == 1.0


def test_no_groups_omits_group_metrics():
  acc = metrics.RankingAccumulator(5, ks=(2,))
  acc.add(np.array([[0, 1], [2, 3]]), [np.array([1]), np.array([4])])
  r = acc.result()
  assert r["recall@2"] == pytest.approx(0.5)
  assert not any(("/" in key and "/ci_" not in key) or "aplt" in key for key in r)


def test_accumulator_errors():
  acc = metrics.RankingAccumulator(5, ks=(2,))
  with pytest.raises(ValueError, match="no user"):
    acc.result()
  with pytest.raises(ValueError, match="repeats"):
    acc.add(np.array([[1, 1]]), [np.array([1])])
  with pytest.raises(ValueError, match=r"\[B, >=2\]"):
    acc.add(np.array([[1]]), [np.array([1])])
  with pytest.raises(ValueError, match="item_group"):
    metrics.RankingAccumulator(3, ks=(2,), item_group=np.array([0, 5, 1]))


@pytest.mark.parametrize("ties", [False, True])
def test_masked_topk_matches_full_sort(ties):
  rng = np.random.default_rng(1)
  b, n, k = 30, 50, 10
  scores = rng.normal(size=(b, n)).astype(np.float32)
  if ties:  # few distinct values: ties straddle the cut
    scores = rng.integers(0, 4, size=(b, n)).astype(np.float32)
  exclude = [rng.choice(n, rng.integers(0, 20), replace=False) for _ in range(b)]
  got = metrics.masked_topk(scores, exclude, k)
  np.testing.assert_array_equal(got, _reference_topk(scores, exclude, k))
  for row, ex in zip(got, exclude):
    assert not set(row) & set(ex)


def test_masked_topk_fills_with_excluded_when_too_few_remain():
  got = metrics.masked_topk(np.array([[3.0, 2.0, 1.0]]), [np.array([0, 2])], 2)
  np.testing.assert_array_equal(got, [[1, 0]])


def test_masked_topk_errors():
  with pytest.raises(ValueError, match="NaN"):
    metrics.masked_topk(np.array([[np.nan, 1.0]]), None, 1)
  with pytest.raises(ValueError, match="k=3"):
    metrics.masked_topk(np.zeros((1, 2)), None, 3)
  with pytest.raises(ValueError, match="outside"):
    metrics.masked_topk(np.zeros((1, 2)), [np.array([2])], 1)


def test_popularity_groups():
  counts = np.array([5, 0, 9, 1, 5, 0, 3, 0, 2, 7, 0, 4])
  is_cold = np.zeros(12, bool)
  is_cold[[5, 10]] = True
  # 10 warm items -> 2 head: counts 9 (item 2) and 7 (item 9).
  g = metrics.popularity_groups(counts, is_cold)
  want = np.ones(12, np.int8)
  want[[2, 9]] = 0
  want[[5, 10]] = 2
  np.testing.assert_array_equal(g, want)
  assert g.dtype == np.int8
  # Ties by lower index: 3 head of 10 -> 9, 7, then the first 5 (item 0, not 4).
  g = metrics.popularity_groups(counts, is_cold, head_share=0.3)
  assert set(np.flatnonzero(g == 0)) == {0, 2, 9}


def test_popularity_groups_errors():
  with pytest.raises(ValueError, match="is_cold but has 3"):
    metrics.popularity_groups(np.array([3, 0]), np.array([True, False]))
  with pytest.raises(ValueError, match="same length"):
    metrics.popularity_groups(np.array([3, 0]), np.array([False]))
