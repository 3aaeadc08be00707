"""Ahead-of-time compilation of the real train step for a TPU topology (libtpu, on CPU)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The smallest TPU config (v4-8: 4 chips) with tiny towers. Besides XLA's report, the script
# sums, from the shardings alone, the bytes of state and batch that each chip must hold.
SCRIPT = textwrap.dedent("""
    import dataclasses, importlib.util, json, sys
    import jax, numpy as np
    jax.config.update("jax_platforms", "cpu")
    from mmrec.training import compile as aot, mesh as mesh_lib
    spec = importlib.util.spec_from_file_location("cfg", "tpu_configs/v4_8.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("tiny")
    config.train.batch_size = 512
    compiled, report = aot.compile_train_step(config, "v4_8:tiny")
    mesh = mesh_lib.make_mesh(config.mesh, aot.topology_devices(config.tpu))
    _, state, shardings, _ = aot.abstract_state(config, mesh)
    inputs = jax.tree.leaves(state) + list(aot.abstract_batch(config, mesh).values())
    per_chip = sum(int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize for x in inputs)
    total = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in inputs)
    mem = compiled.memory_analysis()
    print("REPORT " + json.dumps({**dataclasses.asdict(report), "inputs_per_chip": per_chip,
                                  "inputs_total": total,
                                  "argument_bytes": mem.argument_size_in_bytes,
                                  "alias_bytes": mem.alias_size_in_bytes}))
""")


@pytest.fixture(scope="module")
def report():
  pytest.importorskip("libtpu", reason="libtpu (the `tpu` extra) compiles for TPU topologies")
  env = dict(os.environ, JAX_PLATFORMS="cpu", ALLOW_MULTIPLE_LIBTPU_LOAD="1")
  out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  line = next(l for l in out.stdout.splitlines() if l.startswith("REPORT "))
  return json.loads(line[len("REPORT "):])


def test_train_step_compiles_for_a_tpu_topology(report):
  assert report["chips"] == 4 and report["mesh"] == {"data": 1, "fsdp": 4, "model": 1}
  # The compiled step takes the sharded state and batch as arguments (plus TPU tile padding),
  # far less than the whole state: the item-ID tables and optimizer state are split 4 ways.
  assert report["inputs_per_chip"] <= report["argument_bytes"] <= 1.25 * report["inputs_per_chip"]
  assert report["argument_bytes"] < 0.5 * report["inputs_total"]
  assert report["alias_bytes"] > 0.9 * report["argument_bytes"] - 512 * 1024  # state donated
  assert report["argument_bytes"] / 2**30 <= report["memory_gib"] < report["hbm_gib"]
  assert report["flops"] > 0 and report["step_seconds"] > 0
  peak = 275e12  # v4 bf16
  assert report["mfu"] == pytest.approx(report["flops"] / (report["step_seconds"] * peak))


@pytest.mark.parametrize("objective", ["next_item", "profile"])
@pytest.mark.parametrize("frozen", [(), ("text", "image")])
def test_abstract_batch_matches_the_pipeline(tiny_config, frozen, objective, tmp_path):
  from jax.sharding import AbstractMesh, AxisType
  from mmrec.data.pipeline import UserHistories, profile_batches, training_batches
  from mmrec.training import compile as aot, mesh as mesh_lib
  from mmrec.training import two_tower as train_lib
  tiny_config.train.frozen_encoders = frozen
  tiny_config.train.objective = objective
  model, data, items = train_lib.prepare(tiny_config, tmp_path)
  items = train_lib.with_frozen_features(model, items, tiny_config.train)
  histories = UserHistories(data.splits["train"], tiny_config.data.history_len)
  b = tiny_config.train.batch_size
  if objective == "profile":
    real = profile_batches(histories, batch_size=b, history_len=tiny_config.data.history_len,
                           holdout=0.2, seed=0)[0]
    real["catalog"] = train_lib.catalog_features(items)
    tiny_config.compile = dict(num_items=data.num_items)
  else:
    real = training_batches(histories, items, batch_size=b, seed=0)[0]
  mesh = AbstractMesh((1, 1, 1), mesh_lib.AXES, axis_types=(AxisType.Auto,) * 3)
  abstract = aot.abstract_batch(tiny_config, mesh)
  flat = lambda tree: {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}
  abstract, real = flat(abstract), flat(real)
  assert abstract.keys() == real.keys()
  for k, v in real.items():
    if k.endswith("['bag_vocab']"):  # the ids this catalog uses; compiled for all of them
      assert v.shape[0] <= abstract[k].shape[0] == tiny_config.data.vocab_size, k
      assert abstract[k].dtype == v.dtype, k
      continue
    assert (abstract[k].shape, abstract[k].dtype) == (v.shape, jax.numpy.dtype(v.dtype)), k


def test_every_tpu_config_loads_with_a_consistent_mesh():
  import importlib.util
  from mmrec.configs import tpu
  for path in sorted((ROOT / "tpu_configs").glob("*.py")):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "COMMAND: tools/tpu_launch.sh" in module.__doc__, path
    c = module.get_config()
    chips = c.mesh.data * c.mesh.fsdp * c.mesh.model
    name = c.tpu.topology.split(":")[1]
    topology_chips = int(np.prod([int(x) for x in name.split("x")])) * c.tpu.num_slices
    assert chips == topology_chips, path
    assert c.train.batch_size % (c.mesh.data * c.mesh.fsdp) == 0, path
    assert c.tpu.hbm_gib == tpu.CHIPS[c.tpu.chip]["hbm_gib"]
