"""ASGI middleware for the HTTP service: a request body limit and Prometheus metrics.

The metrics are prometheus_client's (docs/architecture.md says why): a registry per app, so
several apps in one process (tests) keep their own counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from starlette.routing import BaseRoute, Match

# Upper bounds (seconds) of the latency histogram's buckets; +Inf is implied.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
UNMATCHED_ROUTE = "unmatched"  # one label for every unknown path: bounded label cardinality
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format that generate_latest writes


class Metrics:
  """Request counts per route and status, and latency histograms per route."""

  def __init__(self):
    self.registry = CollectorRegistry(auto_describe=False)
    self._requests = Counter("mmrec_http_requests", "HTTP requests answered, by method, "
                             "route, status.", ("method", "route", "status"),
                             registry=self.registry)
    self._latency = Histogram("mmrec_http_request_duration_seconds", "Time from request to "
                              "response end.", ("method", "route"), buckets=LATENCY_BUCKETS,
                              registry=self.registry)

  def observe(self, method: str, route: str, status: int, seconds: float) -> None:
    self._requests.labels(method, route, str(status)).inc()
    self._latency.labels(method, route).observe(seconds)

  def collect_also(self, collect: Callable[[], Iterable[Metric]]) -> None:
    """Adds the metrics that `collect()` returns, read at each scrape (e.g. gauges)."""

    class Collector:
      def collect(self):
        return collect()

    self.registry.register(Collector())

  def render(self) -> bytes:
    """Prometheus text exposition format 0.0.4 (CONTENT_TYPE)."""
    return generate_latest(self.registry)


class ServiceMiddleware:
  """Refuses bodies over `max_body_bytes` with 413 and records every request in `metrics`.

  The body is read (up to the limit) before the app sees it, so a chunked
  request without Content-Length is limited too. Requests are labelled with
  the path template of the first of `routes` that matches them.
  """

  def __init__(self, app: Callable, metrics: Metrics, max_body_bytes: int,
               routes: Sequence[BaseRoute]):
    self.app = app
    self.metrics = metrics
    self.max_body_bytes = max_body_bytes
    self.routes = routes

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      await self.app(scope, receive, send)
      return
    start = time.perf_counter()
    route = next((getattr(r, "path", UNMATCHED_ROUTE) for r in self.routes
                  if r.matches(scope)[0] is not Match.NONE), UNMATCHED_ROUTE)
    status = 500  # what is recorded if the app fails before starting a response

    async def send_recording(message):
      nonlocal status
      if message["type"] == "http.response.start":
        status = message["status"]
      await send(message)

    try:
      body = await self._read_body(scope, receive)
      if body is None:
        await _send_json(send_recording, 413, f"request body exceeds {self.max_body_bytes} bytes")
        return
      await self.app(scope, _replay(body, receive), send_recording)
    finally:
      self.metrics.observe(scope["method"], route, status, time.perf_counter() - start)

  async def _read_body(self, scope, receive) -> bytes | None:
    """The whole request body, or None when it is over the limit."""
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
      return None
    chunks, size = [], 0
    while True:
      message = await receive()
      if message["type"] != "http.request":  # client went away; the app sees an empty body
        break
      chunks.append(message.get("body", b""))
      size += len(chunks[-1])
      if size > self.max_body_bytes:
        return None
      if not message.get("more_body", False):
        break
    return b"".join(chunks)


def _replay(body: bytes, receive):
  sent = False

  async def replayed():
    nonlocal sent
    if not sent:
      sent = True
      return {"type": "http.request", "body": body, "more_body": False}
    return await receive()  # later calls wait for http.disconnect, as the server would

  return replayed


async def _send_json(send, status: int, detail: str) -> None:
  body = json.dumps({"detail": detail}).encode()
  await send({"type": "http.response.start", "status": status,
              "headers": [(b"content-type", b"application/json"),
                          (b"content-length", str(len(body)).encode())]})
  await send({"type": "http.response.body", "body": body})
