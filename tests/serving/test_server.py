"""The HTTP service, driven by a real HTTP client against uvicorn on loopback.

Answers are checked against numpy brute force over the small catalog (it is
below the brute-force threshold, so ScaNN is exact here).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from mmrec.retrieval.export import export_bundle
from mmrec.serving import load_bundle
from mmrec.serving import server as server_lib

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # --import-mode=importlib adds none
import without_jax  # noqa: E402

N, D = 200, 8
CATEGORIES = ("dress", "shoe", "bag")


def _export(path, n=N, prefix="item", seed=0):
  rng = np.random.default_rng(seed)
  ids = np.array([f"{prefix}-{i}" for i in range(n)])
  meta = {"title": [f"Title {i}" for i in range(n)],
          "category": [CATEGORIES[i % 3] for i in range(n)]}
  return export_bundle(path, rng.normal(size=(n, D)), ids, rng.integers(0, 50, n),
                       model_info={"name": prefix}, metadata=meta)


class _Server:
  """uvicorn in a thread on a free loopback port; `client` talks to it over HTTP."""

  def __init__(self, bundle_dir, **kwargs):
    config = uvicorn.Config(server_lib.create_app(bundle_dir, **kwargs), host="127.0.0.1",
                            port=0, log_level="warning")
    self.uvicorn = uvicorn.Server(config)
    self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)
    self.thread.start()
    deadline = time.monotonic() + 20
    while not self.uvicorn.started:
      assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
      time.sleep(0.01)
    port = self.uvicorn.servers[0].sockets[0].getsockname()[1]
    self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

  def close(self):
    self.client.close()
    self.uvicorn.should_exit = True
    self.thread.join(10)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
  return _export(tmp_path_factory.mktemp("served") / "bundle")


@pytest.fixture(scope="module")
def bundle(bundle_dir):
  return load_bundle(bundle_dir)


@pytest.fixture(scope="module")
def client(bundle_dir):
  server = _Server(bundle_dir, poll_seconds=60)
  yield server.client
  server.close()


def _brute_force(bundle, query, k, exclude=(), allowed=None):
  """Ids and scores of the top k by dot product, skipping excluded ids."""
  scores = bundle.embeddings @ query
  skip = set(exclude)
  order = [i for i in np.argsort(-scores, kind="stable")
           if bundle.item_ids[i] not in skip and (allowed is None or allowed[i])]
  return [str(bundle.item_ids[i]) for i in order[:k]], scores[order[:k]]


def _check(items, bundle, want_ids, want_scores):
  assert [it["id"] for it in items] == want_ids
  np.testing.assert_allclose([it["score"] for it in items], want_scores, rtol=1e-5, atol=1e-5)
  for it in items:
    row = bundle.index_of(it["id"])
    assert it["title"] == f"Title {row}" and it["category"] == CATEGORIES[row % 3]


def test_recommend_by_embedding_matches_brute_force(client, bundle):
  rng = np.random.default_rng(1)
  for _ in range(3):
    query = rng.normal(size=D).astype(np.float32)
    top, _ = _brute_force(bundle, query, 3)
    exclude = [top[0], top[2], "not-in-catalog"]
    r = client.post("/v1/recommend", json={"embedding": query.tolist(), "k": 12,
                                           "exclude": exclude})
    assert r.status_code == 200, r.text
    _check(r.json()["items"], bundle, *_brute_force(bundle, query, 12, exclude))


def test_recommend_by_history_matches_brute_force(client, bundle):
  history, exclude = ["item-3", "item-40", "item-41"], ["item-7"]
  query = bundle.embeddings[[3, 40, 41]].mean(axis=0)
  query /= np.linalg.norm(query)
  r = client.post("/v1/recommend", json={"history": history, "k": 15, "exclude": exclude})
  assert r.status_code == 200, r.text
  _check(r.json()["items"], bundle, *_brute_force(bundle, query, 15, history + exclude))


def test_similar_matches_brute_force(client, bundle):
  r = client.get("/v1/similar/item-5", params={"k": 7})
  assert r.status_code == 200, r.text
  _check(r.json()["items"], bundle, *_brute_force(bundle, bundle.embeddings[5], 7, ["item-5"]))


def test_category_and_restrict_limit_the_candidates(client, bundle):
  query = np.random.default_rng(2).normal(size=D).astype(np.float32)
  is_shoe = np.arange(N) % 3 == 1
  r = client.post("/v1/recommend", json={"embedding": query.tolist(), "k": 5,
                                         "category": "shoe"})
  assert r.status_code == 200, r.text
  _check(r.json()["items"], bundle, *_brute_force(bundle, query, 5, allowed=is_shoe))
  r = client.get("/v1/similar/item-0", params={"k": 4, "category": "shoe"})
  _check(r.json()["items"], bundle,
         *_brute_force(bundle, bundle.embeddings[0], 4, ["item-0"], allowed=is_shoe))
  allowed = ["item-1", "item-2", "item-9", "unknown-id"]
  r = client.post("/v1/recommend", json={"embedding": query.tolist(), "k": 10,
                                         "restrict": allowed})
  got = [it["id"] for it in r.json()["items"]]  # only 3 known ids: a short answer
  assert got == _brute_force(bundle, query, 3, allowed=np.isin(bundle.item_ids, allowed))[0]


def test_beta_calibrates_by_popularity(client, bundle):
  query = np.random.default_rng(3).normal(size=D).astype(np.float32)
  raw = bundle.embeddings @ query
  candidates = np.argsort(-raw, kind="stable")[:100]  # max(10 k, 100) re-ranked candidates
  calibrated = raw[candidates] - 0.5 * np.log1p(bundle.popularity[candidates])
  want = candidates[np.argsort(-calibrated, kind="stable")[:10]]
  r = client.post("/v1/recommend", json={"embedding": query.tolist(), "k": 10, "beta": 0.5})
  assert r.status_code == 200, r.text
  assert [it["id"] for it in r.json()["items"]] == bundle.item_ids[want].tolist()
  # tail_balance is passed through unchanged: the answer is the client library's.
  r = client.get("/v1/similar/item-8", params={"k": 10, "beta": 0.2, "tail_balance": 0.7})
  ids, scores = bundle.similar("item-8", 10, beta=0.2, tail_balance=0.7)
  assert [it["id"] for it in r.json()["items"]] == ids.tolist()
  np.testing.assert_allclose([it["score"] for it in r.json()["items"]], scores, rtol=1e-6)


EMBEDDING = [0.1] * D
INVALID = [
    # (method, path, request kwargs, status, text in the answer)
    ("post", "/v1/recommend", {"json": {"embedding": [1.0, 2.0], "k": 3}}, 422,
     "embedding has 2 values; the bundle's dimension is 8"),
    ("post", "/v1/recommend", {"json": {"history": ["item-1", "nope"]}}, 422,
     "unknown item id 'nope'"),
    ("get", "/v1/similar/nope", {}, 404, "unknown item id 'nope'"),
    ("post", "/v1/recommend", {"content": b'{"history": ["item-1"', "headers":
                               {"content-type": "application/json"}}, 400, "malformed JSON"),
    ("post", "/v1/recommend", {"content": b"history=item-1"}, 415, "Content-Type"),
    ("post", "/v1/recommend", {"json": {"history": ["item-1"], "k": 0}}, 422, "greater than"),
    ("post", "/v1/recommend", {"json": {"history": ["item-1"], "k": 1001}}, 422, "less than"),
    ("post", "/v1/recommend", {"json": {"history": ["item-1"], "k": N + 1}}, 422,
     "k=201 exceeds the bundle's 200 items"),
    ("post", "/v1/recommend", {"json": {"history": ["item-1"], "k": "ten"}}, 422, "integer"),
    ("get", "/v1/similar/item-1", {"params": {"k": 2.5}}, 422, "integer"),
    ("post", "/v1/recommend", {"json": {"history": ["item-1"], "embedding": EMBEDDING}}, 422,
     "exactly one of"),
    ("post", "/v1/recommend", {"json": {"k": 3}}, 422, "exactly one of"),
    ("post", "/v1/recommend", {"json": {"history": ["item-1"], "kk": 3}}, 422, "kk"),
    ("post", "/v1/recommend", {"content": b'{"embedding": [NaN, 1, 1, 1, 1, 1, 1, 1]}',
                               "headers": {"content-type": "application/json"}}, 422, "finite"),
    ("post", "/v1/recommend", {"json": {"embedding": [1e39] + EMBEDDING[1:]}}, 422, "float32"),
    ("post", "/v1/recommend", {"json": {"history": ["item-1"], "beta": -1}}, 422, "beta"),
    ("get", "/v1/similar/item-1", {"params": {"tail_balance": 2}}, 422, "tail_balance"),
    ("post", "/v1/recommend", {"json": {"history": ["item-1"] * 1001}}, 422, "history"),
    ("post", "/v1/recommend", {"json": {"embedding": [0.0] * 5000}}, 422, "embedding"),
    ("post", "/v1/recommend", {"json": {"history": ["x" * (1 << 20)]}}, 413, "exceeds"),
    ("post", "/v1/recommend", {"json": {"history": ["item-1"], "category": "hat"}}, 422,
     "no items in category 'hat'"),
    ("get", "/v1/recommend", {}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("method,path,kwargs,status,text", INVALID,
                         ids=[f"{i}-{row[3]}" for i, row in enumerate(INVALID)])
def test_invalid_requests_get_a_clear_4xx(client, method, path, kwargs, status, text):
  r = getattr(client, method)(path, **kwargs)
  assert r.status_code == status, r.text
  assert text in r.text


def test_chunked_body_over_the_limit_is_refused(client):
  body = json.dumps({"history": ["x" * (1 << 20)]}).encode()
  r = client.post("/v1/recommend", content=iter([body[:1000], body[1000:]]),
                  headers={"content-type": "application/json"})  # no Content-Length
  assert r.status_code == 413


def test_healthz_openapi_and_metrics(client, bundle_dir):
  health = client.get("/healthz").json()
  assert health["status"] == "ok" and health["bundle"] == str(bundle_dir)
  assert (health["num_items"], health["dimension"], health["version"]) == (N, D, 1)
  assert health["reload_error"] is None
  paths = client.get("/openapi.json").json()["paths"]
  assert {"/v1/recommend", "/v1/similar/{item_id}", "/healthz"} <= set(paths)

  def count(text, route, status):
    pattern = rf'mmrec_http_requests_total\{{method="GET",route="{re.escape(route)}",' \
              rf'status="{status}"\}} (\d+)'
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0

  before = client.get("/metrics").text
  for _ in range(3):
    client.get("/v1/similar/item-2")
  client.get("/v1/similar/nope")
  after = client.get("/metrics")
  assert after.headers["content-type"].startswith("text/plain; version=0.0.4")
  route = "/v1/similar/{item_id:path}"
  assert count(after.text, route, 200) - count(before, route, 200) == 3
  assert count(after.text, route, 404) - count(before, route, 404) == 1
  labels = f'method="GET",route="{route}"'
  total = re.search(rf"duration_seconds_count\{{{labels}\}} (\d+)", after.text).group(1)
  inf = next(s.value for f in text_string_to_metric_families(after.text) for s in f.samples
             if s.name.endswith("duration_seconds_bucket") and s.labels.get("le") == "+Inf"
             and s.labels.get("route") == route and s.labels.get("method") == "GET")
  answered = re.findall(rf"requests_total\{{{labels},status=\"\d+\"\}} (\d+)", after.text)
  assert int(total) == int(inf) == sum(map(int, answered))
  assert 'status="5' not in after.text  # no request in this module got a 500


def test_hot_reload_swaps_bundles_without_dropping_requests(tmp_path):
  path = _export(tmp_path / "bundle")
  first = load_bundle(path)
  want_first, _ = _brute_force(first, first.embeddings[1], 5, ["item-1"])
  server = _Server(path, poll_seconds=0.05)
  answers, stop = [], threading.Event()

  def hammer():
    with httpx.Client(base_url=server.client.base_url, timeout=10) as c:
      while not stop.is_set():
        answers.append(c.post("/v1/recommend", json={"history": ["item-1"], "k": 5}))

  thread = threading.Thread(target=hammer)
  thread.start()
  try:
    time.sleep(0.3)
    # The new bundle keeps the old ids and adds "new-*" ones (the same history still works).
    rng = np.random.default_rng(5)
    ids = [f"item-{i}" for i in range(N)] + [f"new-{i}" for i in range(N)]
    export_bundle(path, rng.normal(size=(2 * N, D)), np.array(ids), rng.integers(0, 9, 2 * N),
                  model_info={"name": "second"})
    deadline = time.monotonic() + 20
    while server.client.get("/healthz").json()["num_items"] != 2 * N:
      assert time.monotonic() < deadline, "the new bundle was not loaded"
      time.sleep(0.05)
    time.sleep(0.3)
  finally:
    stop.set()
    thread.join()
  health = server.client.get("/healthz").json()
  assert health["model"] == {"name": "second"} and health["reloads"] == 1
  second = load_bundle(path)
  want, _ = _brute_force(second, second.embeddings[1], 5, ["item-1"])
  assert all(r.status_code == 200 for r in answers)
  got = [[it["id"] for it in r.json()["items"]] for r in answers]
  assert all(ids in (want_first, want) for ids in got)  # each answer from one whole bundle
  assert got[0] == want_first and got[-1] == want

  # A corrupt bundle swapped in is refused and reported; the good one keeps serving.
  broken = tmp_path / "broken"
  shutil.copytree(path, broken)
  with open(broken / "scann" / "dataset.npy", "r+b") as f:
    f.seek(-1, os.SEEK_END)
    f.write(b"\x7f")
  os.rename(path, tmp_path / "aside")
  os.rename(broken, path)
  deadline = time.monotonic() + 20
  while (health := server.client.get("/healthz").json())["reload_error"] is None:
    assert time.monotonic() < deadline, "the failed reload was not reported"
    time.sleep(0.05)
  assert health["status"] == "reload_failed" and "SHA-256" in health["reload_error"]["message"]
  assert health["model"] == {"name": "second"}
  r = server.client.post("/v1/recommend", json={"history": ["item-1"], "k": 5})
  assert [it["id"] for it in r.json()["items"]] == want
  assert "mmrec_bundle_reload_failures_total 1" in server.client.get("/metrics").text
  server.close()


_CLI_WITHOUT_JAX = without_jax.script("""
    from mmrec import cli
    cli.main(["mmrec", "serve", *sys.argv[1:]])
""")


def test_cli_serves_on_loopback_without_jax(bundle_dir, tmp_path):
  bad = subprocess.run([sys.executable, "-c", _CLI_WITHOUT_JAX, f"--bundle={tmp_path}/none"],
                       capture_output=True, text=True, timeout=60)
  assert bad.returncode != 0 and "mmrec serve:" in bad.stderr and "does not exist" in bad.stderr
  proc = subprocess.Popen([sys.executable, "-c", _CLI_WITHOUT_JAX, f"--bundle={bundle_dir}",
                           "--port=0"], stderr=subprocess.PIPE, text=True)
  try:
    lines = []
    for line in proc.stderr:  # uvicorn logs the bound address once it listens
      lines.append(line)
      if (bound := re.search(r"running on http://([\d.]+):(\d+)", line)):
        break
    assert bound, "".join(lines)
    assert bound.group(1) == "127.0.0.1"
    r = httpx.get(f"http://127.0.0.1:{bound.group(2)}/healthz", timeout=10)
    assert r.status_code == 200 and r.json()["num_items"] == N
  finally:
    proc.terminate()
    proc.wait(10)
