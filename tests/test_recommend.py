"""`mmrec recommend`: each user's top-K unseen items in original ids, exactly as a brute-force
ranking of the scorer's scores (CSV and Parquet, every user or --users, with --beta)."""

import collections
import csv
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from mmrec import jobs
from mmrec.configs import two_tower
from mmrec.evaluation import evaluate as eval_lib
from mmrec.training import two_tower as train_lib


def mmrec(*args):
  return subprocess.run([sys.executable, "-m", "mmrec.cli", *args], capture_output=True,
                        text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tiny_workdir, tiny_data_dir):
  config = two_tower.get_config("tiny")  # as tiny_workdir trained it
  config.data.data_dir = str(tiny_data_dir)
  return train_lib.restore(tiny_workdir, config), config


def _read(path):
  if path.suffix == ".parquet":
    return pq.read_table(path).to_pylist()
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _check(rows, trained, split, k, users=None, beta=0.0):
  """The output rows against a numpy top-k of the scorer's (calibrated) scores."""
  model, config = trained
  data = model.data
  users = np.arange(data.num_users) if users is None else np.array([int(u) for u in users])
  scores = eval_lib.two_tower_scorer(model.model, data, model.items, split=split,
                                     history_len=config.data.history_len)(users)
  seen = eval_lib.items_by_user(eval_lib.seen_interactions(data, split), data.num_users)
  item_ids = np.asarray(data.catalog.item_id).astype(str)
  index = {i: n for n, i in enumerate(item_ids)}
  got = collections.defaultdict(list)
  for row in rows:
    got[row["user_id"]].append((int(row["rank"]), row["item_id"], float(row["score"])))
  assert list(got) == [str(u) for u in users]  # these users, in this order (shop ids: indices)
  for u, s in zip(users, scores):
    want = s.astype(np.float64) - beta * np.log1p(data.train_counts())
    want[seen[u]] = -np.inf
    order = np.argsort(-want, kind="stable")[:k]
    ranks, items, got_scores = zip(*got[str(u)])
    assert list(ranks) == list(range(1, k + 1))
    assert not set(items) & set(item_ids[seen[u]])
    np.testing.assert_allclose(got_scores, want[order], rtol=1e-5, atol=1e-5)
    for item, j in zip(items, order):  # the same items, up to (near) ties
      assert item == item_ids[j] or abs(want[index[item]] - want[j]) < 1e-5


def test_recommend_csv_every_user(tiny_workdir, trained, tmp_path):
  out = mmrec("recommend", f"--workdir={tiny_workdir}", f"--out={tmp_path / 'rec.csv'}",
              "--k=7")
  assert out.returncode == 0, out.stderr[-3000:]
  assert (tmp_path / "rec.csv").read_text().startswith("user_id,item_id,rank,score\n")
  _check(_read(tmp_path / "rec.csv"), trained, "test", 7)


def test_recommend_parquet_users_and_beta(tiny_workdir, trained, tmp_path):
  (tmp_path / "users.txt").write_text("12\n3\n\n40\n")
  out = mmrec("recommend", f"--workdir={tiny_workdir}", f"--out={tmp_path / 'rec.parquet'}",
              "--k=5", "--split=valid", f"--users={tmp_path / 'users.txt'}", "--beta=0.05")
  assert out.returncode == 0, out.stderr[-3000:]
  table = pq.read_table(tmp_path / "rec.parquet")
  assert table.column_names == ["user_id", "item_id", "rank", "score"]
  _check(table.to_pylist(), trained, "valid", 5, users=["12", "3", "40"], beta=0.05)


@pytest.mark.parametrize("name, users, beta", [("rec.parquet", None, 0.0),
                                                ("rec.csv", ["7", "0"], 0.02)])
def test_recommend_job(tiny_workdir, trained, tmp_path, name, users, beta):
  model, config = trained
  n = jobs.recommend(model, config, tiny_workdir, tmp_path / name, k=4, users=users, beta=beta)
  rows = _read(tmp_path / name)
  assert n == len(rows)
  _check(rows, trained, config.eval.split, 4, users=users, beta=beta)


def test_recommend_refuses_unknown_users_and_bad_files(tiny_workdir, trained, tmp_path):
  model, config = trained
  with pytest.raises(ValueError, match=r"1 unknown user id\(s\), e.g. \['nobody'\]"):
    jobs.recommend(model, config, tiny_workdir, tmp_path / "r.csv", users=["1", "nobody"])
  with pytest.raises(ValueError, match="must end in .csv or .parquet"):
    jobs.recommend(model, config, tiny_workdir, tmp_path / "r.json")
  out = mmrec("recommend", f"--workdir={tiny_workdir}", f"--out={tmp_path / 'r.txt'}")
  assert out.returncode != 0 and "mmrec recommend: --out FILE.csv or FILE.parquet" in out.stderr
