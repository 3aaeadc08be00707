"""Full-ranking evaluation against a jitted matmul plus top-k at the same sizes.

    .venv/bin/python benchmarks/eval_speed.py                     # 10,000 users x 20,000 items x 128
    .venv/bin/python benchmarks/eval_speed.py --users 2000 --items 5000   # a quick run

A synthetic dataset (seeded): every user has `--history` train items, one valid and one
test item. Timed side by side, interleaved, `--repeats` rounds (medians):
- `jit_matmul_topk`: `lax.top_k(users @ items.T, k)` jitted, in the same user chunks,
  the indices copied to the host: the floor, with no masking and no metrics;
- `evaluate_device`: `mmrec.evaluation.evaluate.evaluate` with an `EmbeddingScorer` (scores,
  masks the seen items and selects on the device, then the metrics on the host);
- `evaluate_host`: the same call with a plain callable scorer returning the same scores
  as numpy (the path before the device one): `metrics.masked_topk` with per-user masking
  on the host;
- `evaluate_device_no_intervals`: the device path without the bootstrap intervals (their
  cost apart from the ranking's).
Both evaluations must give the same metrics (checked). Writes
benchmarks/results/eval_speed.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import platform
import time

import jax
import numpy as np

from mmrec.data.schema import Catalog, Interactions, RecDataset
from mmrec.evaluation import evaluate as eval_lib

RESULTS = pathlib.Path(__file__).parent / "results"


def synthetic(num_users: int, num_items: int, history: int, rng) -> RecDataset:
  users = np.repeat(np.arange(num_users), history + 2)
  # distinct items per user (a random window of a permutation), popularity skewed a little
  start = rng.integers(0, num_items, num_users)
  items = (start[:, None] + np.arange(history + 2) ** 2) % num_items
  parts = {"train": slice(0, history), "valid": slice(history, history + 1),
           "test": slice(history + 1, history + 2)}
  splits = {}
  for name, cols in parts.items():
    sel = items[:, cols]
    splits[name] = Interactions(np.repeat(np.arange(num_users), sel.shape[1]), sel.ravel(),
                                np.zeros(sel.size))
  del users
  ids = np.array([f"i{i}" for i in range(num_items)])
  catalog = Catalog(ids, ids, np.full(num_items, ""), np.full(num_items, ""), [b""] * num_items)
  counts = np.bincount(splits["train"].item, minlength=num_items)
  return RecDataset(catalog, splits, counts == 0, num_users)


@functools.partial(jax.jit, static_argnames="k")
def _matmul_topk(users, items, *, k):
  return jax.lax.top_k(users @ items.T, k)[1]


def reference(user_emb, item_emb, users, k, chunk) -> np.ndarray:
  out = []
  for start in range(0, len(users), chunk):
    rows = np.pad(users[start:start + chunk], (0, chunk - len(users[start:start + chunk])))
    out.append(np.asarray(_matmul_topk(user_emb[rows], item_emb, k=k)))
  return np.concatenate(out)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--users", type=int, default=10_000)
  parser.add_argument("--items", type=int, default=20_000)
  parser.add_argument("--dim", type=int, default=128)
  parser.add_argument("--history", type=int, default=20)
  parser.add_argument("--chunk", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default=str(RESULTS / "eval_speed.json"))
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  data = synthetic(args.users, args.items, args.history, rng)
  user_np = rng.normal(size=(args.users, args.dim)).astype(np.float32)
  item_np = rng.normal(size=(args.items, args.dim)).astype(np.float32)
  user_dev, item_dev = jax.device_put(user_np), jax.device_put(item_np)
  device = eval_lib.EmbeddingScorer(user_np, item_np)
  host = lambda u: device(u)  # the same scores, as numpy: masked and ranked on the host
  ks = (10, 20, 50)
  all_users = np.arange(args.users)
  methods = {
      "jit_matmul_topk": lambda: reference(user_dev, item_dev, all_users, max(ks), args.chunk),
      "evaluate_device": lambda: eval_lib.evaluate(device, data, split="test", ks=ks,
                                                   batch_size=args.chunk),
      "evaluate_host": lambda: eval_lib.evaluate(host, data, split="test", ks=ks,
                                                 batch_size=args.chunk),
      "evaluate_device_no_intervals": lambda: eval_lib.evaluate(
          device, data, split="test", ks=ks, batch_size=args.chunk, intervals=False),
  }
  results = {name: fn() for name, fn in methods.items()}  # warm-up: compiles
  same = results["evaluate_device"] == results["evaluate_host"]
  same = same and all(results["evaluate_device"][k] == v
                      for k, v in results["evaluate_device_no_intervals"].items())
  times = {name: [] for name in methods}
  for _ in range(args.repeats):  # interleaved rounds
    for name, fn in methods.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  median = {name: float(np.median(t)) for name, t in times.items()}
  floor = median["jit_matmul_topk"]
  out = {
      "command": "python benchmarks/eval_speed.py " + " ".join(
          f"--{k}={v}" for k, v in vars(args).items() if k != "out"),
      "machine": f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
                 f"on {jax.devices()[0].platform}",
      "sizes": {"users": args.users, "items": args.items, "dim": args.dim, "k": max(ks)},
      "seconds_median": median, "seconds_all": times,
      "ratio_to_jit_matmul_topk": {n: m / floor for n, m in median.items()},
      "target": "evaluate_device <= 1.3x jit_matmul_topk",
      "device_and_host_metrics_equal": bool(same),
  }
  pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
  print(json.dumps({k: out[k] for k in ("sizes", "seconds_median", "ratio_to_jit_matmul_topk",
                                        "device_and_host_metrics_equal")}, indent=1))


if __name__ == "__main__":
  main()
