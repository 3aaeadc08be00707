"""Does self-supervised pretraining help the tail? Six two-towers on the embedded shop.

Rows: random init; encoders warm-started from `mmrec pretrain` with text MLM,
image contrastive, image-text sigmoid, all three; the text encoder imported
from all-MiniLM-L6-v2. Each is the small multimodal two-tower trained the same
way, evaluated with full ranking on the test split (tail and cold-start
Recall@20 / NDCG@20), plus a linear probe of its frozen warm-started encoders
(category, colour, material). The MiniLM text encoder stays frozen (the
`minilm` variant); its probe reads the same frozen features. Writes
benchmarks/results/pretraining.{json,md}, replacing the rows it ran and keeping the others.

  python benchmarks/pretraining_table.py [--pretrain-steps 400] [--rows random,text_mlm]

Runs resume: a finished pretraining or training is read back, not repeated.
The equivalent CLI for one row:
  mmrec pretrain --config mmrec/configs/pretrain.py:small,text_mlm --workdir W/pretrain_text_mlm \
      --config.data.data_dir=W/data --config.train.steps=400
  mmrec train --config mmrec/configs/two_tower.py:small --workdir W/text_mlm \
      --config.data.data_dir=W/data --config.model.warm_start.checkpoint=W/pretrain_text_mlm
  mmrec evaluate --workdir W/text_mlm
and for the MiniLM row:
  mmrec train --config mmrec/configs/two_tower.py:small,minilm --workdir W/minilm \
      --config.data.data_dir=W/data
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

from mmrec import jobs
from mmrec.configs import pretrain as pretrain_configs, two_tower
from mmrec.evaluation import probe as probe_lib
from mmrec.training import pretrain
from mmrec.training import two_tower as train_lib

ROWS = ("random", "text_mlm", "image_contrastive", "image_text", "all", "minilm", "minilm_finetune",
        "minilm_finetune_low_lr")
# The minilm_finetune rows train the 22M-parameter MiniLM (about an hour each on 2 CPU cores):
# at the two-tower's learning rate, and at 0.01 x it for the text encoder.
DEFAULT_ROWS = ROWS[:-2]
KEYS = ("recall@20", "recall@20/tail", "ndcg@20/tail", "recall@20/cold", "ndcg@20/cold",
        "coverage@20")
ATTRIBUTES = ("category", "colour", "material")
RESULTS = pathlib.Path(__file__).parent / "results"


def two_tower_config(row: str, workdir: pathlib.Path, steps: int | None):
  config = two_tower.get_config("small,minilm" if row.startswith("minilm") else "small")
  config.data.data_dir = str(workdir / "data")
  if row.startswith("minilm_finetune"):
    config.train.frozen_encoders = ()
    config.train.encoder_lr_scale = 0.01 if row.endswith("low_lr") else 1.0
  elif row not in ("random", "minilm"):
    config.model.warm_start.checkpoint = str(workdir / f"pretrain_{row}")
  if steps:
    config.train.steps = steps
  return config


def run_row(row: str, workdir: pathlib.Path, args) -> dict:
  start = time.perf_counter()
  if not row.startswith(("random", "minilm")):
    cfg = pretrain_configs.get_config(f"small,{row}")
    cfg.data.data_dir = str(workdir / "data")
    cfg.train.steps = args.pretrain_steps
    pretrain.pretrain(cfg, workdir / f"pretrain_{row}")
  config = two_tower_config(row, workdir, args.steps)
  model, data, items = train_lib.prepare(config, workdir / row)  # warm-started, untrained
  tower = model.item_tower
  features = probe_lib.encoder_features(getattr(tower, "text", None),
                                        getattr(tower, "image", None), items.tokens, items.image)
  labels = {a: data.catalog.attributes[a] for a in ATTRIBUTES}
  probe = probe_lib.linear_probe(features, labels, seed=config.seed)
  metrics = jobs.evaluate(jobs.train(config, workdir / row), config, workdir / row)
  return {"row": row, **{k: metrics[k] for k in KEYS},
          **{f"probe/{a}": probe[f"{a}/text+image"] for a in ATTRIBUTES},
          "minutes": round((time.perf_counter() - start) / 60, 1)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/pretraining")
  parser.add_argument("--rows", default=",".join(DEFAULT_ROWS))
  parser.add_argument("--pretrain-steps", type=int, default=400)
  parser.add_argument("--steps", type=int, default=None, help="two-tower steps (config default)")
  args = parser.parse_args()
  workdir = pathlib.Path(args.workdir)
  results = []
  for row in args.rows.split(","):
    if row not in ROWS:
      parser.error(f"unknown row {row!r}; choose from {ROWS}")
    results.append(run_row(row, workdir, args))
    print(json.dumps(results[-1]), flush=True)
  RESULTS.mkdir(exist_ok=True)
  context = {"pretrain_steps": args.pretrain_steps, "two_tower": "small multimodal",
             "split": "test", "probe": "linear (ridge) on frozen text+image features, 30% test"}
  saved = RESULTS / "pretraining.json"
  if saved.exists():  # rows not run this time are kept, if they came from the same settings
    previous = json.loads(saved.read_text())
    if {k: previous.get(k) for k in context} == context:
      ran = {r["row"] for r in results}
      results += [r for r in previous["rows"] if r["row"] not in ran]
  results.sort(key=lambda r: ROWS.index(r["row"]))
  saved.write_text(json.dumps({**context, "rows": results}, indent=2))
  cols = [*KEYS, *(f"probe/{a}" for a in ATTRIBUTES)]
  lines = ["| encoders | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
  lines += [f"| {r['row']} | " + " | ".join(f"{r[c]:.4f}" for c in cols) + " |" for r in results]
  (RESULTS / "pretraining.md").write_text(
      f"# Pretraining and the tail ({args.pretrain_steps} pretraining steps)\n\n"
      + "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
