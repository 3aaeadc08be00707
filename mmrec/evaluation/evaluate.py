"""Full-ranking evaluation: every catalog item is a candidate, seen items are masked.

For the `test` split a user's seen items (masked from the ranking, and the
user tower's history) are their train and valid interactions; for `valid`,
their train interactions (`history="train"`: train alone for both). Targets
are grouped as head (top 20% of warm items by training count), tail (other
warm items) and cold (no training interaction).

The two-tower and popularity scorers are `EmbeddingScorer`s: their scores are
computed, masked and cut to the top k on the device, a chunk of users at a
time, and only the lists come back (benchmarks/eval_speed.py measures it
against a jitted matmul plus top-k). Any other callable scorer is ranked on
the host by `metrics.masked_topk`; both give the same lists.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mmrec.data.pipeline import ItemTable, UserHistories
from mmrec.data.schema import Interactions, RecDataset
from mmrec.evaluation import metrics as metrics_lib
from mmrec.models.towers import TwoTower
from mmrec.training.embed import embeddings

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
             history: str = "seen", intervals: bool = True) -> metrics_lib.Metrics:
  """Ranking metrics of `scorer` over the users with held-out items in `split`.

  `rerank(scores, k)`, when given, picks each user's list from their scores
  (seen items at -inf) instead of the plain top-k, e.g. tail-aware re-ranking.
  `history` picks the masked items (see `seen_interactions`); the scorer should
  build its lists from the same history. Each metric has its 95% bootstrap interval
  (`METRIC/ci_low`, `/ci_high`) unless `intervals=False`; `.per_user` holds each
  user's values (docs/evaluation.md).
  """
  seen_rows = seen_interactions(data, split, history)
  targets = items_by_user(data.splits[split], data.num_users)
  users = np.flatnonzero(np.bincount(data.splits[split].user, minlength=data.num_users))
  groups = metrics_lib.popularity_groups(data.train_counts(), data.is_cold)
  draws = metrics_lib.bootstrap_lib.DRAWS if intervals else 0
  acc = metrics_lib.RankingAccumulator(data.num_items, ks=tuple(ks), item_group=groups,
                                       bootstrap=draws)
  on_device = rerank is None and isinstance(scorer, EmbeddingScorer)
  if on_device:
    seen_csr = SeenItems(seen_rows, data.num_users)
  else:
    seen = items_by_user(seen_rows, data.num_users)
  if on_device:  # scored, masked and selected on the device, the next chunk dispatched
    # before this one's metrics are added (the device works while the host counts)
    chunks = [users[start:start + batch_size] for start in range(0, len(users), batch_size)]
    pending = [scorer.start_top_k(c, seen_csr, max(ks), batch_size) for c in chunks[:1]]
    for i, batch in enumerate(chunks):
      if i + 1 < len(chunks):
        pending.append(scorer.start_top_k(chunks[i + 1], seen_csr, max(ks), batch_size))
      acc.add(pending.pop(0)(), [targets[u] for u in batch])
    return acc.result()
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
  """Every user scores an item by its training count (as a rank-1 product: on the device)."""
  counts = data.train_counts().astype(np.float32)
  return EmbeddingScorer(np.ones((data.num_users, 1), np.float32), counts[:, None])


class SeenItems:
  """Each user's seen item indices, compressed by row (CSR), for masking chunks of users."""

  def __init__(self, interactions: Interactions, num_users: int):
    order = np.argsort(interactions.user, kind="stable")
    self.items = interactions.item[order].astype(np.int32)
    self.bounds = np.searchsorted(interactions.user[order], np.arange(num_users + 1))

  def padded(self, users: np.ndarray, fill: int) -> np.ndarray:
    """[len(users), W] seen items of `users`, padded with `fill`; W is a power of two (a
    few program shapes serve every chunk)."""
    start, end = self.bounds[users], self.bounds[np.asarray(users) + 1]
    width = max(1, int((end - start).max(initial=0)))
    width = 1 << (width - 1).bit_length()
    index = start[:, None] + np.arange(width)
    valid = index < end[:, None]
    taken = self.items[np.minimum(index, max(len(self.items) - 1, 0))] if len(self.items) else 0
    return np.where(valid, taken, fill).astype(np.int32)


@functools.partial(jax.jit, inline=True)
def _scores(user_emb: jax.Array, item_emb: jax.Array, penalty: jax.Array) -> jax.Array:
  # full float32 on every backend (TPUs would otherwise multiply in bfloat16)
  return jnp.matmul(user_emb, item_emb.T, precision=jax.lax.Precision.HIGHEST) - penalty


