"""The two-tower trains and evaluates on a catalog without images (model.use_image=False)."""

import jax
import numpy as np

from mmrec.configs import two_tower
from mmrec.data import dataset as dataset_lib
from mmrec.data.pipeline import UserHistories, profile_batches
from mmrec.data.schema import Catalog, Interactions
from mmrec.evaluation import evaluate as evaluate_lib
from mmrec.training import two_tower as train_lib
from mmrec.training.objective import two_tower_loss

GENRES = ("comedy", "drama", "horror", "western", "musical", "thriller")


def text_only_dataset(path, items_per_genre=20, users=150, per_user=20, seed=0):
  """Movies with a title and genres and no image; each user mostly watches one genre."""
  rng = np.random.default_rng(seed)
  n = len(GENRES) * items_per_genre
  genre = np.arange(n) // items_per_genre
  catalog = Catalog(
      item_id=np.array([f"m{i}" for i in range(n)]),
      title=np.array([f"movie {i} ({1950 + i % 50})" for i in range(n)]),
      description=np.array([GENRES[g] for g in genre]),
      category=np.array([GENRES[g] for g in genre]),
      image=[b""] * n)
  liked = rng.integers(0, len(GENRES), users)
  user = np.repeat(np.arange(users), per_user)
  own = liked[user] * items_per_genre + rng.integers(0, items_per_genre, len(user))
  item = np.where(rng.random(len(user)) < 0.8, own, rng.integers(0, n, len(user)))
  inter = Interactions(user, item, rng.integers(0, 10**6, len(user)))
  return dataset_lib.build_dataset(path, "movies", catalog, inter, protocol="random", seed=seed,
                                   vocab_size=200)


def test_two_tower_without_images_trains_and_evaluates(tmp_path, monkeypatch):
  data_path = text_only_dataset(tmp_path / "data")
  data = dataset_lib.load_dataset(data_path)
  assert data.meta["report"]["items_with_image"] == 0
  monkeypatch.setattr(train_lib.sources, "load", lambda cfg, workdir: data)

  cfg = two_tower.get_config("tiny")
  cfg.model.use_image = False
  cfg.data.vocab_size = 200
  cfg.train.steps = 60
  cfg.train.checkpoint_every = 60
  model, _, items = train_lib.prepare(cfg, tmp_path / "run")
  assert items.image.size == 0 and len(items.image) == data.num_items  # nothing decoded
  assert not hasattr(model.item_tower, "image")
  batch = profile_batches(UserHistories(data.splits["train"], cfg.data.history_len),
                          batch_size=cfg.train.batch_size, history_len=cfg.data.history_len,
                          holdout=cfg.train.holdout, seed=7)[0]
  batch["catalog"] = train_lib.catalog_features(items)
  loss_fn = two_tower_loss(cfg)
  before = float(loss_fn(model, batch, jax.random.key(0))[0])

  trained = train_lib.train(cfg, tmp_path / "run")
  after = float(loss_fn(trained.model, batch, jax.random.key(0))[0])
  assert after < before - 0.2, (before, after)
  metrics = evaluate_lib.evaluate_trained(trained, cfg)
  assert 0 <= metrics["recall@20"] <= 1 and np.isfinite(metrics["ndcg@20"])
  # 80% of each user's items come from one genre of 20 among 120 movies: the model,
  # reading titles and genres, beats popularity (flat here) and chance (about 0.19).
  popularity = evaluate_lib.evaluate(evaluate_lib.popularity_scorer(data), data)
  assert metrics["recall@20"] > max(0.25, popularity["recall@20"] + 0.15), (metrics, popularity)
