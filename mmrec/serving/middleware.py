"""ASGI middleware for the HTTP service: a request body limit and Prometheus metrics."""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections.abc import Callable, Sequence

from starlette.routing import BaseRoute, Match

# Upper bounds (seconds) of the latency histogram's buckets; +Inf is implied.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
UNMATCHED_ROUTE = "unmatched"  # one label for every unknown path: bounded label cardinality


class Metrics:
  """Request counts per route and status, and latency histograms per route."""

  def __init__(self):
    self._lock = threading.Lock()
    self._counts: dict[tuple[str, str, str], int] = {}  # (method, route, status) -> requests
    self._latency: dict[tuple[str, str], list] = {}  # (method, route) -> [buckets, sum, count]

  def observe(self, method: str, route: str, status: int, seconds: float) -> None:
    with self._lock:
      key = (method, route, str(status))
      self._counts[key] = self._counts.get(key, 0) + 1
      hist = self._latency.setdefault((method, route), [[0] * len(LATENCY_BUCKETS), 0.0, 0])
      bucket = bisect.bisect_left(LATENCY_BUCKETS, seconds)
      if bucket < len(LATENCY_BUCKETS):
        hist[0][bucket] += 1
      hist[1] += seconds
      hist[2] += 1

  def render(self, extra: list[str] = ()) -> str:
    """Prometheus text exposition format 0.0.4; `extra` lines are appended as given."""
    with self._lock:
      counts = sorted(self._counts.items())
      latency = sorted((k, [list(v[0]), v[1], v[2]]) for k, v in self._latency.items())
    lines = ["# HELP mmrec_http_requests_total HTTP requests answered, by method, route, status.",
             "# TYPE mmrec_http_requests_total counter"]
    for (method, route, status), n in counts:
      labels = _labels(method=method, route=route, status=status)
      lines.append(f"mmrec_http_requests_total{labels} {n}")
    lines += ["# HELP mmrec_http_request_duration_seconds Time from request to response end.",
              "# TYPE mmrec_http_request_duration_seconds histogram"]
    for (method, route), (buckets, total, n) in latency:
      cumulative = 0
      for bound, count in zip(LATENCY_BUCKETS, buckets):
        cumulative += count
        labels = _labels(method=method, route=route, le=repr(bound))
        lines.append(f"mmrec_http_request_duration_seconds_bucket{labels} {cumulative}")
      labels = _labels(method=method, route=route, le="+Inf")
      lines.append(f"mmrec_http_request_duration_seconds_bucket{labels} {n}")
      labels = _labels(method=method, route=route)
      lines.append(f"mmrec_http_request_duration_seconds_sum{labels} {total!r}")
      lines.append(f"mmrec_http_request_duration_seconds_count{labels} {n}")
    return "\n".join([*lines, *extra]) + "\n"


def _labels(**labels: str) -> str:
  def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
  return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


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
