"""Recommendation quality: every model on one protocol, tuned on valid, reported on test.

Protocol: full ranking over the whole catalog, each user's train items masked,
lists built from train only (`evaluate(..., history="train")`), the same lists
scored against valid and test. Every model in `SPECS` has a small grid; each
setting is fit on train and scored on valid, the best by valid recall@20 is
scored on test (nothing is chosen on test).

Datasets: `ml100k` (RecBole's ml-100k inside the recbole package, every rating,
random 8:1:1 per user) and `shop` (the small embedded shop, leave-last-out, with
cold items). Writes benchmarks/results/quality_{dataset}.{json,md}, merging into
the models already there.

  python benchmarks/quality.py                                  # everything
  python benchmarks/quality.py --datasets ml100k --models ease,als

Other models plug in by adding a `ModelSpec` to `SPECS` (or passing specs to `run`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Callable

import numpy as np

from mmrec.configs import movielens, two_tower
from mmrec.data import sources
from mmrec.data.schema import RecDataset
from mmrec.evaluation import baselines
from mmrec.evaluation import evaluate as eval_lib
from mmrec.evaluation import metrics as metrics_lib

RESULTS = pathlib.Path(__file__).parent / "results"
WORKDIR = pathlib.Path("runs/quality")
SEED = 0
HISTORY = "train"
SELECT = "recall@20"  # chosen on valid
KEYS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "recall@20/head", "recall@20/tail",
        "recall@20/cold", "coverage@20", "aplt@20")
PROTOCOL = ("full ranking, train items masked, lists built from train only (history='train'), "
            f"the same lists scored on valid and test; grid chosen on valid {SELECT}")
DATASETS = {  # name -> data config
    "ml100k": lambda: movielens.get_config("ml100k").data,
    "shop": lambda: two_tower.get_config("small").data,
}


@dataclasses.dataclass
class ModelSpec:
  name: str
  fit: Callable[..., eval_lib.Scorer]  # fit(data, **params) -> Scorer, on data.splits["train"]
  grid: list[dict]  # the settings tried, chosen on valid
  fixed: dict = dataclasses.field(default_factory=dict)  # passed to every fit, recorded


def grid(**axes) -> list[dict]:
  """Every combination of the axes' values."""
  points = [{}]
  for key, values in axes.items():
    points = [{**p, key: v} for p in points for v in values]
  return points


SPECS: dict[str, ModelSpec] = {
    "pop": ModelSpec("pop", baselines.popularity, [{}]),
    "itemknn": ModelSpec("itemknn", baselines.itemknn,
                         grid(k=[50, 100, 200, 400], shrink=[0.0, 10.0])),
    "ease": ModelSpec("ease", baselines.ease, grid(lam=[50, 100, 200, 500, 1000, 2000, 3000])),
    # alpha (the confidence of an interaction) mattered more than iterations (15 vs 30).
    "als": ModelSpec("als", baselines.als,
                     grid(factors=[16, 32, 64, 128], regularization=[1.0, 10.0], alpha=[1.0, 5.0]),
                     fixed={"iterations": 15, "seed": SEED}),
    # implicit's BPR overfits to the tail with many epochs: few epochs, several rates.
    "bpr": ModelSpec("bpr", baselines.bpr,
                     grid(factors=[32, 64], learning_rate=[0.005, 0.01, 0.02],
                          iterations=[30, 60, 120]),
                     fixed={"regularization": 0.01, "seed": SEED}),
}


def load(name: str) -> RecDataset:
  return sources.load(DATASETS[name](), WORKDIR / name)


def dataset_info(name: str, data: RecDataset) -> dict:
  groups = metrics_lib.popularity_groups(data.train_counts(), data.is_cold)
  return {"name": name, "dataset": data.meta.get("name"), "users": data.num_users,
          "items": data.num_items,
          "interactions": {s: len(i) for s, i in data.splits.items()},
          "items_by_group": {g: int((groups == i).sum())
                             for i, g in enumerate(metrics_lib.GROUP_NAMES)},
          "split": {"protocol": data.meta.get("protocol"),
                    "options": data.meta.get("split_options", {})}}


def evaluate(scorer, data: RecDataset, split: str) -> dict:
  m = eval_lib.evaluate(scorer, data, split=split, ks=(10, 20), history=HISTORY)
  return {k: m.get(k) for k in KEYS}  # a group without targets has no key: None


