"""Users of the embedded shop: latent preferences, true affinity, interactions.

A user's preferences are one weight per value of every attribute (float32
[U, V] per attribute name); the true affinity of a (user, item) pair is the sum
over attributes of the user's weight for the item's value. Interactions follow
a choice model mixing that affinity with a long-tailed exposure prior:

  p(i | u) ∝ exp(affinity(u, i) / T) · exposure_i^γ · shelf_i,

with exposure Zipf over a random item permutation and shelf_i the share of the
time window the item is on sale (new items get `new_item_boost` on top, as new
arrivals are featured). Each user draws their items without replacement
(Gumbel top-k) and each interaction a time after the item's release.
"""

from __future__ import annotations

import numpy as np

from mmrec.data.shop import vocab

# Weight of each attribute in the affinity: the largest possible affinity is their sum.
IMPORTANCE = {"category": 1.0, "colour": 0.6, "style": 0.5, "price_tier": 0.5, "brand": 0.4,
              "pattern": 0.3, "material": 0.3}
USER_CHUNK = 256  # users per block when scoring all items


def _k_of_n(rng: np.random.Generator, num_users: int, num_values: int, low: int, high: int,
            probs: np.ndarray | None = None) -> np.ndarray:
  """A 0/1 matrix [U, V] with `low..high` ones per row, drawn without replacement."""
  p = np.full(num_values, 1.0 / num_values) if probs is None else probs
  keys = np.log(p) + rng.gumbel(size=(num_users, num_values))
  k = rng.integers(low, high + 1, num_users)
  rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
  return (rank < k[:, None]).astype(np.float64)


def _dirichlet_peak(rng: np.random.Generator, num_users: int, num_values: int,
                    alpha: float) -> np.ndarray:
  """Dirichlet rows rescaled so that each row's favourite value weighs 1."""
  w = rng.dirichlet(np.full(num_values, alpha), num_users)
  return w / w.max(axis=1, keepdims=True)


