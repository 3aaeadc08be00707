"""Early stopping keeps, returns and restores the step with the best validation metric,
and logs each validation to TensorBoard beside the training scalars."""

import json

import numpy as np
from flax import nnx

from mmrec.training import two_tower as train_lib
from mmrec.training.scalar_log import read_scalars


def params_of(model):
  return {"/".join(map(str, p)): np.array(v.get_value())
          for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_early_stopping_keeps_the_best_step(tiny_config, tmp_path):
  cfg = tiny_config
  cfg.train.update(steps=100, validate_every=10, patience=3, keep_checkpoints=1)
  values = iter([0.10, 0.30, 0.20, 0.25, 0.28, 0.9, 0.9])  # best at step 20, then 3 worse
  seen = {}

  def validate(model, data, items):
    step = 10 * (len(seen) + 1)
    seen[step] = params_of(model)
    return next(values)

  trained = train_lib.train(cfg, tmp_path, validate=validate)
  assert sorted(seen) == [10, 20, 30, 40, 50]  # stopped after 3 validations without a new best
  assert trained.step == 20
  assert json.loads((tmp_path / "best.json").read_text())["step"] == 20
  logged = read_scalars(tmp_path / "tb", "valid/recall@20")
  np.testing.assert_allclose([logged[s] for s in sorted(logged)], [0.10, 0.30, 0.20, 0.25, 0.28])
  assert sorted(logged) == sorted(seen) and read_scalars(tmp_path / "tb", "train/loss")
  for name, value in params_of(trained.model).items():
    np.testing.assert_array_equal(value, seen[20][name], err_msg=name)
  restored = train_lib.restore(tmp_path, cfg)  # evaluate, export and recommend read this one
  assert restored.step == 20
  for name, value in params_of(restored.model).items():
    np.testing.assert_array_equal(value, seen[20][name], err_msg=name)
  assert any(not np.array_equal(seen[50][n], seen[20][n]) for n in seen[20])  # it did train on
