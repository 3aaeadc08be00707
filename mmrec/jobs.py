"""Batch jobs behind the CLI and the notebooks: build data, train, evaluate, export, recommend."""

from __future__ import annotations

import csv
import hashlib
import pathlib

import ml_collections
import numpy as np

from mmrec.data import sources
from mmrec.data.pipeline import UserHistories
from mmrec.data.schema import RecDataset
from mmrec.evaluation import evaluate as eval_lib
from mmrec.evaluation.metrics import masked_topk
from mmrec.files import atomic_open
from mmrec.retrieval.export import export_bundle
from mmrec.retrieval.explain import export_explanations
from mmrec.retrieval.user_tower import export_user_tower
from mmrec.serving import tail
from mmrec.training import embed as embed_lib
from mmrec.training import two_tower as train_lib


def config_digest(config: ml_collections.ConfigDict) -> str:
  return hashlib.sha256(config.to_json(sort_keys=True).encode()).hexdigest()[:16]


def build_data(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
  return sources.build(config.data, workdir)


def validation(config: ml_collections.ConfigDict) -> train_lib.Validate:
  """Valid recall@20 of a model in training (the early-stopping metric)."""

  def recall(model, data, items) -> float:
    scorer = eval_lib.two_tower_scorer(model, data, items, split="valid",
                                       history_len=config.data.history_len)
    return eval_lib.evaluate(scorer, data, split="valid", ks=(20,), intervals=False,
                             batch_size=config.eval.batch_size)["recall@20"]

  return recall


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
          on_log=None, data: RecDataset | None = None) -> train_lib.Trained:
  """`mmrec.training.two_tower.train`, validated on the valid split for early stopping. `data`: the
  dataset, when the caller has loaded it already (else it is loaded from disk)."""
  return train_lib.train(config, workdir, on_log, validate=validation(config), data=data)


def evaluate(trained: train_lib.Trained, config: ml_collections.ConfigDict,
             workdir: str | pathlib.Path) -> dict[str, float]:
  """Metrics of a trained model, written to WORKDIR/metrics.json."""
  metrics = eval_lib.evaluate_trained(trained, config)
  eval_lib.write_metrics(pathlib.Path(workdir) / "metrics.json", metrics,
                         dataset=trained.data.meta.get("name", ""), split=config.eval.split,
                         model=config.name, step=trained.step, config=config.to_dict())
  return metrics


def evaluate_popularity(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                        data: RecDataset | None = None) -> dict[str, float]:
  """Metrics of the popularity baseline; `data`: the dataset if loaded already."""
  data = sources.load(config.data, workdir) if data is None else data
  return eval_lib.evaluate(eval_lib.popularity_scorer(data), data, split=config.eval.split,
                           ks=config.eval.ks, batch_size=config.eval.batch_size)


def export(trained: train_lib.Trained, config: ml_collections.ConfigDict,
           out_dir: str | pathlib.Path) -> pathlib.Path:
  """The trained model's item embeddings as a ScaNN bundle (see docs/bundle.md)."""
  catalog, data, split = trained.data.catalog, trained.data, config.eval.split
  # ScaNN is tuned on real queries: user-tower outputs of up to 500 users (seeded sample).
  users = np.sort(np.random.default_rng(config.seed).permutation(data.num_users)[:500])
  histories = UserHistories(eval_lib.seen_interactions(data, split), config.data.history_len)
  embeddings, queries = embed_lib.embeddings(trained.model, trained.items, histories, users)
  model_info = {"name": config.name, "checkpoint_step": trained.step,
                "default_beta": float(config.eval.get("beta", 0.0)),  # chosen on valid
                "config_digest": config_digest(config), "dataset": trained.data.meta.get("name", "")}
  return export_bundle(out_dir, embeddings.astype(np.float32), np.asarray(catalog.item_id),
                       trained.data.train_counts(), model_info=model_info,
                       metadata=_bundle_metadata(catalog),
                       user_tower=export_user_tower(trained.model, config.data.history_len,
                                                    np.asarray(catalog.item_id)),
                       explain=export_explanations(trained.model, trained.items, embeddings,
                                                   np.asarray(catalog.item_id),
                                                   config.data.history_len),
                       tuning_queries=queries, tuning_query_source=f"user_tower:{split}")


