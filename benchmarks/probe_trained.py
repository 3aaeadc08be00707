"""Did two-tower training keep what the encoders knew? Linear probes before and after.

For rows of benchmarks/pretraining_table.py: the item tower's text and image
features at warm start and after two-tower training, each probed for category,
colour and material. Writes benchmarks/results/probe_trained.{json,md}.

  python benchmarks/probe_trained.py --workdir runs/pretraining --rows minilm,minilm_finetune
"""

from __future__ import annotations

import argparse
import json
import pathlib

from pretraining_table import ATTRIBUTES, RESULTS, ROWS, two_tower_config

from mmrec.evaluation import probe as probe_lib
from mmrec.training import two_tower as train_lib


def probe_row(row: str, workdir: pathlib.Path) -> list[dict]:
  config = two_tower_config(row, workdir, None)
  initial, data, items = train_lib.prepare(config, workdir / row)  # warm-started, untrained
  trained = train_lib.restore(workdir / row, config)
  labels = {a: data.catalog.attributes[a] for a in ATTRIBUTES}
  out = []
  for when, model in (("warm start", initial), (f"trained ({trained.step} steps)", trained.model)):
    tower = model.item_tower
    features = probe_lib.encoder_features(getattr(tower, "text", None),
                                          getattr(tower, "image", None), items.tokens, items.image)
    probe = probe_lib.linear_probe(features, labels, seed=config.seed)
    out += [{"row": row, "encoders": when, "features": name,
             **{a: probe[f"{a}/{name}"] for a in ATTRIBUTES}} for name in features]
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/pretraining")
  parser.add_argument("--rows", default="minilm,minilm_finetune")
  args = parser.parse_args()
  results = []
  for row in args.rows.split(","):
    if row not in ROWS:
      parser.error(f"unknown row {row!r}; choose from {ROWS}")
    results += probe_row(row, pathlib.Path(args.workdir))
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "probe_trained.json").write_text(json.dumps(results, indent=2))
  lines = ["| row | encoders | features | " + " | ".join(ATTRIBUTES) + " |",
           "|---" * (3 + len(ATTRIBUTES)) + "|"]
  lines += [f"| {r['row']} | {r['encoders']} | {r['features']} | "
            + " | ".join(f"{r[a]:.3f}" for a in ATTRIBUTES) + " |" for r in results]
  (RESULTS / "probe_trained.md").write_text(
      "# Linear probes of the encoders before and after two-tower training\n\n"
      + "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
