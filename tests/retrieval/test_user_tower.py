"""The exported user tower: same user embeddings as the model, carried through updates,
and a bundle holding it still serves without jax (the linear tower in numpy)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mmrec import jobs
from mmrec.configs import two_tower
from mmrec.data.pipeline import UserHistories
from mmrec.evaluation import evaluate as eval_lib
from mmrec.retrieval import update
from mmrec.serving import load_bundle
from mmrec.training import embed as embed_lib
from mmrec.training import two_tower as train_lib


@pytest.fixture(scope="module")
def tiny(tiny_data_dir):
  cfg = two_tower.get_config("tiny")
  cfg.data.data_dir = str(tiny_data_dir)
  return cfg


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("user_tower")
  model, data, items = train_lib.prepare(tiny, tmp)
  trained = train_lib.Trained(model, data, items, step=0)
  return trained, jobs.export(trained, tiny, tmp / "bundle")


def test_exported_tower_matches_the_model(exported, tiny):
  trained, bundle_dir = exported
  bundle = load_bundle(bundle_dir)
  assert bundle.has_user_tower
  data = trained.data
  histories = UserHistories(eval_lib.seen_interactions(data, "test"), tiny.data.history_len)
  users = np.arange(0, data.num_users, 7)
  expected = embed_lib.user_embeddings(trained.model, histories, users)
  history, mask = histories.latest(users)
  ids = np.asarray(data.catalog.item_id)
  as_ids = [list(ids[h[m]]) for h, m in zip(history, mask)]
  np.testing.assert_allclose(bundle.embed_histories(as_ids), expected, atol=1e-5)

  got, scores = bundle.search_by_history(as_ids[1], 5)
  want, want_scores = bundle.search(expected[1:2], 5, exclude=[as_ids[1]])
  assert got.tolist() == want[0].tolist()
  np.testing.assert_allclose(scores, want_scores[0], rtol=1e-5)
  pooled, _ = bundle.search_by_history(as_ids[1], 5, user_tower=False)
  query = bundle.embeddings[bundle.index_of(as_ids[1])].mean(0)
  assert pooled.tolist() == bundle.search((query / np.linalg.norm(query))[None], 5,
                                          exclude=[as_ids[1]])[0][0].tolist()


def test_tower_survives_updates_and_reads_added_items(exported):
  _, bundle_dir = exported
  bundle = load_bundle(bundle_dir)
  first, second = bundle.item_ids[:2].tolist()
  update.add_items(bundle_dir, bundle.embeddings[:1] * -1, ["added-1"])
  update.remove_items(bundle_dir, [second])
  bundle = load_bundle(bundle_dir)
  assert bundle.has_user_tower and bundle.version == 3
  users = bundle.embed_histories([[first, "added-1"], [first]])
  assert users.shape == (2, bundle.dimension) and np.isfinite(users).all()
  d = bundle.dimension - bundle.manifest["explain"]["user_tower"]["item_bias"]
  np.testing.assert_allclose(np.linalg.norm(users[:, :d], axis=1), 1.0, rtol=1e-4)
  np.testing.assert_array_equal(users[:, d:], 1.0)  # the weight of the item's bias
  assert not np.allclose(users[0], users[1])


_WITHOUT_JAX = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"jax", "jaxlib", "flax"}:
          raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
    sys.meta_path.insert(0, Block())
    import mmrec.serving
    bundle = mmrec.serving.load_bundle(sys.argv[1])
    ids, _ = bundle.search_by_history(list(bundle.item_ids[:3]), 4)
    print(bundle.has_user_tower, len(ids))
""")


def test_a_bundle_with_a_tower_serves_without_jax(exported):
  _, bundle_dir = exported
  done = subprocess.run([sys.executable, "-c", _WITHOUT_JAX, str(bundle_dir)],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert done.stdout.split() == ["True", "4"]  # the linear profile tower runs in numpy
