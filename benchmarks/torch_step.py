"""mmrec's JAX train step against a PyTorch port of the same model, side by side on CPU.

  .venv/bin/python benchmarks/torch_step.py [--rounds 7] [--steps 5] [--compile]

Two setups of today's default recipe (the profile objective: the whole catalog
through the item tower every step, a full softmax over warm items):
- ml100k: mmrec/configs/movielens.py:ml100k sizes, 1,682 items, no image;
- shop_small: mmrec/configs/two_tower.py:small, 5,000 items, cached (frozen) image features.
The batch is synthetic, shaped like each dataset (profile and token lengths near
the real ones), built by the repo's own pipeline.profile_batches; the JAX step is
mmrec.training.step.make_train_step with mmrec.training's loss and optimizer, as `fit`
runs it. The PyTorch side (benchmarks/torch_port.py) starts from the JAX model's
weights; both run the same batch, and the script asserts equal parameter counts
and that a few steps give the same losses. Then A and B are timed in interleaved
rounds in one process (the order alternates), `--steps` steps a round; the
medians and minima of the per-step time go to benchmarks/results/torch_step.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

# PyTorch's OpenMP threads otherwise spin while they wait: on a shared CPU that made its
# steps several times slower (a sort of 65k ints: 245 ms against 5 ms passive).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import torch_port  # noqa: E402  (benchmarks/ is not a package)

from mmrec.configs import movielens, two_tower  # noqa: E402
from mmrec.data.pipeline import UserHistories, profile_batches  # noqa: E402
from mmrec.data.schema import Interactions  # noqa: E402
from mmrec.models.towers import TwoTower, compact_vocabulary  # noqa: E402
from mmrec.training import mesh as mesh_lib  # noqa: E402
from mmrec.training import objective as objective_lib  # noqa: E402
from mmrec.training.optim import make_optimizer  # noqa: E402
from mmrec.training.step import make_train_step  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results"
# Synthetic data shaped like each dataset: ml-100k's train profiles have median 53 and
# mean 86 items, 5% over 256; its texts 8 to 18 tokens (the built dataset); the small
# shop has 3,000 users of ~36 train items and longer texts (title and description).
SETUPS = {
    "ml100k": dict(config=lambda: movielens.get_config("ml100k"), num_items=1682, users=943,
                   profile_median=53, profile_sigma=0.98, min_profile=16, tokens=(8, 18)),
    "shop_small": dict(config=lambda: two_tower.get_config("small"), num_items=5000, users=3000,
                       profile_median=30, profile_sigma=0.6, min_profile=3, tokens=(24, 48),
                       token_ids=1376),  # the ids the small shop's catalog uses, of 4,000
}
AGREE_STEPS = 3
LOSS_TOLERANCE = 1e-4


def synthetic_data(config: ml_collections.ConfigDict, setup: dict, seed: int = 0):
  """(catalog features as catalog_features gives them, the first profile batch)."""
  rng = np.random.default_rng(seed)
  n, d = setup["num_items"], config.data
  popularity = 1.0 / np.arange(1, n + 1) ** 0.8  # Zipf-like item popularity
  popularity = rng.permutation(popularity / popularity.sum())
  lengths = np.clip(rng.lognormal(np.log(setup["profile_median"]), setup["profile_sigma"],
                                  setup["users"]).round().astype(int), setup["min_profile"], n // 2)
  items = [rng.choice(n, k, replace=False, p=popularity) for k in lengths]
  interactions = Interactions(np.repeat(np.arange(setup["users"]), lengths),
                              np.concatenate(items), np.arange(lengths.sum()))
  batch = profile_batches(UserHistories(interactions, d.history_len),
                          batch_size=config.train.batch_size, history_len=d.history_len,
                          holdout=config.train.holdout, seed=seed)[0]
  counts = np.bincount(interactions.item, minlength=n)
  lo, hi = setup["tokens"]
  lens = rng.integers(lo, hi + 1, n)
  ids = rng.choice(np.arange(1, d.vocab_size), setup.get("token_ids", d.vocab_size - 1),
                   replace=False)
  tokens = ids[rng.integers(0, len(ids), (n, d.max_text_len))].astype(np.int32)
  tokens[np.arange(d.max_text_len)[None, :] >= lens[:, None]] = 0  # pad
  catalog = {"item": np.arange(n, dtype=np.int32), "tokens": tokens,
             "image": np.zeros((n, 0), np.uint8), "warm": counts > 0,
             "log_q": np.log(np.maximum(counts, 1) / counts.sum()).astype(np.float32),
             **compact_vocabulary(tokens)}  # as catalog_features adds it
  if config.model.use_image:  # the frozen image encoder's cached outputs (with_frozen_features)
    width = 2 * config.model.image.channels[-1]
    catalog["image_features"] = rng.normal(0, 0.5, (n, width)).astype(np.float32)
  return catalog, batch


class JaxSide:
  """The repo's train step, set up as mmrec.training.loop.fit sets it up."""

  def __init__(self, config: ml_collections.ConfigDict, catalog: dict, batch: dict):
    self.config = config
    n = len(catalog["item"])
    model = TwoTower(config.model, num_items=n, vocab_size=config.data.vocab_size,
                     max_text_len=config.data.max_text_len, history_len=config.data.history_len,
                     rngs=nnx.Rngs(config.seed))
    params = nnx.state(model, nnx.Param)
    self.params = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(params))[0]
    self.params = [(path, np.array(v)) for path, v in self.params]  # copies: state is donated
    self.num_params = sum(v.size for _, v in self.params)
    mesh = mesh_lib.make_mesh(config.mesh)
    optimizer = nnx.Optimizer(model, make_optimizer(config.train), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))
    sharding = mesh_lib.state_shardings(state, mesh, config.get("sharding"))
    self.state = jax.device_put(state, sharding)
    loss = objective_lib.two_tower_loss(config, num_warm=int(catalog["warm"].sum()))
    self.train_step = make_train_step(graphdef, loss, config, mesh, sharding)
    self.batch = mesh_lib.shard_batch(batch, mesh)
    self.batch["catalog"] = jax.device_put(catalog, mesh_lib.replicated(mesh))
    self.key, self.step = jax.random.key(config.seed), 0

  def id_keep(self, step: int, warm: np.ndarray) -> np.ndarray:
    """The ID-dropout mask the loss draws at `step` (train_step passes fit's key on)."""
    key = jax.random.fold_in(self.key, step)
    return np.asarray(objective_lib._id_keep(key, warm, self.config.model.id_dropout))

  def compile(self) -> float:
    start = time.perf_counter()
    self.train_step = self.train_step.lower(self.state, self.batch, self.key).compile()
    return time.perf_counter() - start

  def run(self, steps: int) -> dict:
    for _ in range(steps):
      self.state, metrics = self.train_step(self.state, self.batch,
                                            jax.random.fold_in(self.key, self.step))
      self.step += 1
    return jax.block_until_ready(metrics)


