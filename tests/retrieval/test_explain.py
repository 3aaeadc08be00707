"""Explanations against independent references: the flax model itself (linear tower),
brute-force Shapley over orderings (modalities), brute-force leave-one-out (MLP tower)."""

import itertools
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from mmrec import jobs
from mmrec.configs import two_tower
from mmrec.retrieval import export, update
from mmrec.retrieval.user_tower import export_user_tower
from mmrec.serving import BundleError, load_bundle
from mmrec.training import embed as embed_lib
from mmrec.training import two_tower as train_lib


def _config(tiny_data_dir, item_bias=False, **user):
  cfg = two_tower.get_config("tiny")
  cfg.data.data_dir = str(tiny_data_dir)
  cfg.model.user.update(user)
  cfg.model.item_bias = item_bias
  return cfg


def _export(tiny_data_dir, tmp, item_bias=False, fusion="mlp", **user):
  cfg = _config(tiny_data_dir, item_bias, **user)
  cfg.model.fusion = fusion
  model, data, items = train_lib.prepare(cfg, tmp)
  trained = train_lib.Trained(model, data, items, step=0)
  return trained, jobs.export(trained, cfg, tmp / "bundle")


@pytest.fixture(scope="module")
def exported(tiny_data_dir, tmp_path_factory):
  return _export(tiny_data_dir, tmp_path_factory.mktemp("explain"))


@pytest.fixture(scope="module")
def exported_with_bias(tiny_data_dir, tmp_path_factory):
  """A model with `model.item_bias` (one more coordinate, the user's 1 times the item's
  bias), a linear item tower and no ID rows in the user tower."""
  return _export(tiny_data_dir, tmp_path_factory.mktemp("explain_bias"), item_bias=True,
                 fusion="linear", use_ids=False)


def _histories(trained, count=4, length=6):
  """A few histories of distinct item ids (model indices and ids)."""
  rng = np.random.default_rng(0)
  ids = np.asarray(trained.data.catalog.item_id)
  rows = [rng.choice(len(ids), size=length, replace=False) for _ in range(count)]
  return rows, [list(ids[r]) for r in rows]


def _tower(model, rows):
  """The flax user tower (unnormalised) on one history of model indices."""
  h = np.asarray(rows, np.int32)[None]
  mask = np.ones_like(h, bool)
  if not h.size:
    h, mask = np.zeros((1, 1), np.int32), np.zeros((1, 1), bool)
  table = model.item_cache[...]
  return np.asarray(model.user_tower(jnp.asarray(h), jnp.asarray(mask), table[h]), np.float64)[0]


@pytest.mark.parametrize("which", ["exported", "exported_with_bias"])
def test_linear_profile_explanations_are_exact_and_match_the_model(which, request):
  trained, bundle_dir = request.getfixturevalue(which)
  bundle = load_bundle(bundle_dir)
  model = trained.model
  bias = bool(trained.model.user_tower.bias)
  d = bundle.dimension - bias  # the user's coordinates before its bias coordinate (1)
  for rows, history in zip(*_histories(trained)):
    ids, scores = bundle.search_by_history(history, 5, beta=0.2)
    explained = bundle.explain_history(history, list(ids), beta=0.2, top=None)
    model.user_tower.normalize = False  # the raw user: g_h = tower([h]) - tower([])
    try:
      prior = _tower(model, [])
      g = np.stack([_tower(model, [r]) - prior for r in rows])
      raw = _tower(model, rows)
    finally:
      model.user_tower.normalize = True
    if bias:
      np.testing.assert_array_equal(raw[d:], 1.0)
      np.testing.assert_array_equal(g[:, d:], 0.0)
    raw, prior, g = raw[:d], prior[:d], g[:, :d]
    scale = np.linalg.norm(raw)
    for item, score, e in zip(ids, scores, explained):
      assert e["method"] == "linear_profile" and e["exact"]
      terms = (sum(h["contribution"] for h in e["history"]) + e["prior"] + e["item_bias"]
               + e["popularity"])
      np.testing.assert_allclose([terms, e["score"]], score, atol=1e-5)
      v = bundle.embeddings[bundle.index_of(item)].astype(np.float64)
      assert e["item_bias"] == (pytest.approx(v[d]) if bias else 0.0)
      v = v[:d]
      want = dict(zip(history, g @ v / (np.sqrt(len(rows)) * scale)))
      got = {h["id"]: h["contribution"] for h in e["history"]}
      assert got.keys() == want.keys()
      np.testing.assert_allclose([got[i] for i in history], [want[i] for i in history],
                                 atol=1e-5)
      np.testing.assert_allclose(e["prior"], prior @ v / scale, atol=1e-5)
      assert sum(abs(h["share"]) for h in e["history"]) == pytest.approx(1.0)
      contributions = [h["contribution"] for h in e["history"]]
      assert contributions == sorted(contributions, reverse=True)


