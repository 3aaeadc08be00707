"""The embedded synthetic fashion shop: the project's default dataset.

Items have latent attributes (`vocab.py`), a drawn photo (`images.py`:
category, colour and pattern are visible) and a title and description
(`text.py`: material, style, brand and price tier are told only there).
Users have latent preferences and a true affinity to every item
(`behaviour.affinity`); interactions come from a choice model mixing that
affinity with a Zipf exposure prior, so popularity is long-tailed while tail
items still match some users well. A share of items are new: released late,
they are to be kept out of training by the splitter.

  shop = generate(shop_config("small", seed=1))
  scores = affinity(shop.user_prefs, shop.catalog.attributes, users=[0, 1])
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tqdm

from mmrec.data.schema import Catalog, Interactions
from mmrec.data.shop import behaviour as shop_behaviour
from mmrec.data.shop import images as shop_images
from mmrec.data.shop import text as shop_text
from mmrec.data.shop import vocab as shop_vocab

affinity = shop_behaviour.affinity
ATTRIBUTES = shop_vocab.ATTRIBUTES
DAY = 86_400


@dataclasses.dataclass(frozen=True)
class ShopConfig:
  """Every knob of the generator (defaults: the `small` size)."""

  num_items: int = 5000
  num_users: int = 3000
  mean_interactions: float = 38.0  # per user, before the cap
  min_interactions: int = 5
  max_interactions: int = 600  # per user; also capped at a quarter of the items
  activity_sigma: float = 1.0  # lognormal spread of user activity
  new_item_share: float = 0.1
  new_item_window: float = 0.2  # new items are released in this last share of the window
  new_item_boost: float = 2.0  # exposure bonus of new arrivals
  days: int = 180
  start_time: int = 1_704_067_200  # 2024-01-01 00:00:00 UTC
  image_size: int = 64
  image_noise: float = 4.0  # std of the Gaussian pixel noise
  typo_rate: float = 0.02  # share of words (>= 3 letters) with a typo
  popularity_exponent: float = 1.0  # γ: weight of the Zipf exposure prior
  temperature: float = 0.25  # T: affinity scale of the choice model
  seed: int = 0

  def __post_init__(self):
    checks = {
        "num_items": self.num_items >= 20,
        "num_users": self.num_users >= 1,
        "min_interactions": 1 <= self.min_interactions <= self.max_interactions,
        "mean_interactions": self.mean_interactions >= self.min_interactions,
        "activity_sigma": self.activity_sigma >= 0,
        "new_item_share": 0 <= self.new_item_share < 1,
        "new_item_window": 0 < self.new_item_window < 1,
        "new_item_boost": self.new_item_boost > 0,
        "days": self.days >= 1,
        "image_size": self.image_size >= 16,
        "image_noise": self.image_noise >= 0,
        "typo_rate": 0 <= self.typo_rate <= 1,
        "popularity_exponent": self.popularity_exponent >= 0,
        "temperature": self.temperature > 0,
        "seed": isinstance(self.seed, (int, np.integer)) and self.seed >= 0,
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
      raise ValueError("ShopConfig has invalid values: "
                       + ", ".join(f"{n}={getattr(self, n)!r}" for n in bad))
    if self.num_items // 4 < self.min_interactions:
      raise ValueError(f"num_items={self.num_items} is too small for "
                       f"min_interactions={self.min_interactions} (needs 4x as many items)")


SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(num_items=300, num_users=200, mean_interactions=27.0, popularity_exponent=1.6),
    "small": dict(num_items=5000, num_users=3000, mean_interactions=38.0),
    "medium": dict(num_items=50_000, num_users=30_000, mean_interactions=40.0,
                   popularity_exponent=0.9),
}


def shop_config(size: str = "small", **overrides) -> ShopConfig:
  """The config of a named size (`SIZES`), with field overrides."""
  if size not in SIZES:
    raise ValueError(f"unknown shop size {size!r}; known sizes: {', '.join(SIZES)}")
  fields = {f.name for f in dataclasses.fields(ShopConfig)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f"unknown ShopConfig fields: {', '.join(unknown)}; "
                     f"known: {', '.join(sorted(fields))}")
  return ShopConfig(**{**SIZES[size], **overrides})


@dataclasses.dataclass
class Shop:
  """A generated shop with its ground truth."""

  catalog: Catalog
  interactions: Interactions  # sorted by (timestamp, user, item)
  is_new: np.ndarray  # bool [N], released in the last `new_item_window` of the window
  release_time: np.ndarray  # int64 [N], seconds (same clock as the timestamps)
  user_prefs: dict[str, np.ndarray]  # attribute name -> float32 [U, V], see `affinity`
  config: ShopConfig

  @property
  def num_users(self) -> int:
    return self.config.num_users

  def affinity(self, users=None, items=None) -> np.ndarray:
    """True affinity float32 [U', N'] of this shop's users and items."""
    return affinity(self.user_prefs, self.catalog.attributes, users, items)