def run_spec(spec: ModelSpec, data: RecDataset, log=print) -> dict:
  """Grid on valid, the best setting on test."""
  tried, best = [], None
  for params in spec.grid:
    start = time.perf_counter()
    scorer = spec.fit(data, **spec.fixed, **params)
    seconds = time.perf_counter() - start
    valid = evaluate(scorer, data, "valid")
    tried.append({"params": params, f"valid/{SELECT}": valid[SELECT],
                  "train_seconds": round(seconds, 3)})
    log(f"  {spec.name} {params}: valid {SELECT}={valid[SELECT]:.4f} ({seconds:.1f} s)")
    if best is None or valid[SELECT] > best[1][SELECT]:
      best = (params, valid, seconds, scorer)
    del scorer
  params, valid, seconds, scorer = best
  return {**evaluate(scorer, data, "test"), "train_seconds": round(seconds, 3),
          "params": params, "fixed": spec.fixed, "valid": valid, "grid": tried}


def run(dataset_name: str, specs: dict[str, ModelSpec] | list[ModelSpec], log=print) -> dict:
  """{"dataset": info, "protocol": ..., "models": {name: test metrics, valid, params, grid}}."""
  data = load(dataset_name)
  specs = list(specs.values()) if isinstance(specs, dict) else list(specs)
  info = dataset_info(dataset_name, data)
  log(f"{dataset_name}: {info['users']} users, {info['items']} items, {info['interactions']}")
  models = {}
  for spec in specs:
    models[spec.name] = run_spec(spec, data, log)
  return {"dataset": info, "protocol": PROTOCOL, "models": models}



def _fmt(v) -> str:
  return "-" if v is None else f"{v:.4f}"


def markdown(result: dict) -> str:
  info = result["dataset"]
  cols = (*KEYS, "train_seconds")
  lines = [f"# Quality on {info['name']} (test split)", "",
           f"{info['users']} users, {info['items']} items, interactions {info['interactions']}, "
           f"items by group {info['items_by_group']}; split {info['split']}.", "",
           f"Protocol: {result['protocol']}. Grids and valid metrics in the JSON.", "",
           "| model | params | valid recall@20 | " + " | ".join(cols) + " |",
           "|" + "---|" * (len(cols) + 3)]
  for name, m in result["models"].items():
    params = ", ".join(f"{k}={v}" for k, v in m["params"].items()) or "-"
    lines.append(f"| {name} | {params} | {_fmt(m['valid'][SELECT])} | "
                 + " | ".join(_fmt(m.get(k)) for k in KEYS) + f" | {m['train_seconds']:.2f} |")
  return "\n".join(lines) + "\n"


def write(dataset_name: str, result: dict, command: str) -> dict:
  """Merge `result`'s models into the dataset's JSON (keeping the others) and rewrite both files."""
  path = RESULTS / f"quality_{dataset_name}.json"
  old = json.loads(path.read_text()) if path.exists() else {}
  models = {**old.get("models", {}),
            **{n: {**m, "command": command} for n, m in result["models"].items()}}
  models = dict(sorted(models.items(), key=lambda kv: list(SPECS).index(kv[0])
                       if kv[0] in SPECS else len(SPECS)))  # SPECS order, then the others
  merged = {**old, **result, "models": models}
  RESULTS.mkdir(exist_ok=True)
  path.write_text(json.dumps(merged, indent=2) + "\n")
  path.with_suffix(".md").write_text(markdown(merged))
  return merged


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--datasets", default=",".join(DATASETS))
  parser.add_argument("--models", default=",".join(SPECS))
  args = parser.parse_args()
  names = args.models.split(",")
  unknown = [n for n in names if n not in SPECS] + [
      d for d in args.datasets.split(",") if d not in DATASETS]
  if unknown:
    parser.error(f"unknown {unknown}; models {list(SPECS)}, datasets {list(DATASETS)}")
  command = " ".join(["python", "benchmarks/quality.py", *sys.argv[1:]])
  for dataset_name in args.datasets.split(","):
    result = run(dataset_name, [SPECS[n] for n in names])
    merged = write(dataset_name, result, command)
    cols = (*KEYS, "train_seconds")
    print(eval_lib.format_table({n: {k: np.nan if m.get(k) is None else m[k] for k in cols}
                                 for n, m in merged["models"].items()}, keys=cols))
    print(f"wrote {RESULTS / f'quality_{dataset_name}.json'} and .md", flush=True)


if __name__ == "__main__":
  main()
