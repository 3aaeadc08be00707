"""Full-ranking evaluation: every catalog item is a candidate, seen items are masked.

For the `test` split a user's seen items (masked from the ranking, and the
user tower's history) are their train and valid interactions; for `valid`,
their train interactions (`history="train"`: train alone for both). Targets
are grouped as head (top 20% of warm items by training count), tail (other
warm items) and cold (no training interaction).
"""

from __future__ import annotations

import functools
import json
import pathlib
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from mmrec.data.pipeline import ItemTable, UserHistories
from mmrec.data.schema import Interactions, RecDataset
from mmrec.evaluation import metrics as metrics_lib
from mmrec.models.towers import TwoTower

Scorer = Callable[[np.ndarray], np.ndarray]  # user indices [b] -> scores [b, N]
Rerank = Callable[[np.ndarray, int], np.ndarray]  # scores [b, N], k -> item indices [b, k]


def seen_interactions(data: RecDataset, split: str, history: str = "seen") -> Interactions:
  """The interactions lists are built from and masked with: train, plus valid for the test
  split (`history="seen"`), or train alone for both splits (`"train"`: the same lists are
  scored against valid and test)."""
  if split not in ("valid", "test"):
    raise ValueError(f"eval.split must be 'valid' or 'test', got {split!r}")
  if history not in ("seen", "train"):
    raise ValueError(f"history must be 'seen' or 'train', got {history!r}")
  with_valid = split == "test" and history == "seen"
  parts = [data.splits["train"]] + ([data.splits["valid"]] if with_valid else [])
  return Interactions(*(np.concatenate([getattr(p, f) for p in parts])
                        for f in ("user", "item", "timestamp")))


def items_by_user(interactions: Interactions, num_users: int) -> list[np.ndarray]:
  order = np.argsort(interactions.user, kind="stable")
  bounds = np.searchsorted(interactions.user[order], np.arange(num_users + 1))
  items = interactions.item[order]
  return [items[bounds[u]:bounds[u + 1]] for u in range(num_users)]


def evaluate(scorer: Scorer, data: RecDataset, *, split: str = "test", ks=(10, 20, 50),
             batch_size: int = 256, rerank: Rerank | None = None,
             history: str = "seen") -> dict[str, float]:
  """Ranking metrics of `scorer` over the users with held-out items in `split`.

  `rerank(scores, k)`, when given, picks each user's list from their scores
  (seen items at -inf) instead of the plain top-k, e.g. tail-aware re-ranking.
  `history` picks the masked items (see `seen_interactions`); the scorer should
  build its lists from the same history.
  """
  seen = items_by_user(seen_interactions(data, split, history), data.num_users)
  targets = items_by_user(data.splits[split], data.num_users)
  users = np.array([u for u in range(data.num_users) if len(targets[u])], np.int64)
  groups = metrics_lib.popularity_groups(data.train_counts(), data.is_cold)
  acc = metrics_lib.RankingAccumulator(data.num_items, ks=tuple(ks), item_group=groups)
  for start in range(0, len(users), batch_size):
    batch = users[start:start + batch_size]
    if rerank is None:
      topk = metrics_lib.masked_topk(scorer(batch), [seen[u] for u in batch], max(ks))
    else:
      scores = np.array(scorer(batch), np.float32)
      for row, u in enumerate(batch):
        scores[row, seen[u]] = -np.inf
      topk = rerank(scores, max(ks))
    acc.add(topk, [targets[u] for u in batch])
  return acc.result()


def popularity_scorer(data: RecDataset) -> Scorer:
  counts = data.train_counts().astype(np.float32)
  return lambda users: np.broadcast_to(counts, (len(users), len(counts)))


