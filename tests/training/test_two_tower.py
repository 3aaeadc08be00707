"""Training on the tiny shop: the loss falls, and a resumed run continues identically."""

import jax
import numpy as np
import pytest
from flax import nnx

from mmrec.configs import two_tower
from mmrec.data.pipeline import UserHistories, profile_batches, training_batches
from mmrec.training import two_tower as train_lib
from mmrec.training.objective import two_tower_loss
from mmrec.training.optim import make_optimizer


@pytest.mark.parametrize("objective", ["profile", "next_item"])
def test_training_lowers_the_loss_on_a_fixed_batch(tiny_config, tmp_path, objective):
  cfg = tiny_config
  cfg.train.steps = 120  # one exact ID row per item learns more slowly than two hashed rows
  if objective == "next_item":  # the recipe of mmrec/configs/tpu.py
    two_tower.use_next_item(cfg).train.learning_rate = 3e-3
  model, data, items = train_lib.prepare(cfg, tmp_path)
  histories = UserHistories(data.splits["train"], cfg.data.history_len)
  if objective == "profile":
    batch = profile_batches(histories, batch_size=cfg.train.batch_size,
                            history_len=cfg.data.history_len, holdout=cfg.train.holdout, seed=123)[0]
    batch["catalog"] = train_lib.catalog_features(items)
  else:
    batch = training_batches(histories, items, batch_size=cfg.train.batch_size, seed=123)[0]
  loss_fn = two_tower_loss(cfg, int(items.warm.sum()))
  key = jax.random.key(0)
  before = float(loss_fn(model, batch, key)[0])
  trained = train_lib.train(cfg, tmp_path)
  after = float(loss_fn(trained.model, batch, key)[0])
  assert after < before - 0.2, (before, after)


def params(model):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


class Interrupt(Exception):
  pass


def test_resume_from_checkpoint_continues_identically(tiny_config, tmp_path):
  cfg = tiny_config
  cfg.train.steps = 40
  straight_log = {}
  straight = train_lib.train(cfg, tmp_path / "straight", on_log=straight_log.__setitem__)

  def stop_at_20(step, _):
    if step == 20:
      raise Interrupt

  with pytest.raises(Interrupt):
    train_lib.train(cfg, tmp_path / "resumed", on_log=stop_at_20)
  resumed_log = {}
  resumed = train_lib.train(cfg, tmp_path / "resumed", on_log=resumed_log.__setitem__)

  assert sorted(resumed_log) == [30, 40]  # it restarted from the step-20 checkpoint
  for step in (30, 40):
    assert resumed_log[step]["loss"] == pytest.approx(straight_log[step]["loss"], abs=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               params(straight.model), params(resumed.model))

  restored = train_lib.restore(tmp_path / "resumed", cfg)
  assert restored.step == 40
  jax.tree.map(np.testing.assert_array_equal, params(resumed.model), params(restored.model))


def test_frozen_encoder_never_moves_and_its_cached_features_are_exact(tiny_config, tmp_path):
  cfg = tiny_config
  cfg.train.steps, cfg.train.frozen_encoders = 20, ("text",)
  cfg.model.use_text = True
  initial, _, _ = train_lib.prepare(cfg, tmp_path)
  trained = train_lib.train(cfg, tmp_path)
  before, after = params(initial.item_tower), params(trained.model.item_tower)
  jax.tree.map(np.testing.assert_array_equal, before["text"], after["text"])
  for part in ("text_proj", "image", "ids"):  # everything else trains
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, before[part], after[part]))), part
  # The cache is the encoder's own output, and item embeddings read from it equal the
  # embeddings computed by running the encoder.
  tower, items = trained.model.item_tower, trained.items
  np.testing.assert_allclose(items.encoded["text_features"], np.asarray(tower.text(items.tokens)),
                             atol=1e-5)
  everything = np.arange(len(items.warm))
  uncached = {k: v for k, v in items.features(everything).items() if k != "text_features"}
  np.testing.assert_allclose(trained.model.embed_catalog(items.features(everything)),
                             trained.model.embed_catalog(uncached), atol=1e-5)
  # Frozen features are standardised over the catalog (numpy): zero mean, and a norm of 1
  # on average; the restored model keeps the trained run's statistics.
  x = items.encoded["text_features"].astype(np.float64)
  z = np.asarray(tower.standardized("text", items.encoded["text_features"]), np.float64)
  std = np.maximum(x.std(0), 1e-2 * x.std(0).mean())
  np.testing.assert_allclose(z, (x - x.mean(0)) / (std * np.sqrt(x.shape[1])),
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
  assert (z ** 2).sum(1).mean() <= 1.0 + 1e-3  # 1 unless a floored dimension is in it
  restored = train_lib.restore(tmp_path, cfg)
  np.testing.assert_array_equal(restored.items.encoded["text_features"],
                                items.encoded["text_features"])
  np.testing.assert_array_equal(restored.model.item_tower.text_stats[...], tower.text_stats[...])
  np.testing.assert_array_equal(initial.item_tower.image_stats[...][1], 1.0)  # trained: identity
  np.testing.assert_array_equal(tower.image_stats[...][1], 1.0)


def test_unknown_frozen_encoder_is_named(tiny_config, tmp_path):
  tiny_config.train.frozen_encoders = ("txt",)
  with pytest.raises(ValueError, match=r"frozen_encoders: unknown \['txt'\]"):
    make_optimizer(tiny_config.train)
