"""The same training on 1 CPU device and on 8 simulated CPU devices (data-parallel mesh)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from flax import nnx
    from mmrec import train
    from mmrec.configs import two_tower
    cfg = two_tower.get_config("tiny")
    cfg.data.data_dir, workdir = sys.argv[1], sys.argv[2]
    cfg.train.steps, cfg.train.log_every = 12, 4
    log = {}
    trained = train.train(cfg, workdir, on_log=lambda s, m: log.__setitem__(s, m["loss"]))
    leaves = jax.tree.leaves(nnx.to_pure_dict(nnx.state(trained.model, nnx.Param)))
    print(json.dumps({"devices": jax.device_count(), "loss": log,
                      "param_sum": float(sum(np.abs(np.asarray(x)).sum() for x in leaves))}))
""")


def run(tmp_path, devices):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "data"),
                        str(tmp_path / f"run{devices}")],
                       env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_eight_devices_match_one(tmp_path):
  one, eight = run(tmp_path, 1), run(tmp_path, 8)
  assert (one["devices"], eight["devices"]) == (1, 8)
  for step in one["loss"]:
    np.testing.assert_allclose(eight["loss"][step], one["loss"][step], rtol=1e-4)
  np.testing.assert_allclose(eight["param_sum"], one["param_sum"], rtol=1e-4)