def test_top_keeps_the_sum(exported):
  _, bundle_dir = exported
  bundle = load_bundle(bundle_dir)
  history = list(bundle.item_ids[:8])
  ids, scores = bundle.search_by_history(history, 3)
  for e, score in zip(bundle.explain_history(history, list(ids), top=2), scores):
    assert len(e["history"]) == 2
    total = sum(h["contribution"] for h in e["history"]) + e["other_history"]
    assert total + e["prior"] + e["popularity"] == pytest.approx(score, abs=1e-5)


def test_pooled_explanations_are_exact(exported):
  _, bundle_dir = exported
  bundle = load_bundle(bundle_dir)
  history = list(bundle.item_ids[[3, 9, 3, 40]])  # a repeated item counts twice
  ids, scores = bundle.search_by_history(history, 4, user_tower=False, beta=0.0)
  explained = bundle.explain_history(history, list(ids), user_tower=False, beta=0.0, top=None)
  vectors = bundle.embeddings[bundle.index_of(history)].astype(np.float64)
  mean = vectors.mean(0)
  for item, score, e in zip(ids, scores, explained):
    assert e["method"] == "pooled" and e["prior"] == 0.0
    assert sum(h["contribution"] for h in e["history"]) == pytest.approx(score, abs=1e-5)
    got = {h["id"]: h["contribution"] for h in e["history"]}
    v = bundle.embeddings[bundle.index_of(item)]
    repeated = history[0]
    assert got[repeated] == pytest.approx(2 * vectors[0] @ v / (4 * np.linalg.norm(mean)))


def _shapley_by_orderings(value, players):
  """phi_g = mean over all orderings of f(before + g) - f(before)."""
  phi = {g: 0.0 for g in players}
  orders = list(itertools.permutations(players))
  for order in orders:
    for i, g in enumerate(order):
      phi[g] += (value(frozenset(order[:i + 1])) - value(frozenset(order[:i]))) / len(orders)
  return phi


