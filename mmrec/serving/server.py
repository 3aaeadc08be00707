"""HTTP service over an index bundle: `mmrec serve --bundle DIR` (docs/serving.md).

FastAPI + uvicorn, numpy + scann (no jax). `BundleWatcher` (watch.py) swaps in
a new bundle when the exporter replaces the directory; `ServiceMiddleware`
(middleware.py) limits request bodies and records the Prometheus metrics.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi_offline import FastAPIOffline
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from mmrec.serving import explain as explain_lib
from mmrec.serving.bundle import Bundle, UnknownItemError
from mmrec.serving.middleware import CONTENT_TYPE as METRICS_CONTENT_TYPE
from mmrec.serving.middleware import Metrics, ServiceMiddleware
from mmrec.serving.watch import BundleWatcher, Served

MAX_K = 1000  # and never more than the bundle's num_items
MAX_HISTORY = 1000
MAX_EXCLUDE = 10_000
MAX_DIMENSION = 4096  # embedding length accepted before the bundle's dimension is checked
MAX_BODY_BYTES = 1 << 20
MAX_BETA = 100.0


class RecommendRequest(BaseModel):
  """Exactly one of `history` or `embedding`."""
  model_config = ConfigDict(extra="forbid")
  history: list[str] | None = Field(None, min_length=1, max_length=MAX_HISTORY,
                                    description="Item ids the user interacted with; pooled "
                                    "into a query (mean, L2-normalised) and excluded.")
  embedding: list[FiniteFloat] | None = Field(None, min_length=1, max_length=MAX_DIMENSION,
                                              description="A user-tower embedding [dimension].")
  k: int = Field(10, ge=1, le=MAX_K, description="Results wanted (also <= the bundle's items).")
  beta: FiniteFloat | None = Field(None, ge=0.0, le=MAX_BETA,
                                   description="Popularity calibration: score - beta * "
                                   "ln(1 + pop); default: the bundle's default_beta.")
  tail_balance: FiniteFloat = Field(0.0, ge=0.0, le=1.0,
                                    description="Head/tail balance (xQuAD-style) in [0, 1].")
  exclude: list[str] = Field(default_factory=list, max_length=MAX_EXCLUDE,
                             description="Item ids never to return; unknown ids are ignored.")
  restrict: list[str] | None = Field(None, min_length=1, max_length=MAX_EXCLUDE,
                                     description="Only return these item ids.")
  category: str | None = Field(None, description="Only return items of this metadata category.")

  @model_validator(mode="after")
  def _one_query(self):
    if (self.history is None) == (self.embedding is None):
      raise ValueError("give exactly one of 'history' (item ids) or 'embedding' (a vector)")
    if self.restrict is not None and self.category is not None:
      raise ValueError("give at most one of 'restrict' and 'category'")
    return self


class Item(BaseModel):
  """A recommended item; metadata columns of the bundle (title, category, ...) when present."""
  model_config = ConfigDict(extra="allow")
  id: str
  score: float
  explanation: Explanation | None = None


class Contribution(BaseModel):
  id: str = Field(description="A history item.")
  contribution: float = Field(description="Its part of the score (score units).")
  share: float = Field(description="contribution / the sum of |contributions| of the history.")


class Explanation(BaseModel):
  """Why an item scored as it did (mmrec.serving.explain; docs/serving.md)."""
  method: str = Field(description="linear_profile or pooled (exact), leave_one_out "
                      "(approximate), or query (an embedding request: modalities only).")
  exact: bool = Field(description="Whether the terms sum to the score.")
  score: float
  history: list[Contribution] = Field(None, description="The most contributing history items.")
  other_history: float = Field(None, description="The contributions of the items not listed.")
  prior: float = Field(None, description="The user tower's own term (its empty-profile user).")
  item_bias: float = Field(None, description="The item's learned bias (models with "
                           "model.item_bias; 0 otherwise).")
  popularity: float = Field(description="-beta ln(1 + popularity).")
  modalities: dict[str, float] | None = Field(description="The raw score split into the item's "
                                              "text, image and id parts and a base term.")


class Recommendations(BaseModel):
  items: list[Item]


def create_app(bundle_dir: str | os.PathLike, *, poll_seconds: float = 2.0,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
  """The service over `bundle_dir`; raises `BundleError` if it does not load now."""
  watcher = BundleWatcher(bundle_dir, poll_seconds)
  metrics = Metrics()

  @contextlib.asynccontextmanager
  async def lifespan(_):
    watcher.start()
    try:
      yield
    finally:
      watcher.stop()

  # /docs and /redoc with Swagger UI's and ReDoc's files from the fastapi-offline package
  # (FastAPI's defaults load them from a CDN: a blank page offline).
  app = FastAPIOffline(title="mmrec", version="1", lifespan=lifespan,
                       description="Recommendations from an mmrec index bundle (docs/serving.md).")
  app.state.watcher = watcher
  metrics.collect_also(lambda: [
      GaugeMetricFamily("mmrec_bundle_items", "Items in the bundle served.",
                        value=watcher.current.bundle.num_items),
      CounterMetricFamily("mmrec_bundle_reloads", "Bundles swapped in since the start.",
                          value=watcher.reloads),
      CounterMetricFamily("mmrec_bundle_reload_failures", "Reloads that failed.",
                          value=watcher.reload_failures)])
  app.add_middleware(ServiceMiddleware, metrics=metrics, max_body_bytes=max_body_bytes,
                     routes=app.router.routes)

  @app.exception_handler(RequestValidationError)
  async def invalid_request(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and "json" not in content_type:
      return JSONResponse({"detail": f"send the body as JSON with Content-Type: application/json "
                           f"(got {content_type or 'no Content-Type'!r})"}, 415)
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
      where = bad_json.get("loc", ("body", "?"))[-1]
      why = bad_json.get("ctx", {}).get("error", "not JSON")
      return JSONResponse({"detail": f"malformed JSON body at character {where}: {why}"}, 400)
    return JSONResponse({"detail": [{k: e[k] for k in ("loc", "msg", "type")} for e in errors]},
                        422)

  @app.post("/v1/recommend", response_model=Recommendations, response_model_exclude_unset=True)
  def recommend(request: RecommendRequest,
                explain: bool = Query(False, description="Add each item's explanation."),
                explain_top: int = Query(5, ge=1, le=100,
                                         description="History items listed per explanation.")
                ) -> dict:
    served = watcher.current  # this request uses this bundle throughout
    bundle = served.bundle
    k = _check_k(request.k, bundle)
    method = "search" if request.history is None else "search_by_history"
    options = _options(served, method, request.beta, request.tail_balance, request.restrict,
                       request.category, request.exclude)
    with _client_errors():
      if request.history is not None:
        ids, scores = bundle.search_by_history(request.history, k, **options)
      else:
        if len(request.embedding) != bundle.dimension:
          raise HTTPException(422, f"embedding has {len(request.embedding)} values; "
                              f"the bundle's dimension is {bundle.dimension}")
        with np.errstate(over="ignore"):
          query = np.asarray([request.embedding], np.float32)
        if not np.isfinite(query).all():
          raise HTTPException(422, "embedding values overflow float32")
        options.pop("exclude", None)
        ids, scores = bundle.search(query, k, exclude=[request.exclude], **options)
        ids, scores = ids[0], scores[0]
      explanations = _explanations(bundle, request, ids, scores, explain_top) if explain else None
    return _answer(bundle, ids, scores, explanations)

  @app.get("/v1/similar/{item_id:path}", response_model=Recommendations)
  def similar(item_id: str,
              k: int = Query(10, ge=1, le=MAX_K),
              beta: float | None = Query(None, ge=0.0, le=MAX_BETA, allow_inf_nan=False,
                                         description="default: the bundle's default_beta"),
              tail_balance: float = Query(0.0, ge=0.0, le=1.0, allow_inf_nan=False),
              category: str | None = Query(None, description="Only items of this category.")
              ) -> dict:
    """Items closest to `item_id` (itself excluded)."""
    served = watcher.current
    bundle = served.bundle
    k = _check_k(k, bundle)
    options = _options(served, "similar", beta, tail_balance, None, category, [])
    try:
      bundle.index_of(item_id)
    except UnknownItemError as e:
      raise HTTPException(404, str(e)) from None
    with _client_errors():
      ids, scores = bundle.similar(item_id, k, **options)
    return _answer(bundle, ids, scores)

  @app.get("/healthz")
  def healthz() -> dict[str, Any]:
    """The bundle served, when it was loaded, and the last failed reload (if any)."""
    served = watcher.current
    manifest = served.bundle.manifest
    return {
        "status": "ok" if watcher.reload_error is None else "reload_failed",
        "bundle": str(watcher.path),
        "format_version": manifest["format_version"],
        "version": manifest.get("version"),
        "created_at": manifest.get("created_at"),
        "model": manifest["model"],
        "num_items": served.bundle.num_items,
        "dimension": served.bundle.dimension,
        "scann_mode": manifest["scann"].get("mode"),
        "loaded_at": served.loaded_at,
        "reloads": watcher.reloads,
        "reload_error": watcher.reload_error,
    }

  @app.get("/metrics", response_class=PlainTextResponse)
  def prometheus_metrics() -> PlainTextResponse:
    """Request counts, latency histograms and the bundle's gauges, in Prometheus text format."""
    return PlainTextResponse(metrics.render(), media_type=METRICS_CONTENT_TYPE)

  return app


