"""`mmrec demo`: the main job end to end on the embedded shop.

Builds the shop, trains the multimodal and the ID-only two-tower, evaluates
them beside the popularity baseline, exports the multimodal bundle, queries it
through the jax-free client, and prints a comparison table.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time

import ml_collections
import numpy as np

from mmrec import jobs
from mmrec.configs.two_tower import with_variant
from mmrec.data import sources
from mmrec.data.pipeline import UserHistories
from mmrec.files import write_text_atomic
from mmrec.evaluation import evaluate as eval_lib
from mmrec.serving import load_bundle
from mmrec.training import embed as embed_lib
from mmrec.training import two_tower as train_lib


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, dict]:
  start = time.perf_counter()
  workdir = pathlib.Path(workdir)
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.data_dir = config.data.data_dir or str(workdir / "data")

  print(f"== data: {sources.dataset_path(config.data, workdir)}")
  data = sources.load(config.data, workdir)
  report = data.meta.get("report", {})
  print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}, indent=1))

  rows = {"popularity": jobs.evaluate_popularity(config, workdir, data=data)}
  trained = {}
  for variant in ("multimodal", "id_only"):
    cfg = with_variant(config, variant)
    print(f"== train {cfg.name}: {cfg.train.steps} steps of {cfg.train.batch_size}")
    trained[variant] = jobs.train(cfg, workdir / variant, data=data)  # loaded once, above
    rows[cfg.name] = jobs.evaluate(trained[variant], cfg, workdir / variant)

  bundle_dir = jobs.export(trained["multimodal"], with_variant(config, "multimodal"),
                           workdir / "bundle")
  print(f"== exported {bundle_dir}")
  show_queries(trained["multimodal"], config, bundle_dir)

  table = eval_lib.format_table(rows)
  write_text_atomic(workdir / "comparison.json", json.dumps(rows, indent=2))  # in table order
  seconds = time.perf_counter() - start
  write_text_atomic(workdir / RUN_FILE, json.dumps(
      {"seconds": round(seconds, 1), "split": config.eval.split, "machine": machine(),
       "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=2))
  print(f"\n== full-ranking metrics on the {config.eval.split} split "
        f"({data.meta.get('name', '')}, {data.num_items} items, {data.num_users} users)")
  print(table)
  print(f"\nmmrec demo finished in {seconds:.0f} s; results in {workdir}")
  return rows


RUN_FILE = "demo_run.json"  # the run's time and machine, beside comparison.json


def machine() -> str:
  """Where the demo ran, in words: CPU model and count, JAX backend."""
  import jax
  cpu = platform.processor() or platform.machine()
  try:
    names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
             if line.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return f"{cpu}, {os.cpu_count()} cores, JAX {jax.__version__} on {jax.default_backend()}"


def show_queries(trained: train_lib.Trained, config: ml_collections.ConfigDict,
                 bundle_dir: pathlib.Path, num_users: int = 3, k: int = 5) -> None:
  """A few users' recent history and their top-k from the bundle, by title."""
  bundle = load_bundle(bundle_dir)
  data, split = trained.data, config.eval.split
  seen_rows = eval_lib.seen_interactions(data, split)
  seen = eval_lib.items_by_user(seen_rows, data.num_users)
  users = np.random.default_rng(0).choice(data.num_users, num_users, replace=False)
  histories = UserHistories(seen_rows, config.data.history_len)
  queries = embed_lib.user_embeddings(trained.model, histories, users)
  ids = data.catalog.item_id
  ranked, _ = bundle.search(queries, k, exclude=[[str(ids[i]) for i in seen[u]] for u in users])
  titles = {str(i): str(t) for i, t in zip(ids, data.catalog.title)}
  for u, row in zip(users, ranked):
    print(f"\nuser {u}: recently {', '.join(titles[str(ids[i])] for i in seen[u][-3:])}")
    for rank, item in enumerate(row, 1):
      cold = " (cold)" if data.is_cold[bundle.index_of([item])[0]] else ""
      print(f"  {rank}. {titles[item]}{cold}")
