"""Tests of the embedded shop against independent numpy references."""

import dataclasses
import io
import math
import re

import numpy as np
import pytest
from PIL import Image

from mmrec.data import shop as shop_lib
from mmrec.data import stats
from mmrec.data.shop import text as shop_text
from mmrec.data.shop import vocab as shop_vocab


@pytest.fixture(scope="module")
def tiny() -> shop_lib.Shop:
  return shop_lib.generate(shop_lib.shop_config("tiny"))


@pytest.fixture(scope="module")
def pixels(tiny) -> np.ndarray:
  return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), np.float64)
                   for b in tiny.catalog.image])


def _foreground(pixels: np.ndarray) -> np.ndarray:
  """bool [N, S, S]: pixels far from the background, estimated from the image border."""
  border = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], 1)
  bg = np.median(border, axis=1)
  return np.linalg.norm(pixels - bg[:, None, None], axis=-1) > 40


def test_same_seed_is_byte_identical_and_seed_matters(tiny):
  again = shop_lib.generate(shop_lib.shop_config("tiny"))
  assert again.catalog.image == tiny.catalog.image
  for column in ("item_id", "title", "description", "category"):
    np.testing.assert_array_equal(getattr(again.catalog, column), getattr(tiny.catalog, column))
  for column in ("user", "item", "timestamp"):
    a, b = getattr(again.interactions, column), getattr(tiny.interactions, column)
    assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
  for name, value in tiny.user_prefs.items():
    assert again.user_prefs[name].tobytes() == value.tobytes()
  assert again.is_new.tobytes() == tiny.is_new.tobytes()

  other = shop_lib.generate(shop_lib.shop_config("tiny", seed=1))
  assert sum(a != b for a, b in zip(other.catalog.image, tiny.catalog.image)) > 250
  assert not np.array_equal(other.catalog.title, tiny.catalog.title)
  assert len(other.interactions) != len(tiny.interactions) or not np.array_equal(
      other.interactions.item, tiny.interactions.item)


def test_catalog_contract(tiny):
  c, n = tiny.catalog, tiny.config.num_items
  assert len(c) == n == len(c.image) == len(tiny.is_new) == len(tiny.release_time)
  assert c.item_id[123] == "SKU-000123" and len(set(c.item_id)) == n
  assert list(c.attributes) == list(shop_lib.ATTRIBUTES)
  sizes = {"category": 10, "colour": 12, "pattern": 4, "material": 6, "style": 3, "brand": 20,
           "price_tier": 4}
  for name, minimum in sizes.items():
    values = c.attribute_values[name]
    assert len(values) >= minimum and len(set(values)) == len(values)
    codes = c.attributes[name]
    assert codes.dtype == np.int32 and codes.shape == (n,)
    assert codes.min() >= 0 and codes.max() < len(values)
  assert c.attribute_values["price_tier"] == ["budget", "mid", "premium", "luxury"]
  np.testing.assert_array_equal(
      c.category, np.array(c.attribute_values["category"])[c.attributes["category"]])
  # Brands are Zipf-ish: the most common brand is far more common than the rarest.
  brands = np.bincount(c.attributes["brand"], minlength=20)
  assert brands.max() >= 4 * max(brands.min(), 1)
  img = Image.open(io.BytesIO(c.image[0]))
  assert img.format == "PNG" and img.mode == "RGB" and img.size == (64, 64)
  assert all(t and d for t, d in zip(c.title, c.description))


def test_image_size_override():
  small = shop_lib.generate(shop_lib.shop_config("tiny", num_items=40, num_users=8,
                                                 image_size=32))
  assert Image.open(io.BytesIO(small.catalog.image[5])).size == (32, 32)


def test_long_tail_in_range(tiny):
  for shop in (tiny, shop_lib.generate(shop_lib.shop_config("small", image_size=16,
                                                            num_users=1500))):
    n = shop.config.num_items
    _, counts = np.unique(shop.interactions.item, return_counts=True)
    counts = np.concatenate([counts, np.zeros(n - len(counts), np.int64)]).astype(np.float64)
    top = np.sort(counts)[::-1][:math.ceil(0.2 * n)].sum() / counts.sum()
    gini = np.abs(counts[:, None] - counts[None, :]).sum() / (2 * n * n * counts.mean())
    assert 0.55 <= top <= 0.8, top
    assert 0.5 <= gini <= 0.8, gini
    report = stats.long_tail_stats(np.bincount(shop.interactions.item, minlength=n))
    assert report["top20_share"] == pytest.approx(top)
    assert report["gini"] == pytest.approx(gini)


