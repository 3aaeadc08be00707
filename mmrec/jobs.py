"""Batch jobs behind the CLI and the notebooks: build data, train, evaluate, export."""

from __future__ import annotations

import hashlib
import pathlib

import ml_collections
import numpy as np

from mmrec import train as train_lib
from mmrec.data import sources
from mmrec.data.pipeline import UserHistories
from mmrec.evaluation import evaluate as eval_lib
from mmrec.retrieval.export import export_bundle
from mmrec.retrieval.user_tower import export_user_tower


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
  catalog, data, split = trained.data.catalog, trained.data, config.eval.split
  # ScaNN is tuned on real queries: user-tower outputs of up to 500 users (seeded sample).
  users = np.sort(np.random.default_rng(config.seed).permutation(data.num_users)[:500])
  histories = UserHistories(eval_lib.seen_interactions(data, split), config.data.history_len)
  embeddings, queries = eval_lib.embeddings(trained.model, trained.items, histories, users)
  model_info = {"name": config.name, "checkpoint_step": trained.step,
                "config_digest": config_digest(config), "dataset": trained.data.meta.get("name", "")}
  return export_bundle(out_dir, embeddings.astype(np.float32), np.asarray(catalog.item_id),
                       trained.data.train_counts(), model_info=model_info,
                       metadata=_bundle_metadata(catalog),
                       user_tower=export_user_tower(trained.model, config.data.history_len,
                                                    np.asarray(catalog.item_id)),
                       tuning_queries=queries, tuning_query_source=f"user_tower:{split}")


def update_bundle(trained: train_lib.Trained | None, config: ml_collections.ConfigDict,
                  bundle_dir: str | pathlib.Path, *, add_feed: str | None = None,
                  remove_ids: list[str] | None = None) -> list[dict]:
  """Removes `remove_ids`, then adds the products of the JSON Lines `add_feed`,
  embedded with the trained item tower (docs/bundle.md); returns the reports."""
  from mmrec.retrieval import new_items, update
  reports = []
  if remove_ids:
    reports.append(update.remove_items(bundle_dir, remove_ids))
  if add_feed:
    catalog, _ = new_items.read_feed(add_feed)
    embeddings = new_items.embed(trained, config, catalog)
    reports.append(update.add_items(bundle_dir, embeddings, list(catalog.item_id),
                                    metadata=_bundle_metadata(catalog)))
  return reports


def _bundle_metadata(catalog) -> dict[str, list[str]]:
  return {"title": [str(t) for t in catalog.title],
          "category": [str(c) for c in catalog.category]}