@functools.partial(jax.jit, static_argnames="k")
def _masked_top_k(user_emb, users, item_emb, penalty, seen, *, k: int):
  """The `k` best items of each of `users`, highest first (equal scores: lower index first,
  as `metrics.masked_topk`), with the items in `seen` [b, W] (padded with N) at -inf."""
  scores = _scores(user_emb[users], item_emb, penalty)
  scores = scores.at[jnp.arange(len(scores))[:, None], seen].set(-jnp.inf, mode="drop")
  values, index = jax.lax.top_k(scores, k)
  return index, jnp.isnan(values).any()  # top_k ranks NaN above every number


@dataclasses.dataclass
class EmbeddingScorer:
  """Scores `user_emb @ item_emb.T - penalty`, held on the device: `evaluate` scores,
  masks and selects there, a chunk of users at a time, with no per-user host work.
  Called with user indices, it returns their scores [b, N] as numpy (a plain Scorer)."""

  user_emb: np.ndarray | jax.Array  # [U, D]
  item_emb: np.ndarray | jax.Array  # [N, D]
  penalty: np.ndarray | jax.Array | None = None  # [N], subtracted (popularity calibration)

  def __post_init__(self):
    self.user_emb = jnp.asarray(self.user_emb, jnp.float32)
    self.item_emb = jnp.asarray(self.item_emb, jnp.float32)
    self.penalty = jnp.zeros(self.item_emb.shape[0], jnp.float32) if self.penalty is None \
        else jnp.asarray(self.penalty, jnp.float32)

  def __call__(self, users: np.ndarray) -> np.ndarray:
    return np.asarray(_scores(self.user_emb[np.asarray(users)], self.item_emb, self.penalty))

  def top_k(self, users: np.ndarray, seen: SeenItems, k: int, chunk: int) -> np.ndarray:
    """int64 [len(users), k]: each user's best unseen items (`len(users)` <= `chunk`; the
    chunk is padded to `chunk` rows so that every chunk runs one compiled program)."""
    return self.start_top_k(users, seen, k, chunk)()

  def start_top_k(self, users: np.ndarray, seen: SeenItems, k: int,
                  chunk: int) -> Callable[[], np.ndarray]:
    """`top_k`, dispatched to the device; call the result to wait for it."""
    users = np.asarray(users, np.int64)
    rows = np.pad(users, (0, chunk - len(users)))
    n = self.item_emb.shape[0]
    topk, has_nan = _masked_top_k(self.user_emb, rows, self.item_emb, self.penalty,
                                  seen.padded(rows, fill=n), k=k)

    def result() -> np.ndarray:
      if has_nan:
        raise ValueError("evaluate: the scores contain NaN (a diverged model?)")
      return np.asarray(topk, np.int64)[:len(users)]

    return result


def two_tower_scorer(model: TwoTower, data: RecDataset, items: ItemTable, *, split: str,
                     history_len: int) -> Scorer:
  histories = UserHistories(seen_interactions(data, split), history_len)
  item_emb, user_emb = embeddings(model, items, histories, np.arange(data.num_users))
  return EmbeddingScorer(user_emb, item_emb)


def write_metrics(path: str | pathlib.Path, metrics: dict, **context) -> None:
  from mmrec.files import write_text_atomic  # a killed run leaves the old or the new file
  write_text_atomic(path, json.dumps({**context, **metrics}, indent=2, sort_keys=True))


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
  if isinstance(scorer, EmbeddingScorer):
    return dataclasses.replace(scorer, penalty=scorer.penalty + penalty)
  return lambda users: scorer(users) - penalty


def evaluate_trained(trained, config: ml_collections.ConfigDict) -> dict[str, float]:
  """Metrics of a trained two-tower (`mmrec.training.two_tower.Trained`) on
  `config.eval.split`, ranked as its bundle ranks (with the popularity calibration
  `eval.beta`)."""
  scorer = two_tower_scorer(trained.model, trained.data, trained.items, split=config.eval.split,
                            history_len=config.data.history_len)
  scorer = calibrated(scorer, trained.data.train_counts(), config.eval.get("beta", 0.0))
  return evaluate(scorer, trained.data, split=config.eval.split, ks=config.eval.ks,
                  batch_size=config.eval.batch_size)