def _check_k(k: int, bundle: Bundle) -> int:
  if k > bundle.num_items:
    raise HTTPException(422, f"k={k} exceeds the bundle's {bundle.num_items} items")
  return k


def _options(served: Served, method: str, beta: float | None, tail_balance: float,
             restrict: list[str] | None, category: str | None,
             exclude: list[str]) -> dict[str, Any]:
  """Keyword options for the bundle's `method`; only those that differ from the defaults."""
  if category is not None:
    if not served.categories:
      raise HTTPException(422, "category given, but the bundle has no 'category' metadata")
    if category not in served.categories:
      raise HTTPException(422, f"no items in category {category!r}")
    restrict = served.categories[category]
  options = {name: value for name, value, default in
             (("beta", beta, None), ("tail_balance", tail_balance, 0.0),
              ("restrict", restrict, None), ("exclude", exclude, []))
             if value != default}
  unsupported = sorted(set(options) - served.options[method])
  if unsupported:
    raise HTTPException(422, f"this server's bundle client does not support {unsupported}")
  return options


@contextlib.contextmanager
def _client_errors():
  """The bundle's errors about a request's content become 422 (UnknownItemError: id named)."""
  try:
    yield
  except UnknownItemError as e:
    raise HTTPException(422, str(e)) from None
  except ValueError as e:
    raise HTTPException(422, str(e)) from None