def test_interactions_contract(tiny):
  it, cfg = tiny.interactions, tiny.config
  assert 4000 <= len(it) <= 6000
  assert it.user.dtype == np.int32 and it.item.dtype == np.int32
  assert it.timestamp.dtype == np.int64
  assert it.user.min() >= 0 and it.user.max() < cfg.num_users
  assert it.item.min() >= 0 and it.item.max() < cfg.num_items
  window_end = cfg.start_time + cfg.days * shop_lib.DAY
  assert it.timestamp.min() >= cfg.start_time and it.timestamp.max() < window_end
  # Sorted by timestamp, then user.
  key = it.timestamp * cfg.num_users + it.user
  assert np.all(np.diff(key) >= 0)
  # No (user, item) pair twice.
  pairs = it.user.astype(np.int64) * cfg.num_items + it.item
  assert len(np.unique(pairs)) == len(it)
  # Activity: at least ~5 per user, heavy-tailed.
  activity = np.bincount(it.user, minlength=cfg.num_users)
  assert activity.min() >= cfg.min_interactions
  assert activity.max() >= 3 * np.median(activity)


def test_new_items(tiny):
  cfg, it = tiny.config, tiny.interactions
  assert tiny.is_new.dtype == bool
  assert tiny.is_new.sum() == round(cfg.new_item_share * cfg.num_items)
  window = cfg.days * shop_lib.DAY
  late = cfg.start_time + (1 - cfg.new_item_window) * window
  assert np.all(tiny.release_time[tiny.is_new] >= late)
  assert np.all(tiny.release_time[~tiny.is_new] < late)
  assert np.all(it.timestamp >= tiny.release_time[it.item])
  new_hits = tiny.is_new[it.item]
  assert new_hits.sum() > 0.5 * tiny.is_new.sum()  # cold items have evaluation positives
  assert np.all(it.timestamp[new_hits] >= late)


def _affinity_brute(prefs, attributes, users, items) -> np.ndarray:
  out = np.zeros((len(users), len(items)))
  for a, u in enumerate(users):
    for b, i in enumerate(items):
      out[a, b] = sum(prefs[name][u, attributes[name][i]] for name in shop_vocab.ATTRIBUTES)
  return out


def test_affinity_function_and_savez_roundtrip(tiny, tmp_path):
  users, items = np.array([0, 7, 3]), np.array([5, 0, 299, 42])
  expected = _affinity_brute(tiny.user_prefs, tiny.catalog.attributes, users, items)
  got = shop_lib.affinity(tiny.user_prefs, tiny.catalog.attributes, users=users, items=items)
  assert got.dtype == np.float32 and got.shape == (3, 4)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  np.savez(tmp_path / "truth.npz", **tiny.user_prefs)
  with np.load(tmp_path / "truth.npz") as loaded:
    full = shop_lib.affinity(dict(loaded), tiny.catalog.attributes)
  assert full.shape == (tiny.config.num_users, tiny.config.num_items)
  np.testing.assert_array_equal(full[users][:, items], got)