def _batched(fn, arrays: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
  """Apply a jitted fn over the leading axis in fixed-size (padded) batches: one compile."""
  n = len(next(iter(arrays.values())))
  out = []
  for start in range(0, n, batch_size):
    chunk = {k: v[start:start + batch_size] for k, v in arrays.items()}
    pad = batch_size - len(next(iter(chunk.values())))
    chunk = {k: np.pad(v, [(0, pad)] + [(0, 0)] * (v.ndim - 1)) for k, v in chunk.items()}
    out.append(np.asarray(fn(chunk))[:batch_size - pad])
  return np.concatenate(out)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _apply(method: Callable, graphdef: nnx.GraphDef, mesh, state, inputs):
  out = method(nnx.merge(graphdef, state), inputs)
  if mesh is not None:  # replicated: every process can read the result
    out = jax.lax.with_sharding_constraint(out, NamedSharding(mesh, PartitionSpec()))
  return out


def _model_fn(model: TwoTower, method: Callable) -> Callable:
  """`method(model, inputs)` jitted with the model's state as an argument (a multi-host
  state cannot be closed over), compiled once per model structure and input shape (the
  jit lives at module level), with a replicated result. Every process runs the same
  (padded, fixed-size) batches, so the collective calls line up."""
  graphdef, state = nnx.split(model)
  meshes = [x.sharding.mesh for x in jax.tree.leaves(state)
            if isinstance(getattr(x, "sharding", None), NamedSharding)]
  mesh = meshes[0] if meshes and meshes[0].size > 1 else None
  return lambda inputs: _apply(method, graphdef, mesh, state, inputs)


def item_embeddings(model: TwoTower, items: ItemTable) -> np.ndarray:
  """Embeddings [N, D] of every item; the ID path is used for warm items only."""
  fn = _model_fn(model, TwoTower.embed_catalog)
  return np.asarray(fn(items.features(np.arange(len(items.warm)))))


def user_embeddings(model: TwoTower, histories: UserHistories, users: np.ndarray,
                    batch_size: int = 512) -> np.ndarray:
  history, mask = histories.latest(users)
  fn = _model_fn(model, TwoTower.embed_users)
  return _batched(fn, {"history": history, "history_mask": mask}, batch_size)


def embeddings(model: TwoTower, items: ItemTable, histories: UserHistories,
               users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Every item's embedding [N, D] and `users`' embeddings [U, D] from their histories.

  Refreshes the model's item cache first: the user tower reads the history items'
  embeddings from it.
  """
  item_emb = item_embeddings(model, items)
  model.item_cache[...] = item_emb
  return item_emb, user_embeddings(model, histories, users)


def two_tower_scorer(model: TwoTower, data: RecDataset, items: ItemTable, *, split: str,
                     history_len: int) -> Scorer:
  histories = UserHistories(seen_interactions(data, split), history_len)
  item_emb, user_emb = embeddings(model, items, histories, np.arange(data.num_users))
  return lambda users: user_emb[users] @ item_emb.T


def write_metrics(path: str | pathlib.Path, metrics: dict, **context) -> None:
  pathlib.Path(path).write_text(json.dumps({**context, **metrics}, indent=2, sort_keys=True))


TABLE_KEYS = ("recall@20", "ndcg@20", "recall@20/head", "recall@20/tail", "recall@20/cold",
              "ndcg@20/cold", "coverage@20", "aplt@20", "gini@20")


def format_table(rows: dict[str, dict[str, float]], keys=TABLE_KEYS) -> str:
  """A fixed-width table, one row per model."""
  name_width = max(12, *(len(n) for n in rows))
  lines = [f"{'model':<{name_width}} " + " ".join(f"{k:>15}" for k in keys)]
  for name, m in rows.items():
    lines.append(f"{name:<{name_width}} " + " ".join(f"{m.get(k, float('nan')):>15.4f}" for k in keys))
  return "\n".join(lines)


def calibrated(scorer: Scorer, popularity: np.ndarray, beta: float) -> Scorer:
  """Scores as the bundle ranks them: score - beta * ln(1 + popularity) (docs/bundle.md)."""
  if not beta:
    return scorer
  penalty = np.float32(beta) * np.log1p(np.asarray(popularity, np.float64)).astype(np.float32)
  return lambda users: scorer(users) - penalty


def evaluate_trained(trained, config: ml_collections.ConfigDict) -> dict[str, float]:
  """Metrics of a trained two-tower (`mmrec.train.Trained`) on `config.eval.split`, ranked
  as its bundle ranks (with the popularity calibration `eval.beta`)."""
  scorer = two_tower_scorer(trained.model, trained.data, trained.items, split=config.eval.split,
                            history_len=config.data.history_len)
  scorer = calibrated(scorer, trained.data.train_counts(), config.eval.get("beta", 0.0))
  return evaluate(scorer, trained.data, split=config.eval.split, ks=config.eval.ks,
                  batch_size=config.eval.batch_size)