def sample_user_prefs(num_users: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Latent preferences: attribute name -> float32 [U, V], already weighted by IMPORTANCE.

  Each user likes 2-4 categories (popular ones more often), has a palette of
  2-4 colours, a favourite style (and a second one at 0.4), a price tier (its
  neighbours at 0.5), 1-3 favourite brands, and soft pattern/material tastes.
  """
  u = num_users
  cat_prior = np.asarray(vocab.CATEGORY_PRIOR) / np.sum(vocab.CATEGORY_PRIOR)
  category = _k_of_n(rng, u, len(vocab.CATEGORIES), 2, 4, cat_prior)
  category *= rng.uniform(0.6, 1.0, category.shape)
  colour_prior = np.asarray(vocab.COLOUR_PRIOR) / np.sum(vocab.COLOUR_PRIOR)
  colour = _k_of_n(rng, u, len(vocab.COLOURS), 2, 4, colour_prior)
  style = 0.4 * _k_of_n(rng, u, len(vocab.STYLES), 2, 2)
  style[np.arange(u), rng.integers(0, len(vocab.STYLES), u)] = 1.0
  tier = rng.choice(len(vocab.PRICE_TIERS), u, p=[0.3, 0.35, 0.22, 0.13])
  gap = np.abs(np.arange(len(vocab.PRICE_TIERS))[None] - tier[:, None])
  price_tier = np.where(gap == 0, 1.0, np.where(gap == 1, 0.5, 0.0))
  brand = _k_of_n(rng, u, len(vocab.BRANDS), 1, 3, vocab.brand_prior())
  prefs = {
      "category": category,
      "colour": colour,
      "pattern": _dirichlet_peak(rng, u, len(vocab.PATTERNS), 0.7),
      "material": _dirichlet_peak(rng, u, len(vocab.MATERIALS), 0.7),
      "style": style,
      "brand": brand,
      "price_tier": price_tier,
  }
  return {name: (IMPORTANCE[name] * prefs[name]).astype(np.float32)
          for name in vocab.ATTRIBUTES}


def affinity(prefs: dict[str, np.ndarray], attributes: dict[str, np.ndarray],
             users: np.ndarray | None = None, items: np.ndarray | None = None) -> np.ndarray:
  """True affinity float32 [U', N'] of the given users (rows) and items (columns).

  Args:
    prefs: user latents as in `Shop.user_prefs` (attribute name -> [U, V]).
    attributes: item attributes as in `Catalog.attributes` (name -> int [N]).
    users, items: optional index arrays selecting rows / columns (default: all).

  Returns:
    sum over the attributes of prefs[name][user, attributes[name][item]]; an
    attribute missing from either dict is skipped.
  """
  names = [n for n in prefs if n in attributes]
  if not names:
    raise ValueError("prefs and attributes share no attribute name")
  first = prefs[names[0]]
  users = np.arange(first.shape[0]) if users is None else np.asarray(users)
  num_items = len(attributes[names[0]])
  items = np.arange(num_items) if items is None else np.asarray(items)
  out = np.zeros((len(users), len(items)), np.float32)
  for name in names:
    out += np.asarray(prefs[name], np.float32)[users][:, np.asarray(attributes[name])[items]]
  return out


def sample_activity(num_users: int, mean: float, minimum: int, maximum: int, sigma: float,
                    rng: np.random.Generator) -> np.ndarray:
  """Interactions per user: `minimum` + a lognormal tail, capped at `maximum` (int64 [U]).

  The lognormal's median is set so the uncapped mean is `mean`.
  """
  mu = np.log(max(mean - minimum, 1e-3)) - sigma**2 / 2
  extra = np.floor(np.exp(mu + sigma * rng.standard_normal(num_users)) + 0.5)
  return np.minimum(minimum + extra.astype(np.int64), maximum)


def exposure_prior(rank: np.ndarray, release: np.ndarray, is_new: np.ndarray, window: int,
                   popularity_exponent: float, new_item_boost: float) -> np.ndarray:
  """log(exposure_i^γ · shelf_i · boost_i), float32 [N]: the choice model's popularity prior,
  from each item's exposure rank (a permutation of the items) and release time."""
  shelf = (window - release) / window
  return (-popularity_exponent * np.log1p(rank) + np.log(shelf)
          + np.where(is_new, np.log(new_item_boost), 0.0)).astype(np.float32)


def sample_interactions(prefs: dict[str, np.ndarray], attributes: dict[str, np.ndarray],
                        activity: np.ndarray, release: np.ndarray, is_new: np.ndarray,
                        window: int, temperature: float, popularity_exponent: float,
                        new_item_boost: float, rng: np.random.Generator, progress=None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(user, item, time) of every interaction, users in order, times in [0, window).

  Args:
    activity: int [U], interactions of each user (each below the item count).
    release: int64 [N], release time of each item in [0, window).
    progress: optionally wraps the range of user blocks (e.g. tqdm).
  """
  num_users, num_items = len(activity), len(release)
  prior = exposure_prior(rng.permutation(num_items), release, is_new, window,
                         popularity_exponent, new_item_boost)
  users, items = [], []
  starts = range(0, num_users, USER_CHUNK)
  for start in starts if progress is None else progress(starts):
    block = np.arange(start, min(start + USER_CHUNK, num_users))
    keys = affinity(prefs, attributes, users=block) / temperature + prior
    keys += rng.gumbel(size=keys.shape).astype(np.float32)
    k_max = int(activity[block].max())
    top = np.argpartition(-keys, k_max - 1, axis=1)[:, :k_max]
    order = np.argsort(-np.take_along_axis(keys, top, 1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, 1)
    keep = np.arange(k_max)[None] < activity[block, None]
    users.append(np.broadcast_to(block[:, None], top.shape)[keep])
    items.append(top[keep])
  user, item = np.concatenate(users), np.concatenate(items)
  time = release[item] + np.floor(rng.random(len(item)) * (window - release[item]))
  return user, item, time.astype(np.int64)