def test_affinity_drives_interactions(tiny):
  aff = tiny.affinity()
  it = tiny.interactions
  interacted = aff[it.user, it.item].mean()
  rng = np.random.default_rng(0)
  random_pairs = aff[rng.integers(0, aff.shape[0], 20000), rng.integers(0, aff.shape[1], 20000)]
  assert interacted > 1.4 * random_pairs.mean()
  assert interacted > np.quantile(random_pairs, 0.8)
  # Tail items still match someone well: best user above the 95th percentile of all pairs.
  counts = np.bincount(it.item, minlength=aff.shape[1])
  tail = np.argsort(counts, kind="stable")[: aff.shape[1] // 2]
  assert (aff[:, tail].max(axis=0) > np.quantile(aff, 0.95)).mean() > 0.8


def test_image_shows_colour(tiny, pixels):
  fg = _foreground(pixels)
  assert np.all(fg.mean(axis=(1, 2)) > 0.1)
  mean = np.stack([p[m].mean(axis=0) for p, m in zip(pixels, fg)])
  palette = np.array([shop_vocab.COLOUR_RGB[c] for c in tiny.catalog.attribute_values["colour"]])
  nearest = np.linalg.norm(mean[:, None] - palette[None], axis=-1).argmin(axis=1)
  assert (nearest == tiny.catalog.attributes["colour"]).mean() > 0.85


def test_image_shows_category(tiny, pixels):
  fg = _foreground(pixels).astype(np.float64)
  size = fg.shape[1]
  masks = fg.reshape(len(fg), 16, size // 16, 16, size // 16).mean(axis=(2, 4)).reshape(len(fg), -1)
  labels = tiny.catalog.attributes["category"]
  train, test = np.arange(0, len(fg), 2), np.arange(1, len(fg), 2)
  centroids = np.stack([masks[train][labels[train] == c].mean(axis=0) for c in range(10)])
  predicted = np.linalg.norm(masks[test][:, None] - centroids[None], axis=-1).argmin(axis=1)
  assert (predicted == labels[test]).mean() > 0.6  # chance is ~0.14


def test_image_shows_pattern(tiny, pixels):
  fg = _foreground(pixels)
  core = fg.copy()  # eroded by one pixel: no edge blending with the background
  core[:, 1:] &= fg[:, :-1]
  core[:, :-1] &= fg[:, 1:]
  core[:, :, 1:] &= fg[:, :, :-1]
  core[:, :, :-1] &= fg[:, :, 1:]
  spread = np.array([p[m].std(axis=0).mean() for p, m in zip(pixels, core)])
  plain = tiny.catalog.attributes["pattern"] == 0
  # Plain items vary only by pixel noise; patterned ones by their second shade.
  assert ((spread > 3 * tiny.config.image_noise) == ~plain).mean() > 0.9


def test_text_carries_attributes(tiny):
  text = [t.lower() for t in tiny.catalog.text()]
  values, attrs = tiny.catalog.attribute_values, tiny.catalog.attributes

  def mentioned(name: str) -> float:
    return np.mean([values[name][v].lower() in t for t, v in zip(text, attrs[name])])

  assert mentioned("brand") > 0.8
  assert mentioned("material") > 0.8
  # Colour is told less often, and often by a synonym ("cobalt").
  synonyms = [shop_text.COLOUR_WORDS[values["colour"][v]] for v in attrs["colour"]]
  colour = np.mean([any(s in t for s in words) for t, words in zip(text, synonyms)])
  assert 0.6 < colour < 0.99


def test_typo_rate():
  clean = shop_lib.generate(shop_lib.shop_config("tiny", typo_rate=0.0))
  noisy = shop_lib.generate(shop_lib.shop_config("tiny"))
  assert clean.catalog.image == noisy.catalog.image
  changed = total = 0
  for a, b in zip(clean.catalog.text(), noisy.catalog.text()):
    tokens = a.split(" ")  # typos never touch spaces, so tokens stay aligned
    eligible = [bool(re.search(r"[A-Za-z]{3}", t)) for t in tokens]
    total += sum(eligible)
    changed += sum(x != y for x, y in zip(tokens, b.split(" ")))
  assert 0.01 < changed / total < 0.03


def test_config_validation():
  assert set(shop_lib.SIZES) >= {"tiny", "small", "medium"}
  cfg = shop_lib.shop_config("small", seed=3, typo_rate=0.0)
  assert (cfg.num_items, cfg.num_users, cfg.seed, cfg.typo_rate) == (5000, 3000, 3, 0.0)
  assert shop_lib.shop_config("medium").num_items == 50_000
  with pytest.raises(ValueError, match="huge"):
    shop_lib.shop_config("huge")
  with pytest.raises(ValueError, match="num_itmes"):
    shop_lib.shop_config("tiny", num_itmes=10)
  with pytest.raises(ValueError, match="new_item_share"):
    shop_lib.shop_config("tiny", new_item_share=1.5)
  with pytest.raises(dataclasses.FrozenInstanceError):
    cfg.seed = 1  # type: ignore[misc]
