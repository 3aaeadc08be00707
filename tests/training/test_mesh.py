"""Sharded training on 8 simulated CPU devices matches 1 device; parameters are sharded by the rules."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import AbstractMesh, AxisType, PartitionSpec as P

from mmrec.configs import two_tower
from mmrec.training import mesh as mesh_lib

# One train step (fit) on a 1-device mesh and on a data=2, fsdp=2, model=2 mesh of 8
# devices, from the same initial model and batch. The optimizer is plain SGD at learning
# rate 1, so each parameter moves by exactly minus its gradient: Adam would turn float noise
# in a zero gradient (a conv bias before GroupNorm) into a full +-lr step.
SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np, optax
    from flax import nnx
    from mmrec.training import loop
    loop.make_optimizer = lambda cfg: optax.sgd(1.0)
    from mmrec.configs import two_tower
    from mmrec.data.pipeline import UserHistories, profile_batches, training_batches
    from mmrec.training import two_tower as train_lib
    from mmrec.training.objective import two_tower_loss
    cfg = two_tower.get_config("tiny")
    cfg.data.data_dir, workdir, objective = sys.argv[1:4]
    cfg.train.update(steps=1, warmup_steps=0, log_every=1, checkpoint_every=1, objective=objective)
    if objective == "next_item":  # the recipe of mmrec/configs/tpu.py
      two_tower.use_next_item(cfg)
    cfg.model.use_text = True  # the Transformer's attention weights are sharded too
    out = {}
    for name, (d, f, m) in {"one": (1, 1, 1), "sharded": (2, 2, 2)}.items():
      cfg.mesh.update(data=d, fsdp=f, model=m)
      model, data, items = train_lib.prepare(cfg, workdir)
      histories = UserHistories(data.splits["train"], cfg.data.history_len)
      constants = None
      if objective == "profile":
        batches = profile_batches(histories, batch_size=cfg.train.batch_size,
                                  history_len=cfg.data.history_len, holdout=0.2, seed=0)
        constants = train_lib.catalog_features(items)
      else:
        batches = training_batches(histories, items, batch_size=cfg.train.batch_size, seed=0)
      before = {"/".join(map(str, p)): np.asarray(v.get_value()).tolist()
                for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
      log = {}
      loop.fit(model, two_tower_loss(cfg, int(items.warm.sum())), batches, cfg,
               f"{workdir}/{name}", on_log=lambda s, m: log.update(m), constants=constants)
      flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
      out[name] = {"loss": log["loss"], "grad_norm": log["grad_norm"],
                   "before": before,
                   "params": {"/".join(map(str, p)): np.asarray(v.get_value()).tolist()
                              for p, v in flat},
                   "specs": {"/".join(map(str, p)): [str(s) for s in v.get_value().sharding.spec]
                             for p, v in flat},
                   "shard_shapes": {"/".join(map(str, p)):
                                    list(v.get_value().addressable_shards[0].data.shape)
                                    for p, v in flat}}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module", params=["next_item", "profile"])  # the sequence / profile tower
def runs(request, tiny_data_dir, tmp_path_factory):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_data_dir),
                        str(tmp_path_factory.mktemp("parallel")), request.param],
                       env=env, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  return {"objective": request.param, **json.loads(out.stdout.strip().splitlines()[-1])}


def test_sharded_step_matches_one_device(runs):
  one, sharded = runs["one"], runs["sharded"]
  assert sharded["loss"] == pytest.approx(one["loss"], rel=1e-5)
  assert sharded["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
  assert sharded["params"].keys() == one["params"].keys()
  real, total = 0, 0
  for name, before in one["before"].items():
    grad_one = np.subtract(before, one["params"][name])  # SGD at lr 1: the step is -grad
    grad_sharded = np.subtract(before, sharded["params"][name])
    # atol: float32 noise of a gradient that is 0 in exact arithmetic (a conv bias before
    # its GroupNorm) reaches a few 1e-6 on a sharded sum
    np.testing.assert_allclose(grad_sharded, grad_one, rtol=1e-4, atol=1e-5, err_msg=name)
    real, total = real + (np.abs(grad_one) > 1e-6).sum(), total + grad_one.size
  assert real > 0.1 * total, (real, total)  # (embedding rows not in the batch get no gradient)


# Expected (spec, shard shape) on the 2x2x2 mesh, written out from the rules in
# mmrec/configs/two_tower.py (tiny sizes: width 32, 2 heads of 16, mlp 64, embed_dim 32).
ITEM_TOWER = {
    "item_tower/ids/table/embedding": ("('fsdp', 'model')", "None"),
    "item_tower/text/tokens/embedding": ("('fsdp', 'model')", "None"),
    "item_tower/bag/tokens/embedding": ("('fsdp', 'model')", "None"),
    "item_tower/text/encoder/blocks/0/attn/query/kernel": ("fsdp", "model", "None"),
    "item_tower/text/encoder/blocks/0/attn/out/kernel": ("model", "None", "fsdp"),
    "item_tower/image/convs/0/kernel": (),
}
PROFILE_TOWER = {
    "user_tower/prior": (),
    "user_tower/proj/kernel": ("fsdp", "None"),
    # 33 rows (embed_dim + the item-bias coordinate) do not split over fsdp=2: replicated
    "user_tower/from_items/kernel": ("None", "None"),
}
SEQUENCE_TOWER = {  # (the shop's profile tower has no ID rows: model.user.use_ids)
    "user_tower/ids/table/embedding": ("('fsdp', 'model')", "None"),
    "user_tower/encoder/blocks/0/attn/value/kernel": ("fsdp", "model", "None"),
    "user_tower/encoder/blocks/0/mlp_in/kernel": ("fsdp", "model"),
    "user_tower/encoder/blocks/0/mlp_out/kernel": ("model", "fsdp"),
    "user_tower/proj/kernel": ("fsdp", "None"),
    "user_tower/positions": ("None", "fsdp"),
    "user_tower/encoder/norm/scale": (),
}


def test_parameters_are_sharded_as_the_rules_say(runs):
  specs, shapes, params = (runs["sharded"][k] for k in ("specs", "shard_shapes", "params"))
  user = PROFILE_TOWER if runs["objective"] == "profile" else SEQUENCE_TOWER
  for name, spec in {**ITEM_TOWER, **user}.items():
    assert tuple(specs[name]) == spec, name
    full = np.shape(params[name])
    split = [1 if s == "None" else 4 if s.startswith("(") else 2 for s in spec]
    split += [1] * (len(full) - len(split))
    assert tuple(shapes[name]) == tuple(d // k for d, k in zip(full, split)), name
  assert all(not any(s != "None" for s in spec) for spec in runs["one"]["specs"].values())


def abstract_mesh(data, fsdp, model):
  return AbstractMesh((data, fsdp, model), mesh_lib.AXES, axis_types=(AxisType.Auto,) * 3)


def test_optimizer_state_follows_its_parameter_and_indivisible_dims_fall_back(caplog):
  from flax import nnx
  from mmrec.models.towers import TwoTower
  from mmrec.training.optim import make_optimizer
  cfg = two_tower.use_next_item(two_tower.get_config("tiny"))  # the Transformer user tower
  cfg.model.use_text = True

  def create():
    model = TwoTower(cfg.model, num_items=50, vocab_size=120, max_text_len=8, history_len=4,
                     rngs=nnx.Rngs(0))
    return model, nnx.Optimizer(model, make_optimizer(cfg.train), wrt=nnx.Param)

  _, state = nnx.split(nnx.eval_shape(create))
  with caplog.at_level(logging.WARNING, logger="mmrec.training.mesh"):
    shardings = mesh_lib.state_shardings(state, abstract_mesh(1, 2, 4), cfg.sharding)
  by_path = {mesh_lib.path_str(p): s.spec
             for p, s in jax.tree_util.tree_flatten_with_path(shardings)[0]}
  table = "item_tower/ids/table/embedding"  # 100 buckets: 2 (fsdp) divides, 8 (fsdp x model) not
  assert by_path[f"0/{table}"] == P("fsdp", None)
  mu = [p for p in by_path if p.endswith(table) and "/mu/" in p]
  assert mu and all(by_path[p] == by_path[f"0/{table}"] for p in mu)
  # 2 heads on model=4: the heads dim falls back to replication, with a warning.
  assert by_path["0/user_tower/encoder/blocks/0/attn/query/kernel"] == P("fsdp", None, None)
  assert "fell back to replication" in caplog.text
  assert all(s == P() for p, s in by_path.items() if p.endswith("count"))


def test_mesh_shapes_and_old_configs():
  old = ml_collections.ConfigDict({"data": -1})  # configs from before fsdp/model existed
  assert mesh_lib.mesh_shape(old, 8) == (8, 1, 1)
  assert mesh_lib.mesh_shape(ml_collections.ConfigDict({"data": 2, "fsdp": -1, "model": 2}), 8) \
      == (2, 2, 2)
  with pytest.raises(ValueError, match="only one"):
    mesh_lib.mesh_shape(ml_collections.ConfigDict({"data": -1, "fsdp": -1}), 8)
  with pytest.raises(ValueError, match="does not divide"):
    mesh_lib.mesh_shape(ml_collections.ConfigDict({"data": 3}), 8)
  mesh = mesh_lib.make_mesh(old)
  assert mesh.axis_names == mesh_lib.AXES and mesh.devices.size == jax.device_count()


def test_rule_of_wrong_rank_names_the_rule():
  rules = ml_collections.ConfigDict({"param_rules": ((r"kernel$", ("embed",)),),
                                     "logical_rules": (("embed", "fsdp"),)})
  with pytest.raises(ValueError, match="kernel"):
    mesh_lib.state_shardings({"a": {"kernel": jax.ShapeDtypeStruct((4, 4), np.float32)}},
                             abstract_mesh(1, 2, 1), rules)


def tiny_step_setup(**train):
  """A tiny two-tower with plain SGD (so updates are linear in the gradient), a random batch."""
  import optax
  from flax import nnx
  from mmrec.models.towers import TwoTower
  from mmrec.training.objective import two_tower_loss
  cfg = two_tower.use_next_item(two_tower.get_config("tiny"))  # a batch of (history, item)
  cfg.model.update(id_dropout=0.0, use_text=True)
  cfg.train.update(train)
  b, h, length, n = 16, 4, 8, 40
  model = TwoTower(cfg.model, num_items=n, vocab_size=100, max_text_len=length, history_len=h,
                   rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  batch = {"history": rng.integers(0, n, (b, h), dtype=np.int32),
           "history_mask": rng.random((b, h)) < 0.7, "item": rng.permutation(n)[:b].astype(np.int32),
           "tokens": rng.integers(1, 100, (b, length), dtype=np.int32),
           "image": rng.integers(0, 255, (b, 16, 16, 3), dtype=np.uint8),
           "warm": np.ones(b, bool), "log_q": np.full(b, -3.0, np.float32)}
  optimizer = nnx.Optimizer(model, optax.sgd(0.5), wrt=nnx.Param)
  return cfg, model, optimizer, batch, two_tower_loss(cfg)


def run_step(cfg, model, optimizer, batch, loss_fn):
  from flax import nnx
  from mmrec.training.step import make_train_step
  mesh = mesh_lib.make_mesh(ml_collections.ConfigDict({"data": 1}))
  graphdef, state = nnx.split((model, optimizer))
  shardings = mesh_lib.state_shardings(state, mesh, None)
  step = make_train_step(graphdef, loss_fn, cfg, mesh, shardings)
  key = jax.random.key(0)
  lowered = step.lower(state, batch, key)
  new_state, metrics = lowered.compile()(jax.device_put(state, shardings), batch, key)
  hlo = lowered.as_text()
  params = nnx.state(nnx.merge(graphdef, new_state)[0], nnx.Param)
  return jax.tree.map(np.asarray, nnx.to_pure_dict(params)), metrics, hlo


def test_grad_accumulation_averages_the_micro_batch_gradients():
  from flax import nnx
  cfg, model, optimizer, batch, loss_fn = tiny_step_setup(grad_accum_steps=2)
  before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  grad_fn = nnx.jit(nnx.grad(lambda m, mb: loss_fn(m, mb, jax.random.key(0))[0]))
  grads = [grad_fn(model, {k: v[j::2] for k, v in batch.items()}) for j in range(2)]
  mean = jax.tree.map(lambda a, b: (np.asarray(a) + np.asarray(b)) / 2,
                      *(nnx.to_pure_dict(g) for g in grads))
  expected = jax.tree.map(lambda p, g: p - 0.5 * g, before, mean)
  loss_of = nnx.jit(lambda m, b: loss_fn(m, b, jax.random.key(0))[0])
  whole = float(loss_of(model, batch))
  halves = [float(loss_of(model, {k: v[j::2] for k, v in batch.items()})) for j in range(2)]
  params, metrics, _ = run_step(cfg, model, optimizer, batch, loss_fn)  # donates the model's arrays
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), params, expected)
  assert float(metrics["loss"]) == pytest.approx(np.mean(halves), rel=1e-5)
  assert float(metrics["loss"]) != pytest.approx(whole, rel=1e-3)  # fewer in-batch negatives


def test_bfloat16_compute_keeps_float32_master_weights():
  from flax import nnx
  cfg32, model, optimizer, batch, loss_fn = tiny_step_setup()
  before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  p32, m32, hlo32 = run_step(cfg32, model, optimizer, batch, loss_fn)
  cfg16, model, optimizer, batch, loss_fn = tiny_step_setup(compute_dtype="bfloat16")
  p16, m16, hlo16 = run_step(cfg16, model, optimizer, batch, loss_fn)
  assert "bf16" in hlo16 and "bf16" not in hlo32
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(p16))
  assert float(m16["loss"]) == pytest.approx(float(m32["loss"]), rel=2e-2)
  assert float(m16["grad_norm"]) == pytest.approx(float(m32["grad_norm"]), rel=5e-2)
  norm = lambda tree: np.sqrt(sum(float((x ** 2).sum()) for x in jax.tree.leaves(tree)))
  u32 = jax.tree.map(np.subtract, p32, before)
  u16 = jax.tree.map(np.subtract, p16, before)
  # bf16 rounding moves the update a little, no more
  assert 0 < norm(jax.tree.map(np.subtract, u16, u32)) < 0.05 * norm(u32)