def _release_times(config: ShopConfig, is_new: np.ndarray, window: int,
                   rng: np.random.Generator) -> np.ndarray:
  """Seconds since the window start: most old items are on sale from the start."""
  n = len(is_new)
  old = np.maximum(0.0, rng.uniform(-1.0, 0.6, n))  # ~62% at 0, the rest up to 60%
  late = 1.0 - config.new_item_window * rng.uniform(0.25, 1.0, n)
  return np.floor(np.where(is_new, late, old) * window).astype(np.int64)


def choice_prior(config: ShopConfig) -> np.ndarray:
  """The popularity prior (float32 [N], `shop_behaviour.exposure_prior`) with which
  `generate(config)` drew the interactions, rebuilt from the seed without generating the
  shop (its own random streams, as `generate` draws them)."""
  streams = np.random.SeedSequence(config.seed).spawn(7)
  rng_time, rng_pick = np.random.default_rng(streams[5]), np.random.default_rng(streams[6])
  n, window = config.num_items, config.days * DAY
  is_new = np.zeros(n, bool)
  is_new[rng_time.permutation(n)[:round(config.new_item_share * n)]] = True
  release = _release_times(config, is_new, window, rng_time)
  return shop_behaviour.exposure_prior(rng_pick.permutation(n), release, is_new, window,
                                       config.popularity_exponent, config.new_item_boost)


def generate(config: ShopConfig, progress: bool = False) -> Shop:
  """Generates the shop described by `config` (deterministic in it).

  `progress` shows tqdm bars for the slow parts: drawing the images and
  sampling the interactions.
  """
  streams = np.random.SeedSequence(config.seed).spawn(7)
  rng_attr, rng_img, rng_text, rng_typo, rng_user, rng_time, rng_pick = (
      np.random.default_rng(s) for s in streams)
  n, window = config.num_items, config.days * DAY

  def bar(desc: str, unit: str):
    return (lambda it: tqdm.tqdm(it, desc=desc, unit=unit)) if progress else None

  attributes = shop_vocab.sample_attributes(n, rng_attr)
  images = shop_images.draw_images(attributes, config.image_size, config.image_noise,
                                   rng_img, bar("shop images", "img"))
  titles, descriptions = shop_text.write_texts(attributes, rng_text, rng_typo, config.typo_rate)
  catalog = Catalog(
      item_id=np.array([f"SKU-{i:06d}" for i in range(n)]),
      title=titles, description=descriptions,
      category=np.array([shop_vocab.CATEGORIES[c] for c in attributes["category"]]),
      image=images, attributes=attributes,
      attribute_values={k: list(v) for k, v in shop_vocab.VALUES.items()})

  is_new = np.zeros(n, bool)
  is_new[rng_time.permutation(n)[:round(config.new_item_share * n)]] = True
  release = _release_times(config, is_new, window, rng_time)
  prefs = shop_behaviour.sample_user_prefs(config.num_users, rng_user)
  activity = shop_behaviour.sample_activity(
      config.num_users, config.mean_interactions, config.min_interactions,
      min(config.max_interactions, n // 4), config.activity_sigma, rng_user)
  user, item, time = shop_behaviour.sample_interactions(
      prefs, attributes, activity, release, is_new, window, config.temperature,
      config.popularity_exponent, config.new_item_boost, rng_pick,
      bar("shop interactions", "block"))
  order = np.lexsort((item, user, time))
  interactions = Interactions(user[order], item[order], config.start_time + time[order])
  return Shop(catalog=catalog, interactions=interactions, is_new=is_new,
              release_time=config.start_time + release, user_prefs=prefs, config=config)