class TorchSide:
  def __init__(self, config, catalog, batch, jax_params, compiled: bool, pool: str):
    self.model = torch_port.TwoTowerLoss(config, len(catalog["item"]), pool=pool)
    torch_port.load_jax_params(self.model, jax_params)
    self.num_params = sum(p.numel() for p in self.model.parameters())
    self.num_trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
    self.step = torch_port.TrainStep(self.model, config)
    if compiled:
      self.step.compile()
    self.catalog, self.batch = torch_port.tensors(catalog), torch_port.tensors(batch)

  def run(self, steps: int, id_keep: np.ndarray | None = None) -> dict:
    keep = None if id_keep is None else torch.from_numpy(id_keep)
    for _ in range(steps):
      metrics = self.step(self.batch, self.catalog, keep)
    return metrics


def check_agreement(jax_side: JaxSide, torch_sides: dict, warm: np.ndarray) -> dict:
  """Losses and gradient norms of the first steps, every side from the same weights and
  with the same ID-dropout masks: the PyTorch steps compute what the JAX step does."""
  rows = []
  for _ in range(AGREE_STEPS):
    keep = jax_side.id_keep(jax_side.step, warm)
    j = jax_side.run(1)
    row = {"step": jax_side.step - 1, "jax_loss": float(j["loss"]),
           "jax_grad_norm": float(j["grad_norm"])}
    for name, side in torch_sides.items():
      t = side.run(1, keep.copy())
      row.update({f"{name}_loss": float(t["loss"]), f"{name}_grad_norm": float(t["grad_norm"])})
    rows.append(row)
  worst = max(abs(r["jax_loss"] - r[f"{n}_loss"]) for r in rows for n in torch_sides)
  if worst > LOSS_TOLERANCE:
    raise AssertionError(f"JAX and PyTorch losses differ by {worst:.2e} > {LOSS_TOLERANCE}: "
                         f"{rows}")
  return {"steps": rows, "max_loss_difference": worst}


def per_step_ms(fn, steps: int) -> float:
  start = time.perf_counter()
  fn(steps)
  return (time.perf_counter() - start) / steps * 1e3


def summary(times: list[float]) -> dict:
  return {"median_ms": round(statistics.median(times), 2), "min_ms": round(min(times), 2),
          "rounds_ms": [round(t, 2) for t in times]}


