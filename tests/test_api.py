"""`mmrec.load(workdir)`: the Python handle against the CLI and brute-force numpy, on the
session's tiny trained workdir."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mmrec
from mmrec import jobs, saved_config
from mmrec.data.pipeline import UserHistories
from mmrec.evaluation import evaluate as eval_lib
from mmrec.training import embed as embed_lib


@pytest.fixture(scope="module")
def model(tiny_workdir):
  return mmrec.load(tiny_workdir, compilation_cache=False)


def history_of(model, user, split="test"):
  """A user's seen items in the order the user tower reads them (oldest first), as ids."""
  rows = UserHistories(eval_lib.seen_interactions(model.data, split), 1).rows
  return [str(model.item_ids[i]) for i in rows.item[rows.user == user]]


def test_load_reads_the_config_of_the_workdir(model, tiny_workdir):
  saved = json.loads((tiny_workdir / "config.json").read_text())
  assert model.config.to_dict() == saved_config.tuples(saved)
  assert model.config.model.image.channels == tuple(saved["model"]["image"]["channels"])
  assert model.step == 20 and "step 20" in repr(model)


def test_evaluate_equals_the_cli(model, tiny_workdir, tmp_path):
  """The numbers `mmrec evaluate` writes to metrics.json, for the config's split."""
  workdir = tmp_path / "w"
  shutil.copytree(tiny_workdir, workdir)
  proc = subprocess.run([sys.executable, "-m", "mmrec.cli", "evaluate", "--workdir", str(workdir)],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  cli = json.loads((workdir / "metrics.json").read_text())
  mine = model.evaluate()
  assert cli["split"] == model.config.eval.split
  assert mine == {k: cli[k] for k in mine}


def test_evaluate_takes_the_split(model):
  valid = model.evaluate("valid", ks=(5,))
  assert set(valid) >= {"recall@5", "ndcg@5/tail"} and "recall@20" not in valid
  scorer = eval_lib.two_tower_scorer(model.trained.model, model.data, model.trained.items,
                                     split="valid", history_len=model.config.data.history_len)
  assert valid == eval_lib.evaluate(scorer, model.data, split="valid", ks=(5,))


@pytest.mark.parametrize("beta", [None, 0.3])
def test_recommend_equals_mmrec_recommend(model, tiny_workdir, tmp_path, beta):
  """A user's history given as ids gets the list `mmrec recommend` writes for that user."""
  out = tmp_path / "recs.csv"
  jobs.recommend(model.trained, model.config, tiny_workdir, out, k=10, users=["3", "11"],
                 beta=beta)
  lines = [line.split(",") for line in out.read_text().splitlines()[1:]]
  for user in (3, 11):
    want = [(item, float(score)) for u, item, _, score in lines if u == str(user)]
    got = model.recommend(history_of(model, user), k=10, beta=beta)
    assert [r.item_id for r in got] == [item for item, _ in want]
    np.testing.assert_allclose([r.score for r in got], [s for _, s in want], rtol=1e-5,
                               atol=1e-6)
    assert not {r.item_id for r in got} & set(history_of(model, user))


def test_recommend_can_keep_the_history(model):
  history = history_of(model, 5)
  got = model.recommend(history, k=model.data.num_items, exclude_history=False)
  assert len(got) == model.data.num_items and set(history) <= {r.item_id for r in got}
  assert [r.score for r in got] == sorted((r.score for r in got), reverse=True)


def test_similar_is_a_brute_force_nearest_neighbour(model):
  emb = model.item_embeddings()
  i = 7
  scores = emb @ emb[i]
  order = [j for j in np.lexsort((np.arange(len(scores)), -scores)) if j != i][:5]
  got = model.similar(str(model.item_ids[i]), k=5)
  assert [r.item_id for r in got] == [str(model.item_ids[j]) for j in order]
  assert got[0].title == str(model.data.catalog.title[order[0]])


def test_embed_items_of_a_cold_item_equals_its_catalog_embedding(model):
  """Cold items are embedded from content alone in the catalog too: the same vector."""
  cold = np.flatnonzero(model.data.is_cold)[:3]
  assert len(cold)
  c = model.data.catalog
  rows = [{"id": f"new-{i}", "title": str(c.title[i]), "description": str(c.description[i]),
           "category": str(c.category[i]), "image": c.image[i]} for i in cold]
  np.testing.assert_allclose(model.embed_items(rows), model.item_embeddings()[cold],
                             rtol=1e-5, atol=1e-5)


def test_unknown_ids_and_bad_rows_are_named(model, tmp_path):
  with pytest.raises(ValueError, match="no-such-sku"):
    model.recommend(["no-such-sku"])
  with pytest.raises(ValueError, match="k=0"):
    model.similar(str(model.item_ids[0]), k=0)
  with pytest.raises(ValueError, match="row 1: `item_id`"):
    model.embed_items([{"id": "a", "title": "A"}, {"title": "no id"}])
  with pytest.raises(FileNotFoundError, match="config.json"):
    mmrec.load(tmp_path)


def test_later_calls_compile_nothing(model):
  """Scorers, top-k and embeddings are module-level jits: a second build reuses them."""
  model.evaluate()
  model.recommend(history_of(model, 2), k=5)
  sizes = (embed_lib._apply._cache_size(), eval_lib._masked_top_k._cache_size())
  model.evaluate()
  model.recommend(history_of(model, 4), k=5)
  assert (embed_lib._apply._cache_size(), eval_lib._masked_top_k._cache_size()) == sizes


def test_import_mmrec_stays_light():
  code = "import sys, mmrec; print('jax' in sys.modules, callable(mmrec.load))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]
