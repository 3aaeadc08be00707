"""Batch jobs behind the CLI and the notebooks: build data, train, evaluate, export."""

from __future__ import annotations

import hashlib
import pathlib

import ml_collections
import numpy as np

from mmrec import train as train_lib
from mmrec.data import sources
from mmrec.evaluation import evaluate as eval_lib
from mmrec.retrieval.export import export_bundle


def config_digest(config: ml_collections.ConfigDict) -> str:
  return hashlib.sha256(config.to_json(sort_keys=True).encode()).hexdigest()[:16]


def build_data(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
  return sources.build(config.data, workdir)


def evaluate(trained: train_lib.Trained, config: ml_collections.ConfigDict,
             workdir: str | pathlib.Path) -> dict[str, float]:
  """Metrics of a trained model, written to WORKDIR/metrics.json."""
  metrics = eval_lib.evaluate_trained(trained, config)
  eval_lib.write_metrics(pathlib.Path(workdir) / "metrics.json", metrics,
                         dataset=trained.data.meta.get("name", ""), split=config.eval.split,
                         model=config.name, step=trained.step, config=config.to_dict())
  return metrics


def evaluate_popularity(config: ml_collections.ConfigDict,
                        workdir: str | pathlib.Path) -> dict[str, float]:
  data = sources.load(config.data, workdir)
  return eval_lib.evaluate(eval_lib.popularity_scorer(data), data, split=config.eval.split,
                           ks=config.eval.ks, batch_size=config.eval.batch_size)


def export(trained: train_lib.Trained, config: ml_collections.ConfigDict,
           out_dir: str | pathlib.Path) -> pathlib.Path:
  """The trained model's item embeddings as a ScaNN bundle (see docs/bundle.md)."""
  catalog = trained.data.catalog
  embeddings = eval_lib.item_embeddings(trained.model, trained.items)
  model_info = {"name": config.name, "checkpoint_step": trained.step,
                "config_digest": config_digest(config), "dataset": trained.data.meta.get("name", "")}
  metadata = {"title": [str(t) for t in catalog.title],
              "category": [str(c) for c in catalog.category]}
  return export_bundle(out_dir, embeddings.astype(np.float32), np.asarray(catalog.item_id),
                       trained.data.train_counts(), model_info=model_info, metadata=metadata)