def measure(name: str, rounds: int, steps: int, compiled: bool) -> dict:
  setup = SETUPS[name]
  config = setup["config"]()
  catalog, batch = synthetic_data(config, setup)
  jax_side = JaxSide(config, catalog, batch)
  compile_s = jax_side.compile()
  sides = {f"torch_eager_{pool}": TorchSide(config, catalog, batch, jax_side.params,
                                            compiled=False, pool=pool)
           for pool in torch_port.ProfileTower.POOLS}
  counts = {k: s.num_params for k, s in sides.items()}
  trainable = next(iter(sides.values())).num_trainable
  print(f"{name}: parameters JAX {jax_side.num_params:,}, PyTorch {counts} "
        f"({trainable:,} trainable)")
  assert all(c == jax_side.num_params for c in counts.values()), (jax_side.num_params, counts)
  agreement = check_agreement(jax_side, sides, catalog["warm"])
  print(f"{name}: losses of {AGREE_STEPS} steps agree to {agreement['max_loss_difference']:.1e}")
  result = {"num_items": len(catalog["item"]), "batch_size": config.train.batch_size,
            "history_len": config.data.history_len, "max_text_len": config.data.max_text_len,
            "embed_dim": config.model.embed_dim, "image_features": config.model.use_image,
            "parameters": jax_side.num_params, "trainable_parameters": trainable,
            "jax_compile_s": round(compile_s, 1), "agreement": agreement}
  if compiled:
    start = time.perf_counter()
    try:
      side = TorchSide(config, catalog, batch, jax_side.params, compiled=True, pool="bag")
      side.run(2)  # torch.compile traces and compiles on the first calls
      sides["torch_compiled_bag"] = side
      result["torch_compile_s"] = round(time.perf_counter() - start, 1)
    except Exception as e:  # noqa: BLE001 (reported; the eager comparison still stands)
      result["torch_compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
      print(f"{name}: torch.compile failed: {result['torch_compile_error']}")
  runners = {"jax": jax_side.run, **{k: s.run for k, s in sides.items()}}
  for run in runners.values():
    run(2)  # warm-up
  times = {k: [] for k in runners}
  for r in range(rounds):
    order = list(runners) if r % 2 == 0 else list(runners)[::-1]
    for k in order:
      times[k].append(per_step_ms(runners[k], steps))
    print(f"{name} round {r + 1}/{rounds}: " +
          ", ".join(f"{k} {times[k][-1]:.1f} ms" for k in runners), flush=True)
  result["step_ms"] = {k: summary(v) for k, v in times.items()}
  jax_ms = result["step_ms"]["jax"]
  result["speedup"] = {k: {"by_median": round(v["median_ms"] / jax_ms["median_ms"], 2),
                           "by_min": round(v["min_ms"] / jax_ms["min_ms"], 2)}
                       for k, v in result["step_ms"].items() if k != "jax"}
  fastest = min(result["speedup"], key=lambda k: result["step_ms"][k]["median_ms"])
  result["speedup_vs_fastest_torch"] = dict(result["speedup"][fastest], torch=fastest)
  return result


def markdown(report: dict) -> str:
  lines = ["# JAX train step vs a PyTorch port of the same model (CPU)", "",
           f"`{report['command']}`", "", f"{report['machine']}. {report['note']}.", "",
           "| setup | items | parameters | step | ms per step (median / min) | "
           "speed-up of JAX (median / min) |", "|---|---|---|---|---|---|"]
  for name, r in report["setups"].items():
    for side, ms in r["step_ms"].items():
      up = r["speedup"].get(side)
      lines.append(f"| {name} | {r['num_items']:,} | {r['parameters']:,} | {side} | "
                   f"{ms['median_ms']:.1f} / {ms['min_ms']:.1f} | "
                   + (f"{up['by_median']:.2f}x / {up['by_min']:.2f}x |" if up else "1 |"))
  lines += ["", "Speed-up = PyTorch step time / JAX step time (>1: JAX is faster); issue 15's "
            "target is at least 1.3x against the fastest PyTorch step. `gather` and `bag`: the "
            "user tower's history sums as the JAX model writes them, or with "
            "`F.embedding_bag` (benchmarks/torch_port.py). Losses of the first "
            f"{AGREE_STEPS} steps from the same weights agree within: "
            + ", ".join(f"{n} {r['agreement']['max_loss_difference']:.1e}"
                        for n, r in report["setups"].items()) + ".", ""]
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--steps", type=int, default=5, help="steps per side per round")
  parser.add_argument("--compile", action="store_true", help="also time torch.compile")
  parser.add_argument("--setups", default=",".join(SETUPS), help=f"of {list(SETUPS)}")
  parser.add_argument("--torch-threads", type=int, default=0,
                      help="PyTorch intra-op threads (0: its default, one per core)")
  parser.add_argument("--out", default=str(RESULTS / "torch_step.json"))
  args = parser.parse_args()
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  names = args.setups.split(",")
  if unknown := sorted(set(names) - set(SETUPS)):
    parser.error(f"--setups: unknown {unknown}; choose from {list(SETUPS)}")
  load_before = os.getloadavg()[0]
  setups = {name: measure(name, args.rounds, args.steps, args.compile) for name in names}
  report = {
      "command": "python benchmarks/torch_step.py " + " ".join(sys.argv[1:]),
      "machine": (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                  f"jax {jax.__version__}, torch {torch.__version__} "
                  f"({torch.get_num_threads()} threads, OMP_WAIT_POLICY="
                  f"{os.environ['OMP_WAIT_POLICY']})"),
      "load_average": {"before": round(load_before, 1), "after": round(os.getloadavg()[0], 1)},
      "note": "float32; synthetic batches shaped like each dataset; A and B interleaved",
      "setups": setups}
  if report["load_average"]["before"] > os.cpu_count():
    report["note"] += (f"; measured under load (1-min load average "
                       f"{report['load_average']['before']} on {os.cpu_count()} cores)")
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=2) + "\n")
  out.with_suffix(".md").write_text(markdown(report))
  print(markdown(report))


if __name__ == "__main__":
  main()
