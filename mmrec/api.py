"""`mmrec.load(workdir)`: a trained two-tower as one handle, for notebooks and scripts.

    import mmrec
    model = mmrec.load("runs/two_tower")         # config from WORKDIR/config.json
    model.recommend(["sku-12", "sku-40"], k=10)  # a history of original item ids
    model.similar("sku-12", k=5)
    model.embed_items([{"item_id": "new-1", "title": "Linen dress", "image": "a.jpg"}])
    model.evaluate("test")                       # the numbers `mmrec evaluate` prints

The catalog's embeddings are computed once and kept; the jitted functions live at module
level, so later calls only run them. Scores and rankings are evaluation's: the dot product
of the towers' outputs, minus `beta * ln(1 + training popularity)` (docs/bundle.md).
"""

from __future__ import annotations

import json
import pathlib
import typing
from collections.abc import Iterable, Mapping, Sequence

import ml_collections
import numpy as np

from mmrec import saved_config
from mmrec.data.schema import Catalog


class Recommendation(typing.NamedTuple):
  item_id: str
  score: float
  title: str


def read_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (WORKDIR/config.json), tuples restored;
  `saved_config.SavedConfigError` (a ValueError) names the file when it is damaged."""
  return saved_config.read(workdir)


def load(workdir: str | pathlib.Path, config: ml_collections.ConfigDict | None = None, *,
         compilation_cache: bool = True) -> "Model":
  """The model trained in `workdir`, at its best validated (else latest) checkpoint.

  `config`: instead of WORKDIR/config.json. `compilation_cache`: turn on JAX's persistent
  compilation cache (mmrec.jax_cache), so that a second session compiles nothing.
  """
  from mmrec import jax_cache
  from mmrec.training import two_tower as train_lib
  if compilation_cache:
    jax_cache.enable()
  config = read_config(workdir) if config is None else config
  return Model(train_lib.restore(workdir, config), config, pathlib.Path(workdir))


class Model:
  """A trained two-tower: `recommend`, `similar`, `embed_items`, `evaluate`."""

  def __init__(self, trained, config: ml_collections.ConfigDict, workdir: pathlib.Path):
    self.trained, self.config, self.workdir = trained, config, workdir
    self.data = trained.data
    self.item_ids = np.asarray(self.data.catalog.item_id).astype(str)
    self._index = {item: i for i, item in enumerate(self.item_ids)}
    self._item_emb: np.ndarray | None = None
    self._log_pop = np.log1p(self.data.train_counts().astype(np.float64)).astype(np.float32)

  @property
  def step(self) -> int:
    return self.trained.step

  def __repr__(self) -> str:
    return (f"<mmrec.Model {self.config.get('name', '')} step {self.step} from {self.workdir}: "
            f"{self.data.num_items} items, {self.data.num_users} users>")

  def item_embeddings(self) -> np.ndarray:
    """float32 [N, D] of the catalog, by item index (computed on first use, then kept)."""
    if self._item_emb is None:
      from mmrec.training.embed import item_embeddings
      self._item_emb = item_embeddings(self.trained.model, self.trained.items)
      self.trained.model.item_cache[...] = self._item_emb  # the user tower reads it
    return self._item_emb

  def indices(self, item_ids: Iterable[str]) -> np.ndarray:
    """Catalog rows of original item ids; ValueError naming the unknown ones."""
    item_ids = [str(i) for i in item_ids]
    unknown = [i for i in item_ids if i not in self._index]
    if unknown:
      raise ValueError(f"{len(unknown)} item id(s) not in the catalog, e.g. {unknown[:5]}")
    return np.array([self._index[i] for i in item_ids], np.int64)

  def embed_history(self, history: Sequence[str]) -> np.ndarray:
    """float32 [D]: the user tower's embedding of a history (original ids, oldest first;
    the last `data.history_len` count)."""
    from mmrec.data.pipeline import UserHistories
    from mmrec.data.schema import Interactions
    from mmrec.training.embed import user_embeddings
    items = self.indices(history)
    self.item_embeddings()
    n = len(items)
    histories = UserHistories(Interactions(np.zeros(n), items, np.arange(n)),
                              self.config.data.history_len)
    return user_embeddings(self.trained.model, histories, np.zeros(1, np.int64),
                           batch_size=8)[0]

  def recommend(self, history: Sequence[str], k: int = 20, beta: float | None = None, *,
                exclude_history: bool = True) -> list[Recommendation]:
    """The `k` best items for a user with this `history` (original item ids, oldest first),
    best first; items of the history are left out unless `exclude_history=False`. `beta`
    (default the config's `eval.beta`) discounts popular items: score - beta * ln(1 +
    training popularity), as the bundle and `mmrec recommend` rank."""
    beta = float(self.config.eval.get("beta", 0.0) if beta is None else beta)
    scores = self.item_embeddings() @ self.embed_history(history)
    scores = scores - np.float32(beta) * self._log_pop if beta else scores
    return self._ranked(scores, self.indices(history) if exclude_history else [], k)

  def similar(self, item_id: str, k: int = 10) -> list[Recommendation]:
    """The `k` items whose embeddings score highest against `item_id`'s (itself left out)."""
    emb = self.item_embeddings()
    row = self.indices([item_id])
    return self._ranked(emb @ emb[row[0]], row, k)

  def _ranked(self, scores: np.ndarray, exclude: np.ndarray, k: int) -> list[Recommendation]:
    """The top `k` of `scores` [N] without the rows `exclude` (equal scores: lower index
    first, as evaluation ranks); fewer when fewer items are left."""
    from mmrec.evaluation.metrics import masked_topk
    if k < 1:
      raise ValueError(f"k={k} must be at least 1")
    scores = np.array(scores, np.float32)
    scores[exclude] = -np.inf
    top = masked_topk(scores[None], None, min(k, len(scores)))[0]
    titles = self.data.catalog.title
    return [Recommendation(str(self.item_ids[i]), float(scores[i]), str(titles[i]))
            for i in top if np.isfinite(scores[i])]

  def embed_items(self, rows: Sequence[Mapping] | Catalog) -> np.ndarray:
    """float32 [M, D] item-tower embeddings of products from their content only (new items
    have no trained ID). `rows`: dicts like the catalog's and the new-items feed's, with
    `item_id` (or `id`), `title`, optional `description`, `category` and `image` (the
    encoded bytes, or a file path); or a `Catalog`."""
    from mmrec.retrieval import new_items
    catalog = rows if isinstance(rows, Catalog) else catalog_from_rows(rows)
    return new_items.embed(self.trained, self.config, catalog)

  def evaluate(self, split: str | None = None, ks: Sequence[int] | None = None,
               beta: float | None = None) -> dict[str, float]:
    """Full-ranking metrics on `split` (default `eval.split`), as `mmrec evaluate` computes
    them (without writing WORKDIR/metrics.json)."""
    from mmrec.evaluation import evaluate as eval_lib
    config = ml_collections.ConfigDict(self.config.to_dict())
    config.eval.split = split or config.eval.split
    config.eval.ks = tuple(ks or config.eval.ks)
    if beta is not None:
      config.eval.beta = float(beta)
    return eval_lib.evaluate_trained(self.trained, config)


def catalog_from_rows(rows: Sequence[Mapping]) -> Catalog:
  """A `Catalog` of product dicts (see `Model.embed_items`); ValueError naming a bad row."""
  fields = ("title", "description", "category")
  ids, texts, images = [], {f: [] for f in fields}, []
  for number, row in enumerate(rows):
    item_id = row.get("item_id", row.get("id"))
    if item_id in (None, "") or not row.get("title"):
      raise ValueError(f"row {number}: `item_id` (or `id`) and `title` are required, got "
                       f"{sorted(row)}")
    ids.append(str(item_id))
    for f in fields:
      texts[f].append(str(row.get(f) or ""))
    image = row.get("image") or b""
    images.append(image if isinstance(image, bytes) else pathlib.Path(image).read_bytes())
  if not ids:
    raise ValueError("no rows to embed")
  return Catalog(item_id=np.array(ids), image=images,
                 **{f: np.array(v) for f, v in texts.items()})
