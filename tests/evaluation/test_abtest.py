"""The simulated A/B test on the tiny shop: its sanity ladder, the A/A false-positive rate,
the choice model's prior and the arms' slates against brute force."""

import numpy as np
import pytest

from mmrec.data import shop
from mmrec.data.shop import behaviour as shop_behaviour
from mmrec.evaluation import abtest
from mmrec.retrieval import export


@pytest.fixture(scope="module")
def tiny_shop():
  return shop.generate(shop.shop_config("tiny"))


@pytest.fixture(scope="module")
def world(tiny_shop):
  """Every interaction is history; train counts over all of them."""
  c, it = tiny_shop.config, tiny_shop.interactions
  order = np.lexsort((it.timestamp, it.user))
  user, item = it.user[order], it.item[order]
  bounds = np.searchsorted(user, np.arange(c.num_users + 1))
  counts = np.bincount(item, minlength=c.num_items)
  return abtest.World(tiny_shop.user_prefs, tiny_shop.catalog.attributes, shop.choice_prior(c),
                      c.temperature, tiny_shop.catalog.item_id, counts, counts == 0,
                      [item[bounds[u]:bounds[u + 1]] for u in range(c.num_users)])


@pytest.fixture(scope="module")
def content_bundle(tiny_shop, tmp_path_factory):
  """A bundle of attribute one-hot embeddings (weighted as the affinity weighs them): a
  content model that knows what each item is, but not each user's weights."""
  attrs = tiny_shop.catalog.attributes
  parts = [shop_behaviour.IMPORTANCE[n] * np.eye(attrs[n].max() + 1)[attrs[n]]
           for n in shop_behaviour.IMPORTANCE]
  emb = np.concatenate(parts, axis=1).astype(np.float32)
  emb /= np.linalg.norm(emb, axis=1, keepdims=True)
  counts = np.bincount(tiny_shop.interactions.item, minlength=len(emb))
  return export.export_bundle(tmp_path_factory.mktemp("abtest") / "bundle", emb,
                              tiny_shop.catalog.item_id, counts, scann_mode="brute_force",
                              model_info={"name": "content", "default_beta": 0.0})


def test_choice_prior_is_the_one_that_drew_the_interactions(monkeypatch):
  config = shop.shop_config("tiny", seed=3)
  used = []
  real = shop_behaviour.exposure_prior
  monkeypatch.setattr(shop_behaviour, "exposure_prior",
                      lambda *a: used.append(real(*a)) or used[-1])
  shop.generate(config)
  np.testing.assert_array_equal(shop.choice_prior(config), used[0])


def test_slates_match_brute_force_and_skip_history(world):
  users = np.arange(0, 200, 37)
  for arm in (abtest.Arm("popularity"), abtest.Arm("oracle")):
    got = abtest.slates(arm, world, users, 5)
    for row, u in zip(got, users):
      seen = set(world.histories[u].tolist())
      if arm.kind == "popularity":
        key = world.train_counts.astype(float)
      else:
        key = shop_behaviour.affinity(world.prefs, world.attributes, [u])[0] / world.temperature \
            + world.prior
      want = sorted((i for i in range(len(key)) if i not in seen), key=lambda i: (-key[i], i))
      assert row.tolist() == want[:5]


def test_sanity_ladder(world, content_bundle):
  """The oracle beats every arm on CTR (significantly: it maximises expected clicks) and
  conversion (in its estimate; significantly against popularity); popularity loses on
  tail share."""
  arms = {"popularity": abtest.Arm("popularity"),
          "bundle": abtest.Arm("bundle", str(content_bundle), beta=0.0),
          "bundle_tail": abtest.Arm("bundle", str(content_bundle), beta=1.0)}
  for name, other in arms.items():
    r = abtest.run(world, other, abtest.Arm("oracle"), k=10, seed=0, draws=300)
    d = r["difference"]
    assert d["ctr"]["significant"] and d["ctr"]["difference"] > 0, (name, d["ctr"])
    assert d["conversion"]["difference"] > 0, (name, d["conversion"])
    assert d["conversion"]["significant"] or name != "popularity", d["conversion"]
  for name in ("bundle", "bundle_tail"):
    r = abtest.run(world, arms["popularity"], arms[name], k=10, seed=1, draws=300)
    d = r["difference"]["tail_click_share"]
    assert d["significant"] and d["difference"] > 0, (name, d)
    assert r["arms"]["A"]["tail_click_share"] == 0  # the top items are all head
    assert r["arms"]["B"]["exposure_gini"] < r["arms"]["A"]["exposure_gini"]