def test_modality_split_is_the_shapley_value_and_sums_to_the_embedding(exported):
  trained, bundle_dir = exported
  bundle = load_bundle(bundle_dir)
  tower, items = trained.model.item_tower, trained.items
  n = len(items.warm)
  feats = items.features(np.arange(n))
  parts = {k: np.asarray(v, np.float64) for k, v in
           tower.modality_parts(feats["item"], feats["tokens"], feats["image"],
                                feats["warm"]).items()}
  absent = {k: np.zeros_like(v[0]) if k == "id" else v.mean(0) for k, v in parts.items()}
  groups = {"text": ("bag", "text"), "image": ("image",), "id": ("id",)}
  cold = int(np.flatnonzero(~items.warm)[0])
  rows = np.array([0, 7, cold])
  from mmrec.serving import explain
  ex = explain.explainer(bundle)
  assert ex.names == ["text", "image", "id"]
  for row, got in zip(rows, ex.modality_vectors(rows)):
    def value(coalition):
      on = {p for g in coalition for p in groups[g]}
      mixed = [parts[p][row] if p in on else absent[p] for p in parts]
      return np.asarray(tower.fuse([jnp.asarray(m[None], jnp.float32) for m in mixed]))[0]
    want = _shapley_by_orderings(value, ex.names)
    np.testing.assert_allclose(ex.base, value(frozenset()), atol=1e-6)
    for name, part in zip(ex.names, got):
      np.testing.assert_allclose(part, want[name], atol=3e-3)
    np.testing.assert_allclose(got.sum(0) + ex.base, bundle.embeddings[row], atol=1e-6)
  assert not ex.modality_vectors(rows[2:])[0][2].any()  # a cold item: no ID part at all
  query = np.random.default_rng(1).normal(size=bundle.dimension)
  e = explain.explain_query(bundle, query, list(bundle.item_ids[rows]), beta=0.3)
  for row, one in zip(rows, e):
    raw = query @ bundle.embeddings[row]
    assert sum(one["modalities"].values()) == pytest.approx(raw, abs=1e-5)
    assert one["score"] == pytest.approx(raw - 0.3 * np.log1p(bundle.popularity[row]))


def test_leave_one_out_matches_brute_force_on_an_mlp_tower(tiny_data_dir, tmp_path):
  cfg = _config(tiny_data_dir, mlp_dim=16)  # a tanh MLP: no exact split
  model, data, items = train_lib.prepare(cfg, tmp_path)
  emb = embed_lib.item_embeddings(model, items)
  model.item_cache[...] = emb
  ids = np.asarray(data.catalog.item_id)
  path = export.export_bundle(tmp_path / "bundle", emb, ids, data.train_counts(),
                              model_info={"name": "mlp"},
                              user_tower=export_user_tower(model, cfg.data.history_len, ids))
  bundle = load_bundle(path)
  rows = [4, 17, 30, 52, 81]
  history = list(ids[rows])
  targets, _ = bundle.search_by_history(history, 3)
  explained = bundle.explain_history(history, list(targets), top=None)

  def score(history_rows, item):
    u = _tower(model, history_rows)
    return (u / np.linalg.norm(u)) @ emb[bundle.index_of(item)]

  for item, e in zip(targets, explained):
    assert e["method"] == "leave_one_out" and not e["exact"] and e["modalities"] is None
    got = {h["id"]: h["contribution"] for h in e["history"]}
    for left, row in zip(history, rows):
      want = score(rows, item) - score([r for r in rows if r != row], item)
      assert got[left] == pytest.approx(want, abs=1e-5)


def test_explanations_survive_updates(exported, tmp_path):
  _, bundle_dir = exported
  path = shutil.copytree(bundle_dir, tmp_path / "b")
  before = load_bundle(path)
  keep = list(before.item_ids[:4])
  old = before.explain_history(keep[:3], [keep[3]], top=None)[0]
  update.add_items(path, before.embeddings[:1] * -1, ["added-1"])
  update.remove_items(path, [str(before.item_ids[5])])
  after = load_bundle(path)
  assert after.version == 3 and "explain" in after.manifest
  new, added = after.explain_history(keep[:3], [keep[3], "added-1"], top=None)
  assert [h["id"] for h in new["history"]] == [h["id"] for h in old["history"]]
  np.testing.assert_allclose([h["contribution"] for h in new["history"]],
                             [h["contribution"] for h in old["history"]], atol=1e-6)
  assert new["modalities"] == pytest.approx(old["modalities"], abs=1e-6)
  assert added["modalities"] is None and added["method"] == "linear_profile"


def test_a_broken_explanation_file_is_named(exported, tmp_path):
  _, bundle_dir = exported
  path = shutil.copytree(bundle_dir, tmp_path / "b")
  np.save(path / "explain_user_prior.npy", np.zeros(3, np.float32))
  with pytest.raises(BundleError, match=r"explain_user_prior\.npy: shape \(3,\)"):
    load_bundle(path, verify_checksums=False)