def user_ids(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
             num_users: int) -> list[str]:
  """Original user ids by user index: an import's user_ids.json, else the indices as text."""
  from mmrec.data.importers.build import load_user_ids
  return (load_user_ids(sources.dataset_path(config.data, workdir))
          or [str(u) for u in range(num_users)])


def recommend(trained: train_lib.Trained, config: ml_collections.ConfigDict,
              workdir: str | pathlib.Path, out: str | pathlib.Path, *, k: int = 20,
              split: str | None = None, users: list[str] | None = None,
              beta: float | None = None) -> int:
  """Writes each user's top-`k` unseen items to `out`, CSV or Parquet by its extension.

  Columns `user_id`, `item_id` (original ids), `rank` (1 = best), `score`. Users: all,
  or `users` (original ids, in that order). Scores, history and the seen items left out
  are evaluation's on `split` (default `eval.split`); `beta` (default `eval.beta`)
  calibrates the scores by training popularity, as the bundle does.
  Returns the number of rows written.
  """
  out, data = pathlib.Path(out), trained.data
  if out.suffix not in (".csv", ".parquet"):
    raise ValueError(f"--out {out}: the file name must end in .csv or .parquet")
  if k < 1:
    raise ValueError(f"k={k} must be at least 1")
  split = split or config.eval.split
  beta = float(config.eval.get("beta", 0.0) if beta is None else beta)
  tail.check_knobs(beta, 0.0)
  ids = user_ids(config, workdir, data.num_users)
  index = {u: i for i, u in enumerate(ids)}
  if users is None:
    rows = np.arange(data.num_users)
  else:
    unknown = [u for u in users if u not in index]
    if unknown:
      raise ValueError(f"{len(unknown)} unknown user id(s), e.g. {unknown[:5]}")
    rows = np.array([index[u] for u in dict.fromkeys(users)], np.int64)
  scorer = eval_lib.calibrated(
      eval_lib.two_tower_scorer(trained.model, data, trained.items, split=split,
                                history_len=config.data.history_len), data.train_counts(), beta)
  seen = eval_lib.items_by_user(eval_lib.seen_interactions(data, split), data.num_users)
  k = min(k, data.num_items)
  empty = np.zeros(0, np.int64)
  parts = [(empty, empty, empty, np.zeros(0, np.float32))]
  for start in range(0, len(rows), config.eval.batch_size):
    batch = rows[start:start + config.eval.batch_size]
    scores = np.array(scorer(batch), np.float32)
    for r, u in enumerate(batch):
      scores[r, seen[u]] = -np.inf
    top = masked_topk(scores, None, k)  # equal scores: lower item index first
    best = np.take_along_axis(scores, top, 1)
    keep = np.isfinite(best)  # a user with fewer than k unseen items gets fewer rows
    parts.append((np.repeat(batch, k)[keep.ravel()], top[keep],
                  np.tile(np.arange(1, k + 1), len(batch))[keep.ravel()], best[keep]))
  user, item, rank, score = (np.concatenate(c) for c in zip(*parts))
  columns = {"user_id": np.asarray(ids, object)[user].tolist(),
             "item_id": np.asarray(data.catalog.item_id).astype(str)[item].tolist(),
             "rank": rank.astype(np.int32), "score": score.astype(np.float32)}
  out.parent.mkdir(parents=True, exist_ok=True)
  if out.suffix == ".parquet":
    import pyarrow as pa
    import pyarrow.parquet as pq
    with atomic_open(out, "wb") as f:  # a killed run leaves the old file or the new one
      pq.write_table(pa.table(columns), f)
  else:  # quoted only where an id needs it; scores in float32's shortest form
    with atomic_open(out, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(columns)
      writer.writerows(zip(columns["user_id"], columns["item_id"], columns["rank"].tolist(),
                           columns["score"].astype(str).tolist()))
  return len(user)


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