def test_a_against_itself_is_rarely_significant(world):
  """Over 100 seeds (new split, new clicks), A/A shows a significant CTR or conversion
  difference at about the stated 5% each (tolerant bound: binomial(100, 0.05) < 12)."""
  arm = abtest.Arm("oracle")
  significant = {"ctr": 0, "conversion": 0}
  for seed in range(100):
    r = abtest.run(world, arm, arm, k=10, seed=seed, draws=200)
    for metric in significant:
      significant[metric] += r["difference"][metric]["significant"]
  assert all(1 <= count <= 12 for count in significant.values()), significant


def test_result_fields_and_seeding(world):
  first = abtest.run(world, abtest.Arm("popularity"), abtest.Arm("oracle"), k=4, seed=5, draws=100)
  again = abtest.run(world, abtest.Arm("popularity"), abtest.Arm("oracle"), k=4, seed=5, draws=100)
  assert first == again
  a = first["arms"]["A"]
  assert a["users"] + first["arms"]["B"]["users"] == 200
  assert sum(a["exposure_by_decile"]) == pytest.approx(1.0)
  assert a["exposure_by_decile"][0] == pytest.approx(1.0)  # popularity: only the top decile
  for metric in abtest.METRICS:
    assert a[f"{metric}/ci_low"] <= a[metric] <= a[f"{metric}/ci_high"], metric
  assert "| ctr |" in abtest.markdown(first)


def test_arm_specs():
  assert abtest.parse_arm("popularity", "b") == abtest.Arm("popularity")
  assert abtest.parse_arm("bundle", "runs/x/bundle") == abtest.Arm("bundle", "runs/x/bundle")
  assert abtest.parse_arm("bundle=other:beta=0.5,tail_balance=0.2", "b") == \
      abtest.Arm("bundle", "other", beta=0.5, tail_balance=0.2)
  assert abtest.parse_arm("bundle:beta=0", "b").name == "bundle(beta=0)"
  for bad, message in (("popular", "not known"), ("bundle:gamma=1", "unknown option 'gamma'"),
                       ("bundle:beta=x", "not a number"), ("oracle=dir", "only a bundle")):
    with pytest.raises(ValueError, match=message):
      abtest.parse_arm(bad, "b")


def test_world_from_the_stored_shop_keeps_users_and_items_aligned(tiny_data_dir, tiny_shop):
  from mmrec.configs import two_tower
  from mmrec.data import dataset, sources
  cfg = two_tower.get_config("tiny").data
  cfg.data_dir = str(tiny_data_dir)
  path = sources.dataset_path(cfg, tiny_data_dir)
  data = dataset.load_dataset(path)
  stored = abtest.world_from_dataset(data, dataset.load_truth(path))
  it = tiny_shop.interactions
  for u in range(0, 200, 23):  # a stored history is the shop's user's own items
    assert set(stored.histories[u].tolist()) <= set(it.item[it.user == u].tolist())
    assert len(stored.histories[u])
  np.testing.assert_array_equal(stored.prior, shop.choice_prior(tiny_shop.config))
  for name in stored.prefs:
    np.testing.assert_array_equal(stored.prefs[name], tiny_shop.user_prefs[name])
  data.meta.pop("shop")
  with pytest.raises(ValueError, match="no ground truth"):
    abtest.world_from_dataset(data, None)