def _explanations(bundle: Bundle, request: RecommendRequest, ids: np.ndarray,
                  scores: np.ndarray, top: int) -> dict[str, dict]:
  """Item id -> explanation, for the items answered (mmrec.serving.explain)."""
  shown = [i for i, s in zip(ids.tolist(), scores.tolist()) if i and np.isfinite(s)]
  if request.history is not None:
    found = explain_lib.explain_history(bundle, request.history, shown, beta=request.beta,
                                        top=top)
  else:
    found = explain_lib.explain_query(bundle, np.asarray(request.embedding), shown,
                                      beta=request.beta)
  return dict(zip(shown, found))


def _answer(bundle: Bundle, ids: np.ndarray, scores: np.ndarray,
            explanations: dict[str, dict] | None = None) -> dict:
  items = []
  for item_id, score in zip(ids.tolist(), scores.tolist()):
    if not item_id or not np.isfinite(score):  # short answer: fewer items than k were left
      continue
    row = bundle.index_of(item_id)
    items.append({"id": item_id, "score": score,
                  **{key: values[row] for key, values in bundle.metadata.items()}})
    if explanations is not None:
      items[-1]["explanation"] = explanations[item_id]
  return {"items": items}


def serve(bundle_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
          poll_seconds: float = 2.0) -> None:
  """Serves `bundle_dir` with uvicorn until interrupted."""
  import uvicorn
  uvicorn.run(create_app(bundle_dir, poll_seconds=poll_seconds), host=host, port=port,
              log_level="info")
