"""The retrieval explorer against numpy brute force over a real (small) bundle."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mmrec import explorer
from mmrec.retrieval.export import export_bundle
from mmrec.serving import load_bundle

N, D, USERS, K = 40, 8, 5, 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(N, D)).astype(np.float32)
  emb /= np.linalg.norm(emb, axis=1, keepdims=True)
  ids = np.array([f"sku-{i:03d}" for i in range(N)])
  popularity = rng.integers(0, 60, N)
  popularity[-5:] = 0  # cold
  path = export_bundle(tmp_path_factory.mktemp("b") / "bundle", emb, ids, popularity,
                       model_info={"name": "test"}, scann_mode="brute_force")
  titles = np.array([f"{c} item {i}" for i, c in enumerate(["red dress", "blue scarf"] * (N // 2))])
  groups = np.where(popularity >= 30, 0, 1)
  groups[-5:] = 2
  catalog = explorer.Catalog(ids, titles, rng.integers(0, 255, (N, 4, 4, 3), dtype=np.uint8),
                             groups, popularity)
  users = rng.normal(size=(USERS, D)).astype(np.float32)
  histories = [rng.choice(N - 5, size=3 + u, replace=False) for u in range(USERS)]
  bundle = load_bundle(path)
  return dict(emb=emb, ids=ids, pop=popularity, catalog=catalog, users=users,
              histories=histories, model=explorer.Model(bundle, users),
              pooled=explorer.Model(bundle, None))


def reference(emb, query, pop, exclude, beta, k=K):
  """Rows by score - beta * ln(1 + popularity), excluded rows dropped, best first."""
  score = query @ emb.T - beta * np.log1p(pop)
  score[list(exclude)] = -np.inf
  return np.lexsort((np.arange(len(score)), -score))[:k]


def shown_rows(html: str, catalog) -> list[int]:
  return [catalog.row[i] for i in re.findall(r'data-item="([^"]+)"', html)]


def test_recommendations_follow_beta_like_brute_force(setup):
  app = explorer.RetrievalExplorer({"tower": setup["model"], "pooled": setup["pooled"]},
                                   setup["catalog"], setup["histories"], range(USERS), k=K,
                                   beta_max=0.3)
  for user in (0, 3):
    app.user.value = user
    for beta in (0.0, 0.05, 0.3):
      app.beta.value = beta
      hist = setup["histories"][user]
      want = reference(setup["emb"], setup["users"][user], setup["pop"], hist, beta)
      assert shown_rows(app.recs["tower"].value, setup["catalog"]) == want.tolist()
      assert f"beta {beta:.3f}" in app.recs["tower"].value
      pooled = setup["emb"][hist].mean(0)
      want = reference(setup["emb"], pooled / np.linalg.norm(pooled), setup["pop"], hist, beta)
      assert shown_rows(app.recs["pooled"].value, setup["catalog"]) == want.tolist()
      shown_history = shown_rows(app.history.value, setup["catalog"])
      assert shown_history == hist[::-1].tolist()  # most recent first


def test_similar_items_search_box(setup):
  catalog = setup["catalog"]
  app = explorer.RetrievalExplorer({"tower": setup["model"]}, catalog, setup["histories"],
                                   range(USERS), k=K)
  assert catalog.find("sku-007") == 7
  # Title words: the most popular match among the "blue scarf" items (odd rows).
  scarves = np.arange(1, N, 2)
  assert catalog.find("Blue SCARF") == scarves[np.argmax(setup["pop"][scarves])]
  assert catalog.find("green") is None and catalog.find("  ") is None
  app.beta.value = 0.1
  app.query.value = "sku-007"
  want = reference(setup["emb"], setup["emb"][7], setup["pop"], [7], 0.1)
  assert shown_rows(app.similar["tower"].value, catalog) == want.tolist()
  assert shown_rows(app.query_item.value, catalog) == [7]
  app.query.value = "no such thing"
  assert "no item matches" in app.query_item.value and app.similar["tower"].value == ""


def test_beta_sweep_matches_hand_computed_metrics(setup):
  catalog, histories = setup["catalog"], setup["histories"]
  targets = [np.array([(u * 7) % N, N - 1 - u]) for u in range(USERS)]
  points = explorer.beta_sweep(setup["model"], range(USERS), histories, targets, catalog,
                               [0.0, 0.2], k=K)
  assert [p["beta"] for p in points] == [0.0, 0.2]
  for point, beta in zip(points, (0.0, 0.2)):
    lists = [reference(setup["emb"], setup["users"][u], setup["pop"], histories[u], beta)
             for u in range(USERS)]
    recall = np.mean([np.isin(t, l).mean() for t, l in zip(targets, lists)])
    aplt = np.mean([(catalog.groups[l] != 0).mean() for l in lists])
    assert point[f"recall@{K}"] == pytest.approx(recall)
    assert point[f"aplt@{K}"] == pytest.approx(aplt)


def test_bad_inputs_are_refused(setup):
  with pytest.raises(ValueError, match="titles"):
    explorer.Catalog(setup["ids"], setup["catalog"].titles[:3], setup["catalog"].images,
                     setup["catalog"].groups, setup["pop"])
  with pytest.raises(ValueError, match="no users"):
    explorer.RetrievalExplorer({"tower": setup["model"]}, setup["catalog"], setup["histories"], [])
  with pytest.raises(ValueError, match="user vectors"):
    explorer.recommend_all(setup["pooled"], [0], setup["histories"], setup["catalog"], K)


def _outside_head_share(setup, beta):
  lists = [reference(setup["emb"], setup["users"][u], setup["pop"], setup["histories"][u], beta)
           for u in range(USERS)]
  return np.mean([(setup["catalog"].groups[l] != 0).mean() for l in lists])


def test_the_beta_slider_ends_where_the_lists_turn_to_the_tail(setup):
  end = explorer.beta_range(setup["model"], range(USERS), setup["histories"], setup["catalog"],
                            K, share=0.9)
  assert _outside_head_share(setup, end * 1.05) >= 0.9  # rounded to 2 digits: a hair above
  assert _outside_head_share(setup, end * 0.85) < 0.9  # one grid step (x1.12) below: not yet
  app = explorer.RetrievalExplorer({"tower": setup["model"]}, setup["catalog"],
                                   setup["histories"], range(USERS), k=K)
  assert app.beta.max == explorer.beta_range(setup["model"], range(USERS), setup["histories"],
                                             setup["catalog"], K)


def test_a_chosen_recommendation_frames_the_history_items_that_led_to_it(setup):
  catalog, emb = setup["catalog"], setup["emb"]
  app = explorer.RetrievalExplorer({"pooled": setup["pooled"]}, catalog, setup["histories"],
                                   range(USERS), k=K, beta_max=0.3)
  app.user.value = 4
  hist = setup["histories"][4]
  for name, row in app.choices[:3]:
    app.choose(name, row)
    # brute force: the pooled query's score splits over the history as emb[h] . emb[row]
    part = emb[hist] @ emb[row]
    want = [int(h) for h in hist[np.argsort(-part)][:3] if part[hist == h][0] > 0]
    framed = [catalog.row[i] for i in re.findall(
        r'data-item="([^"]+)" class="mmrec-highlight"', app.history.value)]
    assert sorted(framed) == sorted(want)
    assert shown_rows(app.explanation.value, catalog) == hist[np.argsort(-part)][:5].tolist()
    assert "pooled (exact)" in app.explanation.value
