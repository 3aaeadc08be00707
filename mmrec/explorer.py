"""The retrieval explorer behind notebooks/04: a user's history and several models'
recommendations side by side as image grids, steered by the tail-aware beta, and for
a chosen recommendation the history items that led to it (`mmrec.serving.explain`).

Everything goes through exported bundles (`mmrec.serving.Bundle`): a model is a
bundle plus, optionally, user-tower embeddings of every user; without them the
bundle's history pooling (`search_by_history`) stands in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import numpy as np

from mmrec import viz


@dataclasses.dataclass
class Model:
  """A bundle and, optionally, user-tower embeddings `[num_users, D]` matching it."""

  bundle: object  # mmrec.serving.Bundle
  user_vectors: np.ndarray | None = None


@dataclasses.dataclass
class Catalog:
  """What the explorer shows of each item, row = catalog index."""

  item_ids: np.ndarray  # str [N]
  titles: np.ndarray  # str [N]
  images: np.ndarray  # uint8 [N, S, S, 3]
  groups: np.ndarray  # int [N]: 0 head, 1 tail, 2 cold (mmrec.evaluation.metrics.popularity_groups)
  counts: np.ndarray  # int [N]: training interactions

  def __post_init__(self):
    n = len(self.item_ids)
    for name in ("titles", "images", "groups", "counts"):
      if len(getattr(self, name)) != n:
        raise ValueError(f"Catalog.{name} has {len(getattr(self, name))} rows, item_ids has {n}")
    self.row = {str(i): r for r, i in enumerate(self.item_ids.tolist())}

  def rows(self, ids: Sequence[str]) -> np.ndarray:
    """Catalog rows of bundle ids ("" = no result -> -1)."""
    return np.array([self.row.get(str(i), -1) for i in ids], np.int64)

  def find(self, query: str) -> int | None:
    """An exact item id, else the most popular item whose title holds every word of `query`."""
    query = query.strip()
    if not query:
      return None
    if query in self.row:
      return self.row[query]
    words = query.lower().split()
    hits = [r for r, t in enumerate(self.titles.tolist()) if all(w in t.lower() for w in words)]
    return max(hits, key=lambda r: (self.counts[r], -r)) if hits else None

  def note(self, row: int) -> str:
    return f"{viz.GROUP_NAMES[self.groups[row]]} · {self.counts[row]} in train"


class RetrievalExplorer:
  """ipywidgets UI: user picker, beta slider, history grid, one recommendation grid per
  model, and an "items like this one" search box. `widget` is the thing to display."""

  def __init__(self, models: Mapping[str, Model], catalog: Catalog,
               histories: Sequence[np.ndarray], users: Sequence[int], *, k: int = 12,
               history_shown: int = 12, beta_max: float | None = None,
               image_size: int = 80):
    """`beta_max`: the slider's end; default `beta_range` of the first model, so that the
    whole travel matters (its end turns the lists almost wholly tail/cold)."""
    if not models:
      raise ValueError("RetrievalExplorer: give at least one model")
    if not len(users):
      raise ValueError("RetrievalExplorer: no users to pick from")
    self.models, self.catalog, self.histories = dict(models), catalog, histories
    self.k, self.history_shown, self.image_size = k, history_shown, image_size
    if beta_max is None:
      beta_max = beta_range(next(iter(self.models.values())), users, histories, catalog, k)
    beta_step = float(f"{beta_max / 100:.1g}")  # ~100 stops, a round step
    self.user = widgets.Dropdown(
        options=[(f"user {u} · {len(histories[u])} items", int(u)) for u in users],
        description="user")
    self.beta = widgets.FloatSlider(0.0, min=0.0, max=float(beta_max), step=beta_step,
                                    description="beta", continuous_update=False,
                                    readout_format=".3f", layout=widgets.Layout(width="420px"))
    self.beta.add_class("mmrec-beta")
    self.history = widgets.HTML()
    self.recs = {name: widgets.HTML() for name in self.models}
    for w in self.recs.values():
      w.add_class("mmrec-recs")
    self.query = widgets.Text(placeholder="item id or words of a title, then Enter",
                              description="items like", continuous_update=False)
    self.similar = {name: widgets.HTML() for name in self.models}
    for w in self.similar.values():
      w.add_class("mmrec-similar")
    self.query_item = widgets.HTML()
    self.why = widgets.Dropdown(description="why?", layout=widgets.Layout(width="520px"))
    self.choices: list[tuple[str, int]] = []
    self.explanation = widgets.HTML()
    self.explanation.add_class("mmrec-explanation")
    for w in (self.query_item, *self.recs.values(), *self.similar.values()):
      w.layout.margin = "0 24px 0 0"
    columns = lambda boxes: widgets.HBox(  # noqa: E731
        list(boxes.values()), layout=widgets.Layout(align_items="flex-start"))
    self.widget = widgets.VBox([
        widgets.HBox([self.user, self.beta]), self.history, columns(self.recs), self.why,
        self.explanation, self.query, columns({"query": self.query_item, **self.similar})])
    self.widget.add_class("mmrec-explorer")
    self.user.observe(lambda _: self.render_user(), names="value")
    self.beta.observe(lambda _: self.render(), names="value")
    self.query.observe(lambda _: self.render_similar(), names="value")
    self._quiet = False
    self.why.observe(lambda _: self._quiet or self.render_explanation(), names="value")
    self.render()

  def seen_ids(self, user: int) -> list[str]:
    return [str(self.catalog.item_ids[r]) for r in self.histories[user]]

  def recommend(self, name: str, user: int, beta: float) -> np.ndarray:
    """Catalog rows recommended to `user` by model `name`, best first; seen items excluded."""
    model, seen = self.models[name], self.seen_ids(user)
    if model.user_vectors is not None:
      ids, _ = model.bundle.search(model.user_vectors[user][None], self.k, exclude=[seen],
                                   beta=beta)
      ids = ids[0]
    else:
      ids, _ = model.bundle.search_by_history(seen, self.k, beta=beta)
    rows = self.catalog.rows(ids)
    return rows[rows >= 0]

  def _grid(self, rows: np.ndarray, heading: str, subheading: str = "",
            columns: int | None = None) -> str:
    c = self.catalog
    return viz.image_grid_html(c.images[rows], c.titles[rows], [c.note(r) for r in rows],
                               c.item_ids[rows].tolist(), size=self.image_size,
                               columns=columns or max(1, -(-self.k // 2)), heading=heading,
                               subheading=subheading)

  def render(self) -> None:
    self.render_user()
    self.render_similar()

  def render_user(self) -> None:
    user, beta = self.user.value, self.beta.value
    options = []
    for name, w in self.recs.items():
      rows = self.recommend(name, user, beta)
      shares = viz.shares_label(viz.group_shares(rows, self.catalog.groups))
      w.value = self._grid(rows, f"{name}: top {self.k}", f"beta {beta:.3f} · {shares}")
      options += [(f"{name} #{rank + 1}: {self.catalog.titles[r]}", (name, int(r)))
                  for rank, r in enumerate(rows.tolist())]
    chosen = self.chosen
    self.choices = [choice for _, choice in options]  # the dropdown's values index these
    keep = self.choices.index(chosen) if chosen in self.choices else 0
    self._quiet = True  # one render below, not one per trait change
    try:
      self.why.options = [(label, i) for i, (label, _) in enumerate(options)]
      self.why.value = keep if options else None
    finally:
      self._quiet = False
    self.render_explanation()

  @property
  def chosen(self) -> tuple[str, int] | None:
    """The recommendation to explain: (model name, catalog row), or None."""
    i = self.why.value
    return None if i is None or i >= len(self.choices) else self.choices[i]

  def choose(self, name: str, row: int) -> None:
    self.why.value = self.choices.index((name, int(row)))

  def explain(self, name: str, user: int, row: int, top: int = 5) -> dict:
    """The bundle's explanation of model `name` recommending catalog row `row` to `user`."""
    item_id = str(self.catalog.item_ids[row])
    return self.models[name].bundle.explain_history(self.seen_ids(user), [item_id],
                                                    beta=self.beta.value, top=top)[0]

  def render_explanation(self) -> None:
    """The history grid, the items that led to the chosen recommendation framed, and
    those items with their shares of its score."""
    user, c = self.user.value, self.catalog
    recent = np.asarray(self.histories[user])[::-1][:self.history_shown]
    heading = f"user {user}: {len(self.histories[user])} items seen, most recent first"
    e, led, subheading = None, {}, ""
    if self.chosen is not None:
      name, row = self.chosen
      e = self.explain(name, user, row)
      led = {c.row[h["id"]]: h["share"] for h in e["history"][:3] if h["contribution"] > 0}
      subheading = f"framed: what led {name} to {c.titles[row]}"
    self.history.value = viz.image_grid_html(  # no fixed columns: long histories wrap
        c.images[recent], c.titles[recent], [c.note(r) for r in recent],
        c.item_ids[recent].tolist(), size=self.image_size, heading=heading,
        subheading=subheading, highlight=[r in led for r in recent.tolist()])
    if e is None:
      self.explanation.value = ""
      return
    top = np.array([c.row[h["id"]] for h in e["history"]], np.int64)
    notes = [f"{h['share']:+.0%} of the history's part" for h in e["history"]]
    how = "exact" if e["exact"] else "approximate"
    parts = e["modalities"]
    split = " · ".join(f"{k} {v:+.3f}" for k, v in parts.items()) if parts else "n/a"
    self.explanation.value = viz.image_grid_html(
        c.images[top], c.titles[top], notes, c.item_ids[top].tolist(), size=self.image_size,
        heading=f"why {name} recommends {c.titles[row]} (score {e['score']:.3f})",
        subheading=f"{e['method']} ({how}) · prior {e['prior']:+.3f} · popularity "
                   f"{e['popularity']:+.3f} · modalities: {split}",
        highlight=[r in led for r in top.tolist()])

  def render_similar(self) -> None:
    row = self.catalog.find(self.query.value)
    if row is None:
      self.query_item.value = (f"<i>no item matches {self.query.value!r}</i>"
                               if self.query.value.strip() else "")
      for w in self.similar.values():
        w.value = ""
      return
    item_id = str(self.catalog.item_ids[row])
    self.query_item.value = self._grid(np.array([row]), "query", item_id, columns=1)
    for name, w in self.similar.items():
      ids, _ = self.models[name].bundle.similar(item_id, self.k, beta=self.beta.value)
      rows = self.catalog.rows(ids)
      rows = rows[rows >= 0]
      shares = viz.shares_label(viz.group_shares(rows, self.catalog.groups))
      w.value = self._grid(rows, f"{name}: items like it",
                           f"beta {self.beta.value:.3f} · {shares}")


