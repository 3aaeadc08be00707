"""Tower behaviour: unit-norm outputs, ID masking, padding invariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmrec.configs import two_tower
from mmrec.models.towers import TwoTower, hash_ids


def make(variant="multimodal"):
  cfg = two_tower.get_config(f"tiny,{variant}")
  model = TwoTower(cfg.model, num_items=50, vocab_size=100, max_text_len=8, history_len=5,
                   rngs=nnx.Rngs(0))
  return cfg, model


def items(ids, seed=0):
  rng = np.random.default_rng(seed)
  b = len(ids)
  return {"item": jnp.asarray(ids, jnp.int32),
          "tokens": jnp.asarray(np.c_[rng.integers(1, 100, (b, 5)), np.zeros((b, 3))], jnp.int32),
          "image": jnp.asarray(rng.integers(0, 256, (b, 16, 16, 3)), jnp.uint8)}


def test_item_embeddings_are_unit_norm_and_ignore_dropped_ids():
  cfg, model = make()
  batch = items([1, 2, 3])
  keep = jnp.array([True, True, False])
  emb = model.embed_items(batch, keep)
  d = cfg.model.embed_dim  # then the item's bias (model.item_bias), outside the norm
  assert emb.shape[-1] == d + cfg.model.item_bias
  np.testing.assert_allclose(np.linalg.norm(emb[:, :d], axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(emb[:, d:], 0.0)  # untrained, no item is favoured
  other = dict(batch, item=jnp.array([7, 8, 9], jnp.int32))  # same content, other ids
  emb2 = model.embed_items(other, keep)
  np.testing.assert_allclose(emb2[2], emb[2], atol=1e-6)  # ID dropped: only content counts
  assert not np.allclose(emb2[0], emb[0], atol=1e-4)  # ID kept: the id matters


def test_text_padding_does_not_change_the_embedding():
  _, model = make("content_only")
  batch = items([1])
  keep = jnp.zeros(1, bool)
  unpadded = dict(batch, tokens=batch["tokens"][:, :5])  # the same 5 tokens without the 3 pads
  np.testing.assert_allclose(model.embed_items(batch, keep), model.embed_items(unpadded, keep),
                             atol=1e-5)


def test_user_tower_ignores_padding_and_accepts_empty_history():
  cfg, model = make()
  history = jnp.array([[0, 0, 4, 5, 6], [9, 9, 4, 5, 6], [0, 0, 0, 0, 0]], jnp.int32)
  mask = jnp.array([[0, 0, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
  emb = np.asarray(model.embed_users({"history": history, "history_mask": mask}))
  np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)  # padded ids are invisible
  assert np.isfinite(emb).all()
  d = cfg.model.embed_dim  # then 1, the weight of the item's bias (model.item_bias)
  np.testing.assert_allclose(np.linalg.norm(emb[:, :d], axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(emb[:, d:], 1.0)


def test_hash_ids_in_range_and_spread():
  ids = jnp.arange(10_000)
  for seed in (0, 1):
    h = np.asarray(hash_ids(ids, 20_000, seed))
    assert h.min() >= 0 and h.max() < 20_000
    assert len(np.unique(h)) > 7_000  # about 1 - e^-0.5 of 20k buckets hit by 10k ids is ~7.9k
  both = np.stack([hash_ids(ids, 20_000, 0), hash_ids(ids, 20_000, 1)], 1)
  assert len(np.unique(both, axis=0)) > 9_990  # full collisions need both hashes to collide


@pytest.mark.parametrize("use_ids", [True, False])
def test_profile_tower_pools_each_history_item(use_ids):
  """ProfileTower pools before projecting; it equals projecting each item (plus its ID
  row with `use_ids`), then pooling."""
  import ml_collections
  from mmrec.models.towers import ProfileTower
  cfg = ml_collections.ConfigDict(dict(embed_dim=8, normalize=False,
                                       user=dict(width=6, mlp_dim=10, use_ids=use_ids)))
  tower = ProfileTower(cfg, 50, rngs=nnx.Rngs(0))
  assert (tower.ids is not None) == use_ids
  tower.from_items.bias[...] = jnp.arange(6.0)
  rng = np.random.default_rng(0)
  history = jnp.asarray(rng.integers(0, 40, (3, 5)))
  mask = np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)  # row 1: empty
  items = jnp.asarray(rng.normal(size=(3, 5, 8)).astype(np.float32))
  per_item = np.asarray(tower.from_items(items)) + (np.asarray(tower.ids(history)) if use_ids else 0)
  pooled = (per_item * mask[..., None]).sum(1) / np.sqrt(np.maximum(mask.sum(1), 1))[:, None]
  want = tower.proj(jnp.tanh(tower.mlp_in(jnp.asarray(pooled) + tower.prior[...])))
  got = tower(history, jnp.asarray(mask), items)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_linear_fusion_is_one_map_of_the_concatenated_parts():
  """fusion="linear": the item is the affine map of its concatenated modality parts,
  L2-normalised but for its bias coordinate (numpy reference); no LayerNorm or MLP."""
  cfg = two_tower.get_config("tiny,multimodal")
  cfg.model.fusion = "linear"
  model = TwoTower(cfg.model, num_items=50, vocab_size=100, max_text_len=8, history_len=5,
                   rngs=nnx.Rngs(0))
  tower = model.item_tower
  assert not hasattr(tower, "mlp_in") and not hasattr(tower, "norm")
  batch, keep = items([1, 2, 3]), jnp.array([True, False, True])
  parts = tower.modality_parts(batch["item"], batch["tokens"], batch["image"], keep)
  x = np.concatenate([np.asarray(v) for v in parts.values()], axis=-1)
  want = x @ np.asarray(tower.linear.kernel[...]) + np.asarray(tower.linear.bias[...])
  d = cfg.model.embed_dim  # the last coordinate, with model.item_bias, is left as it is
  want[:, :d] /= np.linalg.norm(want[:, :d], axis=-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(model.embed_items(batch, keep)), want, atol=1e-5)


def test_an_unknown_fusion_is_refused():
  cfg = two_tower.get_config("tiny")
  cfg.model.fusion = "attention"
  with pytest.raises(ValueError, match="model.fusion='attention'"):
    TwoTower(cfg.model, num_items=5, vocab_size=100, max_text_len=8, history_len=5,
             rngs=nnx.Rngs(0))


def _loss_and_grads(model, fn):
  return fn(model), nnx.grad(fn)(model)


@pytest.mark.parametrize("use_ids", [True, False])
def test_dense_sums_equal_the_gathers(monkeypatch, use_ids):
  """The token bag and the profile sums as matmuls (towers.DENSE_MAX) give the gather
  path's values and gradients; repeated and padded history items included."""
  from mmrec.models import towers
  cfg, model = make("id_only")
  cfg.model.use_bag, cfg.model.user.kind = True, "profile"
  cfg.model.user.use_ids = use_ids
  model = TwoTower(cfg.model, num_items=50, vocab_size=100, max_text_len=8, history_len=6,
                   rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 100, (50, 8))
  tokens[:, 5:] = 0  # padding
  tokens[7] = 0  # an item with no token
  catalog = {"item": jnp.arange(50), "tokens": jnp.asarray(tokens),
             "image": jnp.zeros((50, 0)), "warm": jnp.ones(50, bool)}
  history = rng.integers(0, 50, (4, 6))
  history[0, :3] = 9  # a repeated item
  batch = {"history": jnp.asarray(history), "history_mask": jnp.asarray(rng.random((4, 6)) < 0.7)}

  def loss(m):
    items = m.embed_items(catalog, catalog["warm"])
    return (m.embed_users(batch, catalog=items) ** 2).sum() + (items[:, 0] ** 3).sum()

  dense, dense_grads = _loss_and_grads(model, loss)
  monkeypatch.setattr(towers, "DENSE_MAX", 0)
  gather, gather_grads = _loss_and_grads(model, loss)
  np.testing.assert_allclose(dense, gather, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(nnx.state(dense_grads)), jax.tree.leaves(nnx.state(gather_grads))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("dense", [True, False])
def test_a_catalogs_compact_bag_equals_the_mean_of_its_token_rows(monkeypatch, dense):
  """The bag over the catalog's own token ids (compact_vocabulary) is, like the full one, the
  mean of each item's non-pad token rows (numpy), with the full bag's table gradient."""
  from mmrec.models import towers
  if not dense:
    monkeypatch.setattr(towers, "DENSE_MAX", 0)
  bag = towers.TokenBag(100, 6, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  tokens = rng.choice(rng.choice(np.arange(1, 100), 12, replace=False), (20, 7))
  tokens[:, 4:] = towers.PAD_ID
  tokens[3] = towers.PAD_ID  # an item with no token
  compact = towers.compact_vocabulary(tokens)
  assert len(compact["bag_vocab"]) <= 12
  table = np.asarray(bag.tokens.embedding[...])
  want = np.stack([table[t[t != towers.PAD_ID]].mean(0) if (t != towers.PAD_ID).any()
                   else np.zeros(6) for t in tokens])
  got = bag(jnp.asarray(compact["bag_tokens"]), jnp.asarray(compact["bag_vocab"]))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(bag(jnp.asarray(tokens)), want, rtol=1e-5, atol=1e-7)
  weights = jnp.asarray(rng.normal(size=(20, 6)), jnp.float32)
  full = nnx.grad(lambda b: (b(jnp.asarray(tokens)) * weights).sum())(bag)
  part = nnx.grad(lambda b: (b(jnp.asarray(compact["bag_tokens"]),
                               jnp.asarray(compact["bag_vocab"])) * weights).sum())(bag)
  np.testing.assert_allclose(part.tokens.embedding[...], full.tokens.embedding[...],
                             rtol=1e-5, atol=1e-7)
