"""Train-step throughput and MFU of the two-tower on whatever accelerator JAX finds.

  .venv/bin/python benchmarks/gpu_benchmark.py [--size base] [--batch 4096] [--seconds 60]

On a GPU: bf16 compute, the `base` towers (mmrec/configs/tpu.py), random
batches (no dataset), the real train step (mmrec.training.step) over all local
GPUs (fsdp mesh). It times steps for at most `--seconds` after compiling and
writes benchmarks/results/gpu_benchmark.json. On a CPU it runs the `tiny`
towers for a few steps and says so: the numbers then only show that it runs.
MFU = XLA's FLOPs count of one step / (step time x peak bf16 FLOP/s of the device).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import ml_collections
import numpy as np
from flax import nnx

from mmrec.configs import tpu
from mmrec.models.towers import TwoTower
from mmrec.training import mesh as mesh_lib
from mmrec.training.objective import two_tower_loss
from mmrec.training.optim import make_optimizer
from mmrec.training.step import make_train_step

# Dense bf16 peak FLOP/s per device (vendor datasheets, without sparsity).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}
RESULT = pathlib.Path(__file__).parent / "results" / "gpu_benchmark.json"


def peak_flops(device) -> float | None:
  return next((v for k, v in PEAK_BF16.items() if k in device.device_kind), None)


def random_batch(config: ml_collections.ConfigDict, num_items: int, seed: int) -> dict:
  rng = np.random.default_rng(seed)
  b, d = config.train.batch_size, config.data
  return {"history": rng.integers(0, num_items, (b, d.history_len), dtype=np.int32),
          "history_mask": rng.random((b, d.history_len)) < 0.8,
          "item": rng.integers(0, num_items, b, dtype=np.int32),
          "tokens": rng.integers(1, d.vocab_size, (b, d.max_text_len), dtype=np.int32),
          "image": rng.integers(0, 256, (b, d.image_size, d.image_size, 3), dtype=np.uint8),
          "warm": rng.random(b) < 0.9, "log_q": np.full(b, -np.log(num_items), np.float32),
          "example": np.arange(b, dtype=np.int32)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", default=None, help="tower size (default: base on GPU, tiny on CPU)")
  parser.add_argument("--batch", type=int, default=None)
  parser.add_argument("--seconds", type=float, default=60.0)
  parser.add_argument("--out", default=str(RESULT))
  args = parser.parse_args()
  device = jax.devices()[0]
  on_cpu = device.platform == "cpu"
  size = args.size or ("tiny" if on_cpu else "base")
  config = tpu.base_config(size=size, chip="v5e", topology="")  # chip only names a TPU; unused
  config.train.batch_size = args.batch or (256 if on_cpu else 4096)
  config.train.compute_dtype = "float32" if on_cpu else "bfloat16"
  config.mesh.update(data=1, fsdp=-1, model=1)
  num_items = config.compile.num_items
  mesh = mesh_lib.make_mesh(config.mesh)

  model = TwoTower(config.model, num_items=num_items, vocab_size=config.data.vocab_size,
                   max_text_len=config.data.max_text_len, history_len=config.data.history_len,
                   rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, make_optimizer(config.train), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  shardings = mesh_lib.state_shardings(state, mesh, config.sharding)
  state = jax.device_put(state, shardings)
  del model, optimizer
  step = make_train_step(graphdef, two_tower_loss(config), config, mesh, shardings)
  batches = [mesh_lib.shard_batch(random_batch(config, num_items, s), mesh) for s in range(4)]
  key = jax.random.key(0)

  start = time.perf_counter()
  compiled = step.lower(state, batches[0], key).compile()
  compile_seconds = time.perf_counter() - start
  cost = compiled.cost_analysis()
  flops = float((cost[0] if isinstance(cost, (list, tuple)) else cost).get("flops", 0.0))
  for s in range(3):  # warm-up
    state, metrics = compiled(state, batches[s % 4], jax.random.fold_in(key, s))
  jax.block_until_ready(metrics)
  steps, start = 0, time.perf_counter()
  max_steps = 10 if on_cpu else 10_000
  while steps < max_steps and time.perf_counter() - start < args.seconds:
    state, metrics = compiled(state, batches[steps % 4], jax.random.fold_in(key, steps))
    steps += 1
    if steps % 10 == 0:
      jax.block_until_ready(metrics)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - start) / steps
  peak = peak_flops(device)
  n = len(mesh.devices.flat)
  result = {
      "platform": device.platform, "device_kind": device.device_kind, "devices": n,
      "size": size, "compute_dtype": config.train.compute_dtype,
      "batch_size": config.train.batch_size, "compile_seconds": round(compile_seconds, 1),
      "steps_timed": steps, "steps_per_sec": 1 / seconds,
      "examples_per_sec": config.train.batch_size / seconds,
      "flops_per_step_per_device": flops, "peak_bf16_flops": peak,
      "mfu": flops / (seconds * peak) if peak and not on_cpu else None,
      "loss": float(metrics["loss"]),
      "note": ("CPU: tiny towers, float32, a few steps; not a speed measurement" if on_cpu
               else "random batches; MFU from XLA's FLOPs count of the whole step"),
  }
  print(json.dumps(result, indent=2))
  pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
