"""Why an item was recommended: its score split over the user's history and over the
item's modalities (text, image, ID). numpy only (docs/serving.md, "Explanations").

History methods, chosen as `Bundle.search_by_history` chooses its query:
- "linear_profile" (exact): the bundle holds the linear profile tower in closed
  form (manifest `explain.user_tower`); user = normalize(sum_h g_h / sqrt(n) + prior),
  so a score u . v is sum_h (g_h . v) / (sqrt(n) |u_raw|) + prior . v / |u_raw|.
  With `item_bias` the user has one more coordinate, 1, and the item's last
  coordinate, its learned bias, is one more exact term of the score.
- "pooled" (exact): no user tower; the query is the normalised mean of the history.
- "leave_one_out" (approximate): any other exported tower (needs jax); a history
  item's contribution is the score minus the score without it.
Modalities (exact, manifest `explain.modalities`): v = base + sum_m part_m, the
parts Shapley values of the item tower's inputs, so u . v = u . base + sum_m u . part_m.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrec.serving.format import BundleError, load_array

if TYPE_CHECKING:
  from mmrec.serving.bundle import Bundle

METHODS = ("linear_profile", "pooled", "leave_one_out", "query")  # query: an embedding


def has_linear_tower(manifest: dict) -> bool:
  return isinstance(manifest.get("explain"), dict) and "user_tower" in manifest["explain"]


def explain_files(manifest: dict) -> list[str]:
  """The files of the explanation part (carried over by bundle updates)."""
  part = manifest.get("explain")
  return list(part.get("files", [])) if isinstance(part, dict) else []


class LinearProfileTower:
  """The linear profile tower in numpy: history g_h = item[j_h] + v_h @ map."""

  def __init__(self, path: pathlib.Path, description: dict, model_index: dict[str, int],
               dimension: int):
    self.history_len = _positive_int(path, "explain.user_tower.history_len",
                                     description.get("history_len"))
    self.normalize = bool(description.get("normalize", True))
    self.bias = bool(description.get("item_bias", False))  # user = [normalised raw, 1]
    m, d = len(model_index), dimension - self.bias
    self.item = _array(path, description, "item_file", np.float32, (m + 1, d))
    self.map = _array(path, description, "map_file", np.float32, (dimension, d))
    self.prior = _array(path, description, "prior_file", np.float32, (d,))
    self._model_index, self._unseen = model_index, m

  def history_vectors(self, ids: Sequence[str], rows: np.ndarray, embeddings: np.ndarray
                      ) -> np.ndarray:
    """float64 [n, D'] (D' = D - item_bias): each history item's g_h (before 1/sqrt(n))."""
    index = [self._model_index.get(i, self._unseen) for i in ids]
    return (self.item[index].astype(np.float64)
            + embeddings[rows].astype(np.float64) @ self.map.astype(np.float64))

  def raw_user(self, vectors: np.ndarray) -> np.ndarray:
    return vectors.sum(0) / np.sqrt(max(len(vectors), 1)) + self.prior.astype(np.float64)

  def scale(self, raw: np.ndarray) -> float:
    """The normalisation divisor: |u_raw| (as the model's rsqrt(max(|u|^2, 1e-12)))."""
    return float(np.sqrt(max(raw @ raw, 1e-12))) if self.normalize else 1.0

  def embed(self, histories: Sequence[Sequence[str]], rows_of, embeddings: np.ndarray
            ) -> np.ndarray:
    """float32 [Q, D] user embeddings, as the exported user tower computes them."""
    out = np.ones((len(histories), embeddings.shape[1]), np.float32)  # bias coordinate: 1
    for q, ids in enumerate(histories):
      ids = list(ids)[-self.history_len:]
      vectors = self.history_vectors(ids, rows_of(ids), embeddings) if ids else np.zeros(
          (0, len(self.prior)))
      raw = self.raw_user(vectors)
      out[q, :len(raw)] = raw / self.scale(raw)
    return out


