"""Latent item attributes of the embedded shop: value names, priors, draws.

Every attribute is an int32 code into `VALUES[name]`. Category, colour and
pattern are drawn in the image; material, style, brand and price tier only
appear in the text.
"""

from __future__ import annotations

import numpy as np

ATTRIBUTES = ("category", "colour", "pattern", "material", "style", "brand", "price_tier")

CATEGORIES = ("t-shirt", "shirt", "dress", "skirt", "trousers", "jacket", "shoes", "bag",
              "hat", "scarf")
CATEGORY_PRIOR = (0.14, 0.11, 0.11, 0.08, 0.12, 0.09, 0.12, 0.09, 0.06, 0.08)

# Well separated in RGB so the colour stays recoverable under pattern and noise.
COLOUR_RGB = {
    "black": (25, 25, 28),
    "white": (245, 245, 240),
    "grey": (128, 128, 128),
    "navy": (25, 40, 115),
    "blue": (40, 110, 215),
    "light blue": (150, 200, 240),
    "red": (205, 30, 35),
    "burgundy": (135, 10, 70),
    "pink": (240, 140, 180),
    "orange": (240, 130, 20),
    "yellow": (245, 215, 40),
    "green": (40, 150, 60),
    "olive": (130, 140, 30),
    "brown": (120, 65, 25),
    "beige": (220, 195, 140),
    "purple": (120, 60, 170),
}
COLOURS = tuple(COLOUR_RGB)
COLOUR_PRIOR = (0.13, 0.11, 0.08, 0.09, 0.08, 0.05, 0.07, 0.04, 0.05, 0.03, 0.03, 0.05, 0.04,
                0.05, 0.06, 0.04)

PATTERNS = ("plain", "stripes", "dots", "checks", "zigzag")
PATTERN_PRIOR = (0.42, 0.2, 0.12, 0.16, 0.1)

MATERIALS = ("cotton", "wool", "linen", "denim", "leather", "silk", "polyester", "cashmere")
# Material weights per category (rows follow CATEGORIES, columns MATERIALS).
MATERIAL_GIVEN_CATEGORY = (
    (8, 0, 2, 0, 0, 1, 3, 0),  # t-shirt
    (7, 1, 4, 2, 0, 3, 1, 0),  # shirt
    (4, 1, 3, 1, 0, 4, 3, 0),  # dress
    (3, 2, 3, 4, 2, 2, 2, 0),  # skirt
    (5, 3, 3, 6, 1, 0, 2, 0),  # trousers
    (1, 4, 1, 4, 5, 0, 4, 1),  # jacket
    (2, 0, 1, 2, 8, 0, 3, 0),  # shoes
    (2, 0, 1, 2, 8, 1, 3, 0),  # bag
    (3, 5, 2, 1, 1, 0, 2, 2),  # hat
    (1, 5, 1, 0, 0, 4, 1, 4),  # scarf
)

STYLES = ("casual", "formal", "sporty", "vintage", "streetwear", "bohemian", "minimalist")
PRICE_TIERS = ("budget", "mid", "premium", "luxury")

BRANDS = ("Norvik", "Alba & Lune", "Quillon", "Maren Row", "Tessaro", "Kiri Kiri", "Ostra",
          "Velden", "Juno Field", "Brume", "Caspian Loom", "Halden", "Pico Mara",
          "Sable & Sons", "Ferro Lane", "Lumo", "Wren Atelier", "Tamsin", "Corvo", "Nilo")
BRAND_ZIPF = 0.9  # brand popularity ~ 1 / rank^BRAND_ZIPF
BRAND_LOYALTY = 0.7  # share of a brand's items in its home style / home price tier

VALUES: dict[str, tuple[str, ...]] = {
    "category": CATEGORIES,
    "colour": COLOURS,
    "pattern": PATTERNS,
    "material": MATERIALS,
    "style": STYLES,
    "brand": BRANDS,
    "price_tier": PRICE_TIERS,
}


def _normalise(weights) -> np.ndarray:
  w = np.asarray(weights, np.float64)
  return w / w.sum(axis=-1, keepdims=True)


def brand_prior() -> np.ndarray:
  """Zipf-ish brand popularity: the first brands carry most of the catalog."""
  return _normalise(1.0 / np.arange(1, len(BRANDS) + 1) ** BRAND_ZIPF)


def brand_homes() -> tuple[np.ndarray, np.ndarray]:
  """Fixed home style and home price tier of every brand (part of the vocabulary)."""
  b = np.arange(len(BRANDS))
  return (b * 3) % len(STYLES), (b * 7 + b // 4) % len(PRICE_TIERS)


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
  """One draw per row of `probs` ([n, V] or [V] broadcast to n by the caller)."""
  cdf = np.cumsum(probs, axis=-1)
  u = rng.random(cdf.shape[:-1] + (1,))
  return np.minimum((u > cdf).sum(-1), probs.shape[-1] - 1)


def _loyal(rng: np.random.Generator, home: np.ndarray, num_values: int) -> np.ndarray:
  """The home value with probability BRAND_LOYALTY, else a uniform value."""
  n = len(home)
  other = rng.integers(0, num_values, n)
  return np.where(rng.random(n) < BRAND_LOYALTY, home, other)


def sample_attributes(num_items: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Draws the latent attributes of `num_items` items: name -> int32 [N]."""
  n = num_items
  category = _categorical(rng, np.broadcast_to(_normalise(CATEGORY_PRIOR), (n, len(CATEGORIES))))
  colour = _categorical(rng, np.broadcast_to(_normalise(COLOUR_PRIOR), (n, len(COLOURS))))
  pattern = _categorical(rng, np.broadcast_to(_normalise(PATTERN_PRIOR), (n, len(PATTERNS))))
  material = _categorical(rng, _normalise(MATERIAL_GIVEN_CATEGORY)[category])
  brand = _categorical(rng, np.broadcast_to(brand_prior(), (n, len(BRANDS))))
  home_style, home_tier = brand_homes()
  style = _loyal(rng, home_style[brand], len(STYLES))
  price_tier = _loyal(rng, home_tier[brand], len(PRICE_TIERS))
  out = dict(category=category, colour=colour, pattern=pattern, material=material, style=style,
             brand=brand, price_tier=price_tier)
  return {name: out[name].astype(np.int32) for name in ATTRIBUTES}
