"""`/v1/recommend?explain=true` answers explanations in a process that cannot import jax."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from mmrec import jobs
from mmrec.configs import two_tower
from mmrec.training import two_tower as train_lib

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # --import-mode=importlib adds none
import without_jax  # noqa: E402

_SERVE_WITHOUT_JAX = without_jax.script("""
    import json
    from fastapi.testclient import TestClient
    from mmrec.serving.server import create_app
    bundle_dir, history = sys.argv[1], json.loads(sys.argv[2])
    with TestClient(create_app(bundle_dir)) as client:
      out = {
        "explained": client.post("/v1/recommend?explain=true&explain_top=3",
                                 json={"history": history, "k": 4, "beta": 0.1}).json(),
        "plain": client.post("/v1/recommend", json={"history": history, "k": 4}).json(),
        "query": client.post("/v1/recommend?explain=true",
                             json={"embedding": [0.1] * int(sys.argv[3]), "k": 2}).json(),
        "loaded": sorted({m.split(".")[0] for m in sys.modules} & BLOCKED),
      }
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def bundle_dir(tiny_data_dir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("explain_server")
  cfg = two_tower.get_config("tiny")
  cfg.data.data_dir = str(tiny_data_dir)
  model, data, items = train_lib.prepare(cfg, tmp)
  return jobs.export(train_lib.Trained(model, data, items, step=0), cfg, tmp / "bundle")


def test_recommend_explains_without_jax(bundle_dir):
  from mmrec.serving import load_bundle
  bundle = load_bundle(bundle_dir)
  history = bundle.item_ids[[2, 11, 23, 31, 47]].tolist()
  done = subprocess.run([sys.executable, "-c", _SERVE_WITHOUT_JAX, str(bundle_dir),
                         json.dumps(history), str(bundle.dimension)],
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  out = json.loads(done.stdout.strip().splitlines()[-1])
  assert out["loaded"] == []
  items = out["explained"]["items"]
  ids, scores = bundle.search_by_history(history, 4, beta=0.1)  # the same answer, with jax here
  assert [it["id"] for it in items] == ids.tolist()
  for item, score in zip(items, scores):
    e = item["explanation"]
    assert e["method"] == "linear_profile" and e["exact"]
    assert len(e["history"]) == 3 and {h["id"] for h in e["history"]} <= set(history)
    total = (sum(h["contribution"] for h in e["history"]) + e["other_history"] + e["prior"]
             + e["item_bias"] + e["popularity"])
    assert total == pytest.approx(item["score"], abs=1e-5)
    assert item["score"] == pytest.approx(float(score), abs=1e-5)
    assert set(e["modalities"]) == {"text", "image", "id", "base"}
    assert sum(e["modalities"].values()) + e["popularity"] == pytest.approx(item["score"],
                                                                             abs=1e-5)
  assert all("explanation" not in it for it in out["plain"]["items"])
  for item in out["query"]["items"]:
    e = item["explanation"]
    assert e["method"] == "query" and "history" not in e
    raw = np.full(bundle.dimension, 0.1) @ bundle.embeddings[bundle.index_of(item["id"])]
    assert sum(e["modalities"].values()) == pytest.approx(raw, abs=1e-5)