class Explainer:
  """The explanation parts of one bundle, loaded and checked on first use."""

  def __init__(self, bundle: "Bundle"):
    path, part = bundle.path, bundle.manifest.get("explain", {})
    if not isinstance(part, dict):
      raise BundleError(f"{path}/manifest.json: field 'explain' must be a dict")
    self.bundle, self.tower, self.modalities, self._model_index = bundle, None, None, {}
    if not part:
      return
    items = _array(path, part, "items_file", np.str_, None)
    model_index = {item_id: i for i, item_id in enumerate(items.tolist())}
    d = bundle.dimension
    if "user_tower" in part:
      self.tower = LinearProfileTower(path, part["user_tower"], model_index, d)
    if "modalities" in part:
      spec = part["modalities"]
      names = spec.get("names")
      if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise BundleError(f"{path}/manifest.json: explain.modalities.names must be a "
                          f"non-empty list of names, got {names!r}")
      self.names = names
      self.base = _array(path, spec, "base_file", np.float32, (d,))
      self.parts = _array(path, spec, "parts_file", np.float16, (len(items), len(names) - 1, d))
      self.modalities = spec
    self._model_index = model_index

  def modality_vectors(self, rows: np.ndarray) -> list[np.ndarray | None]:
    """Per bundle row: the [G, D] float64 parts (names order), None for items the
    model never embedded (added later)."""
    out = []
    for row in rows.tolist():
      j = self._model_index.get(str(self.bundle.item_ids[row]))
      if self.modalities is None or j is None:
        out.append(None)
        continue
      stored = self.parts[j].astype(np.float64)
      rest = self.bundle.embeddings[row].astype(np.float64) - self.base - stored.sum(0)
      out.append(np.concatenate([rest[None], stored]))
    return out


def explainer(bundle: "Bundle") -> Explainer:
  """The bundle's `Explainer`, cached on it."""
  cached = bundle.__dict__.get("_explainer")
  if cached is None:
    cached = bundle.__dict__["_explainer"] = Explainer(bundle)
  return cached


def explain_history(bundle: "Bundle", history_ids: Sequence[str], item_ids: Sequence[str], *,
                    beta: float | None = None, top: int | None = 5,
                    user_tower: bool | None = None) -> list[dict[str, Any]]:
  """Explanations of `item_ids` recommended from `history_ids` (oldest first).

  Each is a dict: `method` (METHODS), `exact`, `score` (as `search_by_history`
  returns it: popularity-calibrated with `beta`, default the bundle's), `history`
  (the `top` contributing history items, best first: id, contribution, share =
  contribution / sum of |contributions|), `other_history` (the contributions
  left out of `top`), `prior` (the tower's empty-profile term; 0 without one),
  `item_bias` (the item's learned bias, with a linear tower of a model with
  `item_bias`; else 0), `popularity` (-beta ln(1 + popularity)) and `modalities`
  (or None). With an exact method,
  sum(history) + other_history + prior + item_bias + popularity = score.
  """
  if isinstance(history_ids, str) or not len(history_ids):
    raise ValueError("history_ids must be a non-empty list of item ids")
  history_ids = list(history_ids)
  rows = bundle.index_of(item_ids) if len(item_ids) else np.zeros(0, np.int64)
  targets = bundle.embeddings[rows].astype(np.float64)  # [K, D]
  use_tower = bundle.has_user_tower if user_tower is None else user_tower
  ex = explainer(bundle)
  prior = bias = np.zeros(len(rows))
  if use_tower and ex.tower is not None:
    method, query, ids, contrib, prior, bias = "linear_profile", *_linear(
        bundle, ex.tower, history_ids, targets)
  elif use_tower:
    method, query, ids, contrib = "leave_one_out", *_leave_one_out(bundle, history_ids, targets)
  else:
    method, query, ids, contrib = "pooled", *_pooled(bundle, history_ids, targets)
  return [_explanation(bundle, ex, method, row, query, ids, contrib[:, k], prior[k], beta, top,
                       bias[k]) for k, row in enumerate(rows.tolist())]


def explain_query(bundle: "Bundle", query: np.ndarray, item_ids: Sequence[str], *,
                  beta: float | None = None) -> list[dict[str, Any]]:
  """Explanations of items found for a query embedding: score, popularity, modalities."""
  rows = bundle.index_of(item_ids) if len(item_ids) else np.zeros(0, np.int64)
  q = np.asarray(query, np.float64).reshape(-1)
  ex, history_keys = explainer(bundle), ("history", "other_history", "prior", "item_bias")
  out = []
  for row in rows.tolist():
    found = _explanation(bundle, ex, "query", row, q, [], np.zeros(0), 0.0, beta, 0)
    out.append({k: v for k, v in found.items() if k not in history_keys})
  return out


