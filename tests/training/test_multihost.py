"""2 processes x 2 CPU devices (jax.distributed on localhost) train like 1 process x 4 devices.

Each process reads only its shard of the training rows; the 1-process reference
is fed, at every step, the two processes' local batches one after the other
(the global batch they assemble). Parameters, losses and checkpoints must agree,
and no example may be read by both processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

STEPS, LOCAL_BATCH = 3, 32

SCRIPT = textwrap.dedent("""
    import json, sys
    from mmrec.training import distributed
    multi = distributed.initialize_from_env()
    import grain, jax, numpy as np
    from flax import nnx
    from mmrec.configs import two_tower
    from mmrec.data.pipeline import UserHistories, training_batches
    from mmrec.training import two_tower as train_lib
    from mmrec.training.loop import Refresh, fit
    from mmrec.training.objective import two_tower_loss
    data_dir, workdir, out, steps, local = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:6])
    cfg = two_tower.use_next_item(two_tower.get_config("tiny"))  # with the item-cache refresh
    cfg.data.data_dir = data_dir
    cfg.mesh.update(data=2, fsdp=2, model=1)
    cfg.train.update(steps=steps, warmup_steps=1, log_every=1, checkpoint_every=2,
                     batch_size=2 * local, cache_refresh_every=2)
    model, data, items = train_lib.prepare(cfg, workdir)
    histories = UserHistories(data.splits["train"], cfg.data.history_len)
    shard = lambda i: training_batches(histories, items, batch_size=local, seed=0,
                                       process_index=i, process_count=2)
    if multi:
      batches = shard(jax.process_index())
    else:  # the global batch of the 2-process run: process 0's rows, then process 1's
      parts = shard(0), shard(1)
      batches = grain.MapDataset.range(steps).map(
          lambda s: {k: np.concatenate([parts[0][s][k], parts[1][s][k]]) for k in parts[0][s]})
    refresh = Refresh(2, train_lib.TwoTower.refresh_item_cache,
                      items.features(np.arange(data.num_items)))
    log = {}
    fit(model, two_tower_loss(cfg), batches, cfg, workdir,
        on_log=lambda s, m: log.__setitem__(s, m["loss"]), refresh=refresh)
    from jax.experimental import multihost_utils
    params = {"/".join(map(str, p)): np.asarray(multihost_utils.process_allgather(v.get_value(),
                                                                                  tiled=True))
              for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    np.savez(out + ".npz", **params)
    examples = [batches[s]["example"].tolist() for s in range(steps)]
    json.dump({"processes": jax.process_count(), "devices": jax.device_count(), "loss": log,
               "examples": examples}, open(out + ".json", "w"))
""")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tiny_data_dir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("multihost")
  port = free_port()
  base = dict(os.environ, JAX_PLATFORMS="cpu")
  for key in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "MMREC_DISTRIBUTED"):
    base.pop(key, None)
  procs = {}
  for i in range(2):
    env = dict(base, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(i))
    procs[f"p{i}"] = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tiny_data_dir), str(tmp / "multi"), str(tmp / f"p{i}"),
         str(STEPS), str(LOCAL_BATCH)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
  env = dict(base, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  procs["single"] = subprocess.Popen(
      [sys.executable, "-c", SCRIPT, str(tiny_data_dir), str(tmp / "single"), str(tmp / "single"),
       str(STEPS), str(LOCAL_BATCH)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  out = {}
  for name, proc in procs.items():
    try:
      _, err = proc.communicate(timeout=900)
    finally:
      proc.kill()
    assert proc.returncode == 0, f"{name}: {err[-3000:]}"
    out[name] = json.loads((tmp / f"{name}.json").read_text())
    out[name]["params"] = dict(np.load(tmp / f"{name}.npz"))
  out["tmp"] = tmp
  return out


def test_two_processes_match_one(runs):
  p0, p1, single = runs["p0"], runs["p1"], runs["single"]
  assert (p0["processes"], p0["devices"], single["processes"], single["devices"]) == (2, 4, 1, 4)
  for step in single["loss"]:
    assert p0["loss"][step] == pytest.approx(single["loss"][step], rel=1e-5)
  assert p0["params"].keys() == single["params"].keys()
  # Where the true gradient is 0 (conv biases before GroupNorm, attention key biases, ...)
  # Adam turns float noise into updates of up to lr per step, which legitimately differ:
  # those are bounded, and all but a few elements must match to float tolerance.
  close = total = 0
  for name in single["params"]:
    diff = np.abs(p0["params"][name] - single["params"][name])
    assert diff.max() <= 2 * 3e-3 * STEPS, name
    close, total = close + (diff <= 1e-5).sum(), total + diff.size
    np.testing.assert_array_equal(p0["params"][name], p1["params"][name], err_msg=name)
  assert close >= 0.995 * total, (close, total)
  # Orbax wrote one checkpoint per save step, shared by both processes.
  assert sorted(p.name for p in (runs["tmp"] / "multi" / "checkpoints").iterdir()
                if p.name.isdigit()) == ["2", "3"]


def test_no_example_read_twice_or_skipped(runs):
  seen = [np.concatenate(runs[p]["examples"]) for p in ("p0", "p1")]
  for i, rows in enumerate(seen):
    assert len(rows) == STEPS * LOCAL_BATCH
    assert len(set(rows.tolist())) == len(rows)  # within a process
    assert np.all(rows % 2 == i)  # its own shard: rows are dealt round-robin
  assert not set(seen[0].tolist()) & set(seen[1].tolist())


def test_an_epoch_over_two_processes_covers_every_row_once(tiny_config):
  from mmrec.data import sources
  from mmrec.data.pipeline import UserHistories, training_batches
  data = sources.load(tiny_config.data, tiny_config.data.data_dir)
  items = sources.item_table(data, tiny_config.data)
  histories = UserHistories(data.splits["train"], tiny_config.data.history_len)
  read = []
  for i in range(2):
    ds = training_batches(histories, items, batch_size=LOCAL_BATCH, seed=0, process_index=i,
                          process_count=2)
    steps = (len(histories) // 2) // LOCAL_BATCH  # one epoch of this process's shard
    read.append(np.concatenate([ds[s]["example"] for s in range(steps)]))
  rows = np.concatenate(read)
  assert len(np.unique(rows)) == len(rows)
  skipped = np.setdiff1d(np.arange(len(histories)), rows)
  assert len(skipped) < 2 * LOCAL_BATCH + 2  # only each shard's last partial batch
  np.testing.assert_array_equal(histories.rows.item[rows[:LOCAL_BATCH]],
                                training_batches(histories, items, batch_size=LOCAL_BATCH, seed=0,
                                                 process_index=0, process_count=2)[0]["item"])