def beta_range(model: Model, users: Sequence[int], histories: Sequence[np.ndarray],
               catalog: Catalog, k: int, *, share: float = 0.95, sample: int = 50) -> float:
  """The smallest beta (on a log grid, 1e-4 to 10) at which the top-`k` of up to `sample`
  users is at least `share` outside the head: the explorer's slider end, so that the
  slider's whole travel changes the lists (exact numpy scores over the bundle)."""
  bundle, users = model.bundle, np.asarray(users, np.int64)[:sample]
  seen = [[str(catalog.item_ids[r]) for r in histories[u]] for u in users]
  if model.user_vectors is not None:
    queries = model.user_vectors[users].astype(np.float64)
  else:
    queries = np.stack([bundle.embeddings[bundle.index_of(ids)].mean(0) for ids in seen])
    queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
  scores = queries @ bundle.embeddings.T
  for q, ids in enumerate(seen):
    scores[q, bundle.index_of(ids)] = -np.inf
  groups = catalog.groups[catalog.rows(bundle.item_ids)]
  outside_head = (groups != 0) & (catalog.rows(bundle.item_ids) >= 0)
  penalty = np.log1p(bundle.popularity)
  k = min(k, scores.shape[1] - 1)
  grid = np.geomspace(1e-4, 10.0, 81)
  for beta in grid:
    top = np.argpartition(-(scores - beta * penalty), k - 1, axis=1)[:, :k]
    if outside_head[top].mean() >= share:
      return float(f"{beta:.2g}")
  return float(grid[-1])