def _distinct(ids: Sequence[str]) -> list[str]:
  return list(dict.fromkeys(ids))


def _by_id(ids: Sequence[str], values: np.ndarray) -> tuple[list[str], np.ndarray]:
  """Per-position values [n, K] summed per distinct id -> (ids, [m, K])."""
  distinct = _distinct(ids)
  where = {i: p for p, i in enumerate(distinct)}
  out = np.zeros((len(distinct), values.shape[1]))
  np.add.at(out, [where[i] for i in ids], values)
  return distinct, out


def _linear(bundle, tower, history_ids, targets):
  ids = history_ids[-tower.history_len:]
  vectors = tower.history_vectors(ids, bundle.index_of(ids), bundle.embeddings)
  raw = tower.raw_user(vectors)
  scale, d = tower.scale(raw), len(raw)  # d: the user's coordinates before the bias one
  per_position = vectors @ targets[:, :d].T / (np.sqrt(len(ids)) * scale)  # [n, K]
  prior = tower.prior.astype(np.float64) @ targets[:, :d].T / scale
  bias = targets[:, d] if tower.bias else np.zeros(len(targets))
  query = np.concatenate([raw / scale, [1.0]]) if tower.bias else raw / scale
  return (query, *_by_id(ids, per_position), prior, bias)


def _pooled(bundle, history_ids, targets):
  vectors = bundle.embeddings[bundle.index_of(history_ids)].astype(np.float64)
  mean = vectors.mean(0)
  norm = np.linalg.norm(mean)
  if norm == 0:
    raise ValueError("the history items' embeddings average to the zero vector")
  per_position = vectors @ targets.T / (len(vectors) * norm)
  return (mean / norm, *_by_id(history_ids, per_position))


def _leave_one_out(bundle, history_ids, targets):
  h = int(bundle.manifest["user_tower"]["history_len"])
  ids = _distinct(history_ids[-h:])
  variants = [history_ids] + [[i for i in history_ids if i != left] for left in ids]
  users = bundle.embed_histories(variants).astype(np.float64)  # [1 + m, D]
  scores = users @ targets.T
  return users[0], ids, scores[0][None] - scores[1:]


def _explanation(bundle, ex, method, row, query, ids, contrib, prior, beta, top, bias=0.0):
  beta = bundle.default_beta if beta is None else float(beta)
  raw = float(query @ bundle.embeddings[row].astype(np.float64))
  popularity = -beta * float(np.log1p(bundle.popularity[row]))
  order = np.argsort(-contrib, kind="stable")
  shown = order if top is None else order[:top]
  total = float(np.abs(contrib).sum()) or 1.0
  parts = ex.modality_vectors(np.array([row]))[0]
  modalities = None
  if parts is not None:
    modalities = {name: float(query @ p) for name, p in zip(ex.names, parts)}
    modalities["base"] = float(query @ ex.base.astype(np.float64))
  return {
      "method": method, "exact": method != "leave_one_out", "score": raw + popularity,
      "history": [{"id": str(ids[p]), "contribution": float(contrib[p]),
                   "share": float(contrib[p]) / total} for p in shown.tolist()],
      "other_history": float(contrib[order[len(shown):]].sum()),
      "prior": float(prior), "item_bias": float(bias), "popularity": popularity,
      "modalities": modalities,
  }


def _positive_int(path, field, value) -> int:
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise BundleError(f"{path}/manifest.json: {field} must be an int >= 1, got {value!r}")
  return value


def _array(path: pathlib.Path, spec: dict, key: str, dtype, shape) -> np.ndarray:
  name = spec.get(key)
  if not isinstance(name, str):
    raise BundleError(f"{path}/manifest.json: explain field {key!r} must name a file, "
                      f"got {name!r}")
  array = load_array(path, name, dtype, shape,
                     "from the bundle's dimension and the explain items file")
  if array.dtype.kind == "f" and not np.isfinite(array).all():
    raise BundleError(f"{path / name}: holds NaN or inf")
  return array
