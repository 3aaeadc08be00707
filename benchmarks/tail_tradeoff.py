"""Tail-aware re-ranking: Recall@20 against tail share (APLT@20) and coverage@20.

Re-ranks a trained two-tower's full-ranking lists with the bundle's own knobs
(`mmrec.serving.tail.rerank_full`: `beta` popularity calibration, `tail_balance`
smooth xQuAD) over the test split of the embedded shop, and writes
benchmarks/results/tail_tradeoff.{json,md}.

  python benchmarks/tail_tradeoff.py --workdir runs/demo   # after `make demo`

Trains the multimodal two-tower into WORKDIR/multimodal first if it holds no
checkpoint (the demo's config, `two_tower.py:small`). Each metric has its 95% bootstrap
interval over test users.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from mmrec import jobs
from mmrec.configs.two_tower import get_config
from mmrec.evaluation import evaluate as eval_lib
from mmrec.serving import tail

# Scores are cosines in [-1, 1] plus the item bias (logits times the temperature, 0.2):
# useful betas are small; the default config's eval.beta is 0.03.
BETAS = (0.0, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1)
BALANCES = (0.0, 0.5)
KEYS = ("recall@20", "recall@20/head", "recall@20/tail", "recall@20/cold", "aplt@20",
        "coverage@20")
RESULTS = pathlib.Path(__file__).parent / "results"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/demo")
  parser.add_argument("--model-dir", default=None, help="the trained model (WORKDIR/multimodal)")
  parser.add_argument("--config", default="small,multimodal", help="two_tower.get_config arg")
  args = parser.parse_args()
  workdir = pathlib.Path(args.workdir)
  config = get_config(args.config)
  config.data.data_dir = str(workdir / "data")
  model_dir = pathlib.Path(args.model_dir or workdir / "multimodal")
  trained = jobs.train(config, model_dir)  # resumes: a finished run is only read back
  data = trained.data
  scorer = eval_lib.two_tower_scorer(trained.model, data, trained.items, split="test",
                                     history_len=config.data.history_len)
  popularity = data.train_counts().astype(np.int64)
  is_head = tail.head_tail_split(popularity)
  rows = []
  for balance in BALANCES:
    for beta in BETAS:
      start = time.perf_counter()
      rerank = lambda s, k, b=beta, t=balance: tail.rerank_full(
          s, popularity, is_head, k, beta=b, tail_balance=t)[0]
      m = eval_lib.evaluate(scorer, data, split="test", ks=(20,), rerank=rerank)
      bounds = {f"{k}/{end}": m[f"{k}/{end}"] for k in KEYS for end in ("ci_low", "ci_high")}
      rows.append({"beta": beta, "tail_balance": balance, **{k: m[k] for k in KEYS}, **bounds,
                   "seconds": round(time.perf_counter() - start, 2)})
      print(" ".join(f"{k}={rows[-1][k]:.4f}" for k in KEYS), f"beta={beta}",
            f"tail_balance={balance}", flush=True)
  context = {"dataset": data.meta.get("name"), "model": config.name, "step": trained.step,
             "split": "test", "num_items": data.num_items, "head_items": int(is_head.sum()),
             "candidates": "max(10k, 100) by raw score when a knob is on"}
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "tail_tradeoff.json").write_text(json.dumps({**context, "rows": rows}, indent=2))
  header = "| beta | tail_balance | " + " | ".join(KEYS) + " |"
  lines = [f"# Tail-aware re-ranking on {context['dataset']} ({config.name}, step "
           f"{trained.step}, test split)", "", header,
           "|" + "---|" * (len(KEYS) + 2)]
  cell = lambda r, k: f"{r[k]:.4f} [{r[k + '/ci_low']:.3f}, {r[k + '/ci_high']:.3f}]"
  lines += [f"| {r['beta']} | {r['tail_balance']} | " + " | ".join(cell(r, k) for k in KEYS)
            + " |" for r in rows]
  lines += ["", "[low, high]: 95% bootstrap interval over test users."]
  (RESULTS / "tail_tradeoff.md").write_text("\n".join(lines) + "\n")
  print(f"wrote {RESULTS / 'tail_tradeoff.md'}")


if __name__ == "__main__":
  main()
