"""Self-supervised pretraining on the tiny shop: masking, the loss falls, resume, self-describing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmrec.configs import pretrain as pretrain_configs
from mmrec.data.tokenizer import Tokenizer
from mmrec.training import pretrain


def test_mask_tokens_follows_bert_proportions():
  rng = np.random.default_rng(0)
  tokens = rng.integers(5, 100, (400, 50)).astype(np.int32)
  tokens[:, 0] = 2  # [CLS]
  tokens[:, 40:] = 0  # [PAD]
  inputs, weights = pretrain.mask_tokens(jax.random.key(0), jnp.asarray(tokens), mask_id=4,
                                         special_ids=(0, 1, 2, 3, 4), vocab_size=100, rate=0.15)
  inputs, chosen = np.asarray(inputs), np.asarray(weights) > 0
  assert not chosen[:, 0].any() and not chosen[:, 40:].any()  # specials are never predicted
  assert np.array_equal(inputs[~chosen], tokens[~chosen])  # the rest is untouched
  assert abs(chosen[:, 1:40].mean() - 0.15) < 0.01
  masked = inputs[chosen] == 4
  kept = inputs[chosen] == tokens[chosen]
  replaced = ~masked & ~kept
  assert abs(masked.mean() - 0.8) < 0.03
  assert abs(replaced.mean() - 0.1) < 0.03
  assert abs(kept.mean() - 0.1) < 0.03  # (a random draw may equal the original: ~1% more)
  assert inputs[chosen][replaced].min() >= 5  # random replacements are never special


def small_pretrain_config(data_dir, objective="all"):
  cfg = pretrain_configs.get_config(f"tiny,{objective}")
  cfg.data.data_dir = str(data_dir)
  cfg.data.image_size = 24  # decoded smaller than stored: a cheaper test
  cfg.data.max_text_len = 16
  cfg.train.batch_size = 16
  cfg.train.learning_rate = 1e-2
  cfg.train.warmup_steps = 2
  cfg.train.log_every = 4
  cfg.train.checkpoint_every = 4
  cfg.pretrain.projection_dim = 16
  return cfg


@pytest.fixture(scope="module")
def pretrained(tiny_data_dir, tmp_path_factory):
  """A tiny run with all three objectives: 4 steps, then resumed to 8."""
  workdir = tmp_path_factory.mktemp("pretrain")
  cfg = small_pretrain_config(tiny_data_dir)
  cfg.train.steps = 4
  first = pretrain.pretrain(cfg, workdir)
  batch = pretrain.item_batches(first.items, batch_size=16, seed=99)[0]
  loss_fn = nnx.jit(pretrain.pretrain_loss(cfg, Tokenizer.load(first.data.tokenizer_path)))
  before = loss_fn(pretrain.PretrainModel(cfg, rngs=nnx.Rngs(cfg.seed)), batch, jax.random.key(7))
  cfg.train.steps = 8
  logs = {}
  second = pretrain.pretrain(cfg, workdir, on_log=logs.__setitem__)
  after = loss_fn(second.model, batch, jax.random.key(7))
  return dict(workdir=workdir, cfg=cfg, before=before, after=after, logs=logs, run=second)


def test_pretraining_lowers_every_objective(pretrained):
  (before, m0), (after, m1) = pretrained["before"], pretrained["after"]
  assert float(after) < float(before) - 0.5, (float(before), float(after))
  for objective in pretrain.OBJECTIVES:
    assert float(m1[f"{objective}/loss"]) < float(m0[f"{objective}/loss"]), objective


def test_pretraining_resumes_and_is_self_describing(pretrained):
  workdir = pretrained["workdir"]
  assert sorted(pretrained["logs"]) == [8]  # the second call continued from step 4
  assert pretrained["run"].step == 8
  for name in ("config.json", "tokenizer.json"):
    assert (workdir / name).exists()
  assert Tokenizer.load(workdir / "tokenizer.json").vocab_size > 5
  model, config, step = pretrain.restore(workdir)
  assert step == 8 and config.name == "pretrain_all"
  for part in ("text", "image"):
    a = jax.tree.leaves(nnx.state(getattr(model, part)))
    b = jax.tree.leaves(nnx.state(getattr(pretrained["run"].model, part)))
    for x, y in zip(a, b):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_objective_configs_build_only_the_encoders_they_train(tiny_data_dir):
  text_only = pretrain.PretrainModel(small_pretrain_config(tiny_data_dir, "text_mlm"),
                                     rngs=nnx.Rngs(0))
  assert text_only.text is not None and text_only.image is None
  image_only = pretrain.PretrainModel(small_pretrain_config(tiny_data_dir, "image_contrastive"),
                                      rngs=nnx.Rngs(0))
  assert image_only.text is None and image_only.image is not None
  cfg = small_pretrain_config(tiny_data_dir)
  cfg.pretrain.weights = dict(text_mlm=0.0, image_contrastive=0.0, image_text=0.0)
  with pytest.raises(ValueError, match="at least one objective"):
    pretrain.PretrainModel(cfg, rngs=nnx.Rngs(0))


def two_tower_config(pretrained):
  from mmrec.configs import two_tower
  cfg = two_tower.get_config("tiny")
  cfg.data.data_dir = pretrained["cfg"].data.data_dir
  cfg.data.max_text_len = pretrained["cfg"].data.max_text_len
  cfg.model.warm_start.checkpoint = str(pretrained["workdir"])
  cfg.model.use_text, cfg.train.frozen_encoders = True, ()  # both encoders warm-started, trained
  return cfg


def param_arrays(module):
  return {k: np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def test_warm_start_copies_the_pretrained_encoders_exactly(pretrained, tmp_path):
  from mmrec.training import two_tower as train_lib
  from mmrec.training.optim import param_labels
  model, _, _ = train_lib.prepare(two_tower_config(pretrained), tmp_path)
  source, _, _ = pretrain.restore(pretrained["workdir"])
  for part in ("text", "image"):
    ours, theirs = param_arrays(getattr(model.item_tower, part)), param_arrays(getattr(source, part))
    assert ours.keys() == theirs.keys()
    for k in ours:
      np.testing.assert_array_equal(ours[k], theirs[k])
  # The optimizer's encoder group is exactly the item tower's text and image encoders.
  labels = dict(nnx.to_flat_state(param_labels(nnx.state(model, nnx.Param))))
  for path, label in labels.items():
    assert (label == "encoder") == (path[:2] in (("item_tower", "text"), ("item_tower", "image")))
  fresh, _, _ = train_lib.prepare(two_tower_config(pretrained), tmp_path, warm_start=False)
  assert not np.array_equal(param_arrays(fresh.item_tower.text)[("tokens", "embedding")],
                            param_arrays(model.item_tower.text)[("tokens", "embedding")])


def test_warm_start_names_what_does_not_fit(pretrained, tmp_path):
  from mmrec.training import two_tower as train_lib
  cfg = two_tower_config(pretrained)
  cfg.data.max_text_len = 24  # the pretrained position table has 16 rows
  with pytest.raises(ValueError, match="positions"):
    train_lib.prepare(cfg, tmp_path)
  cfg = two_tower_config(pretrained)
  cfg.model.warm_start.checkpoint = str(tmp_path)
  with pytest.raises(FileNotFoundError, match="not a pretraining workdir"):
    train_lib.prepare(cfg, tmp_path)


class EncoderAndHead(nnx.Module):
  def __init__(self):
    self.text = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    self.head = nnx.Linear(3, 2, rngs=nnx.Rngs(0))  # the same initial values


def test_frozen_encoders_stay_equal_for_n_steps_then_train():
  from mmrec.configs import two_tower
  from mmrec.training.optim import make_optimizer
  cfg = two_tower.get_config("tiny").train
  cfg.freeze_encoders_steps, cfg.warmup_steps, cfg.steps = 2, 1, 10
  model = EncoderAndHead()
  optimizer = nnx.Optimizer(model, make_optimizer(cfg), wrt=nnx.Param)
  grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
  start = param_arrays(model)
  for step in range(1, 5):
    optimizer.update(model, grads)
    now = param_arrays(model)
    for k in start:
      changed = not np.array_equal(now[k], start[k])
      # Each group's schedule warms up from a learning rate of 0 at its first step:
      # step 1 for the head, step 3 (after the 2 frozen ones) for the encoder.
      assert changed == (step >= (4 if k[0] == "text" else 2)), (step, k)


def test_frozen_encoders_get_no_update_and_no_optimizer_state():
  from mmrec.configs import two_tower
  from mmrec.training.optim import make_optimizer
  cfg = two_tower.get_config("tiny").train
  cfg.frozen_encoders, cfg.weight_decay, cfg.warmup_steps = ("text",), 0.1, 1
  model = EncoderAndHead()
  optimizer = nnx.Optimizer(model, make_optimizer(cfg), wrt=nnx.Param)
  start = param_arrays(model)
  for _ in range(3):
    optimizer.update(model, jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param)))
  now = param_arrays(model)
  for k in start:
    assert np.array_equal(now[k], start[k]) == (k[0] == "text"), k
  # AdamW's two moments for the head's 8 parameters, none for the frozen encoder's
  moments = [x for x in jax.tree.leaves(nnx.state(optimizer, nnx.OptState)) if x.size > 1]
  assert sum(x.size for x in moments) == 2 * 8


def test_encoder_learning_rate_scale():
  from mmrec.configs import two_tower
  from mmrec.training.optim import make_optimizer

  cfg = two_tower.get_config("tiny").train
  cfg.encoder_lr_scale, cfg.weight_decay, cfg.warmup_steps, cfg.steps = 0.1, 0.0, 1, 10
  cfg.learning_rate, cfg.frozen_encoders = 3e-3, ()
  model = EncoderAndHead()
  optimizer = nnx.Optimizer(model, make_optimizer(cfg), wrt=nnx.Param)
  before = param_arrays(model)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), nnx.state(model, nnx.Param))
  for _ in range(3):
    optimizer.update(model, grads)
  after = param_arrays(model)
  for leaf in ("kernel", "bias"):
    moved_text = after[("text", leaf)] - before[("text", leaf)]
    moved_head = after[("head", leaf)] - before[("head", leaf)]
    np.testing.assert_allclose(moved_text, 0.1 * moved_head, rtol=1e-4)
    assert np.abs(moved_head).min() > 0