def recommend_all(model: Model, users: Sequence[int], histories: Sequence[np.ndarray],
                  catalog: Catalog, k: int, **options) -> np.ndarray:
  """Catalog rows `[len(users), k]` recommended to each user (seen items excluded; -1 = none).

  `options` go to `Bundle.search` (beta, tail_balance, restrict, ...). Needs user vectors.
  """
  if model.user_vectors is None:
    raise ValueError("recommend_all needs the model's user vectors")
  users = np.asarray(users, np.int64)
  exclude = [[str(catalog.item_ids[r]) for r in histories[u]] for u in users]
  ids, _ = model.bundle.search(model.user_vectors[users], k, exclude=exclude, **options)
  return catalog.rows(ids.ravel()).reshape(ids.shape)


def beta_sweep(model: Model, users: Sequence[int], histories: Sequence[np.ndarray],
               targets: Sequence[np.ndarray], catalog: Catalog, betas: Sequence[float],
               k: int = 20) -> list[dict[str, float]]:
  """Ranking metrics at each beta (`mmrec.evaluation.metrics`, head/tail/cold groups of
  `catalog.groups`): one dict per beta, with "beta" set, for the recall/tail-share curve."""
  from mmrec.evaluation.metrics import RankingAccumulator
  points = []
  for beta in betas:
    topk = recommend_all(model, users, histories, catalog, k, beta=float(beta))
    if (topk < 0).any():
      raise ValueError(f"beta={beta}: some users got fewer than k={k} items")
    acc = RankingAccumulator(len(catalog.item_ids), ks=(k,), item_group=catalog.groups)
    acc.add(topk, [targets[u] for u in users])
    points.append({"beta": float(beta), **acc.result()})
  return points


def load_model(config, model_dir, seen) -> tuple[Model, object]:
  """The two-tower of `model_dir` as a `Model` and its `mmrec.training.two_tower.Trained`.

  Trains to `config.train.steps` (resuming; a finished run is only read back), exports the bundle
  to `model_dir/bundle` when missing, and embeds every user with the user tower from
  the interactions `seen` (e.g. `mmrec.evaluation.evaluate.seen_interactions`).
  """
  import pathlib

  from mmrec import jobs
  from mmrec.data.pipeline import UserHistories
  from mmrec.serving import load_bundle
  from mmrec.training import embed as embed_lib

  model_dir = pathlib.Path(model_dir)
  trained = jobs.train(config, model_dir)  # resumes: a finished run is only read back
  if not (model_dir / "bundle" / "manifest.json").exists():
    jobs.export(trained, config, model_dir / "bundle")
  _, vectors = embed_lib.embeddings(trained.model, trained.items,
                                    UserHistories(seen, config.data.history_len),
                                    np.arange(trained.data.num_users))
  return Model(load_bundle(model_dir / "bundle"), vectors), trained
