"""The service's /docs and /redoc work offline (assets served locally), and /metrics parses
as Prometheus text with the counts of the requests made."""

import html.parser

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mmrec.retrieval.export import export_bundle
from mmrec.serving import server as server_lib

N, D = 50, 4


@pytest.fixture(scope="module")
def client(tmp_path_factory):
  rng = np.random.default_rng(0)
  path = export_bundle(tmp_path_factory.mktemp("docs") / "bundle", rng.normal(size=(N, D)),
                       np.array([f"item-{i}" for i in range(N)]), rng.integers(0, 9, N),
                       model_info={"name": "docs"})
  with TestClient(server_lib.create_app(path, poll_seconds=60)) as c:
    yield c


class _Assets(html.parser.HTMLParser):
  """The URLs of a page's scripts, stylesheets and icons."""

  def __init__(self):
    super().__init__()
    self.urls = []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "script" and attrs.get("src"):
      self.urls.append(attrs["src"])
    if tag == "link" and attrs.get("href"):
      self.urls.append(attrs["href"])


@pytest.mark.parametrize("page, asset", [("/docs", "swagger-ui-bundle.js"),
                                         ("/redoc", "redoc.standalone.js")])
def test_docs_pages_load_their_assets_from_the_service(client, page, asset):
  r = client.get(page)
  assert r.status_code == 200
  parser = _Assets()
  parser.feed(r.text)
  assert any(url.endswith(asset) for url in parser.urls), parser.urls
  for url in parser.urls:
    assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from elsewhere"
    got = client.get(url)
    assert got.status_code == 200 and len(got.content) > 1000, url
  assert "cdn.jsdelivr.net" not in r.text and "openapi.json" in r.text


def _samples(text):
  return {(s.name, tuple(sorted(s.labels.items()))): s.value
          for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_the_requests_made(client):
  before = _samples(client.get("/metrics").text)
  for _ in range(4):
    assert client.get("/v1/similar/item-1", params={"k": 3}).status_code == 200
  assert client.get("/v1/similar/nope").status_code == 404
  r = client.get("/metrics")
  assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
  after = _samples(r.text)
  route = (("method", "GET"), ("route", "/v1/similar/{item_id:path}"))

  def delta(name, *labels):
    key = (name, tuple(sorted(route + labels)))
    return after.get(key, 0) - before.get(key, 0)

  assert delta("mmrec_http_requests_total", ("status", "200")) == 4
  assert delta("mmrec_http_requests_total", ("status", "404")) == 1
  assert delta("mmrec_http_request_duration_seconds_count") == 5
  assert delta("mmrec_http_request_duration_seconds_bucket", ("le", "+Inf")) == 5
  assert after[("mmrec_bundle_items", ())] == N
  assert after[("mmrec_bundle_reloads_total", ())] == 0
