"""Titles and descriptions of the embedded shop.

Texts come from varied templates with synonyms. Colour and pattern are
sometimes left out; material, brand, style and price tier are mentioned most
of the time. Each synonym of a material contains its name (e.g. "woollen"), so
a substring test finds it. Typos (a swap of two adjacent letters or a dropped
letter) hit a configurable share of the words of three letters or more.
"""

from __future__ import annotations

import re

import numpy as np

from mmrec.data.shop import vocab

CATEGORY_WORDS = {
    "t-shirt": ("t-shirt", "tee", "t shirt", "tshirt", "crew-neck tee"),
    "shirt": ("shirt", "button-down shirt", "button-up", "blouse"),
    "dress": ("dress", "frock", "midi dress", "sundress"),
    "skirt": ("skirt", "a-line skirt", "midi skirt"),
    "trousers": ("trousers", "pants", "slacks", "chinos"),
    "jacket": ("jacket", "hooded jacket", "anorak", "zip-up jacket"),
    "shoes": ("shoes", "sneakers", "loafers", "pair of shoes"),
    "bag": ("bag", "handbag", "tote", "shoulder bag"),
    "hat": ("hat", "bucket hat", "fedora", "sun hat"),
    "scarf": ("scarf", "shawl", "wrap", "neck scarf"),
}
COLOUR_WORDS = {
    "black": ("black", "jet black", "onyx"),
    "white": ("white", "off-white", "ivory"),
    "grey": ("grey", "gray", "charcoal grey"),
    "navy": ("navy", "navy blue", "midnight navy"),
    "blue": ("blue", "royal blue", "cobalt"),
    "light blue": ("light blue", "sky blue", "powder blue"),
    "red": ("red", "scarlet", "cherry red"),
    "burgundy": ("burgundy", "wine", "maroon"),
    "pink": ("pink", "rose", "blush pink"),
    "orange": ("orange", "tangerine", "rust orange"),
    "yellow": ("yellow", "mustard", "lemon"),
    "green": ("green", "emerald", "forest green"),
    "olive": ("olive", "khaki", "olive green"),
    "brown": ("brown", "chocolate", "chestnut"),
    "beige": ("beige", "sand", "camel"),
    "purple": ("purple", "violet", "plum"),
}
PATTERN_WORDS = {  # (adjective, noun phrase) pairs
    "plain": (("plain", "plain finish"), ("solid", "solid colour"),
              ("solid-colour", "clean finish")),
    "stripes": (("striped", "stripe pattern"), ("stripy", "striped pattern"),
                ("pinstriped", "pinstripe pattern")),
    "dots": (("polka-dot", "polka dot pattern"), ("dotted", "dot print"),
             ("spotted", "spot print")),
    "checks": (("checked", "check pattern"), ("plaid", "plaid pattern"),
               ("gingham", "gingham check")),
    "zigzag": (("zigzag", "zigzag pattern"), ("chevron", "chevron print"),
               ("zig-zag", "zig-zag pattern")),
}
MATERIAL_WORDS = {
    "cotton": ("cotton", "organic cotton", "pure cotton"),
    "wool": ("wool", "merino wool", "woollen"),
    "linen": ("linen", "washed linen", "pure linen"),
    "denim": ("denim", "stretch denim", "raw denim"),
    "leather": ("leather", "genuine leather", "full-grain leather"),
    "silk": ("silk", "pure silk", "mulberry silk"),
    "polyester": ("polyester", "recycled polyester", "polyester blend"),
    "cashmere": ("cashmere", "soft cashmere", "pure cashmere"),
}
STYLE_WORDS = {
    "casual": ("casual", "relaxed", "everyday"), "formal": ("formal", "elegant", "tailored"),
    "sporty": ("sporty", "athletic", "active"), "vintage": ("vintage", "retro", "heritage"),
    "streetwear": ("streetwear", "urban", "street-style"),
    "bohemian": ("bohemian", "boho", "free-spirited"),
    "minimalist": ("minimalist", "clean-lined", "understated"),
}
PRICE_SENTENCES = {
    "budget": ("Great value for money.", "An affordable everyday pick.", "Budget-friendly price."),
    "mid": ("Good quality at a fair price.", "Well made and fairly priced.",
            "Mid-range quality you can rely on."),
    "premium": ("Premium finish and details.", "A premium piece built to last.",
                "High-end craftsmanship."),
    "luxury": ("A luxury piece for special occasions.", "Luxurious designer quality.",
               "Exclusive luxury craftsmanship."),
}
TITLES = (
    "{brand} {colour} {pattern} {category}",
    "{colour} {material} {category}",
    "{style} {pattern} {category} by {brand}",
    "{brand} {category} in {colour}",
    "{material} {category} - {brand}",
    "The {style} {category}",
    "{pattern} {colour} {category}",
)
EXTRAS = ("Fits true to size.", "Free returns within 30 days.", "A wardrobe staple.",
          "Pairs well with anything.", "Easy care.", "Limited stock.", "New season favourite.")


def _an(phrase: str) -> str:
  """The phrase with its indefinite article."""
  return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


class _Dice:
  """Draws for one item, read in order from a fixed row of uniforms."""

  def __init__(self, row: np.ndarray):
    self._it = iter(row.tolist())

  def uniform(self) -> float:
    return next(self._it)

  def chance(self, p: float) -> bool:
    return next(self._it) < p

  def pick(self, options):
    return options[int(next(self._it) * len(options))]


def _item_text(attrs: dict[str, str], dice: _Dice) -> tuple[str, str]:
  """A (title, description) pair of one item from its attribute value names."""
  words = {
      "category": dice.pick(CATEGORY_WORDS[attrs["category"]]),
      "colour": dice.pick(COLOUR_WORDS[attrs["colour"]]),
      "material": dice.pick(MATERIAL_WORDS[attrs["material"]]),
      "style": dice.pick(STYLE_WORDS[attrs["style"]]),
      "brand": attrs["brand"],
  }
  pattern_adj, pattern_noun = dice.pick(PATTERN_WORDS[attrs["pattern"]])
  words["pattern"] = "" if attrs["pattern"] == "plain" and dice.chance(0.6) else pattern_adj
  template = dice.pick(TITLES)
  title = re.sub(r"\s+", " ", template.format(**words)).strip()
  title = title[0].upper() + title[1:]

  sentences = []
  colour, category = words["colour"], words["category"]
  show_colour, show_pattern = dice.chance(0.8), dice.chance(0.7)
  if show_colour and show_pattern:
    sentences.append(dice.pick((f"{_an(pattern_adj).capitalize()} {category} in {colour}.",
                                f"Comes in {colour} with {_an(pattern_noun)}.",
                                f"{colour.capitalize()}, {pattern_adj} design.")))
  elif show_colour:
    sentences.append(dice.pick((f"Available in {colour}.", f"Colour: {colour}.")))
  elif show_pattern:
    sentences.append(f"Features {_an(pattern_noun)}.")
  if dice.chance(0.9):
    material = dice.pick(MATERIAL_WORDS[attrs["material"]])
    sentences.append(dice.pick((f"Made from {material}.", f"Crafted in {material}.",
                                f"{material.capitalize()} construction.")))
  if dice.chance(0.85):
    style = dice.pick(STYLE_WORDS[attrs["style"]])
    sentences.append(dice.pick((f"Perfect for {_an(style)} look.",
                                f"{_an(style).capitalize()} essential.",
                                f"Designed with {_an(style)} feel.")))
  if "{brand}" not in template or dice.chance(0.3):
    if dice.chance(0.88):
      sentences.append(dice.pick((f"From {attrs['brand']}.", f"Designed by {attrs['brand']}.",
                                  f"By {attrs['brand']}.")))
  if dice.chance(0.8):
    sentences.append(dice.pick(PRICE_SENTENCES[attrs["price_tier"]]))
  if dice.chance(0.5):
    sentences.append(dice.pick(EXTRAS))
  order = np.argsort([dice.uniform() for _ in sentences], kind="stable")
  return title, " ".join(sentences[k] for k in order)


def _typo(word: str, u_kind: float, u_pos: float) -> str:
  """Swaps two adjacent letters (half the time) or drops one letter."""
  if u_kind < 0.5:
    k = int(u_pos * (len(word) - 1))
    return word[:k] + word[k + 1] + word[k] + word[k + 2:]
  k = int(u_pos * len(word))
  return word[:k] + word[k + 1:]


def add_typos(text: str, rate: float, rng: np.random.Generator) -> str:
  """Puts a typo into each word of >= 3 letters with probability `rate`."""
  if rate <= 0:
    return text
  tokens = re.split(r"([A-Za-z]{3,})", text)  # odd positions hold the words
  u = rng.random((len(tokens), 3))
  for k in range(1, len(tokens), 2):
    if u[k, 0] < rate:
      tokens[k] = _typo(tokens[k], u[k, 1], u[k, 2])
  return "".join(tokens)


def write_texts(attributes: dict[str, np.ndarray], rng: np.random.Generator,
                typo_rng: np.random.Generator, typo_rate: float
                ) -> tuple[np.ndarray, np.ndarray]:
  """Titles and descriptions (str [N] each); typos come from their own generator.

  The templates draw from `rng` only, so the typo rate changes nothing else.
  """
  n = len(attributes["category"])
  uniforms = rng.random((n, 48))
  titles, descriptions = [], []
  for i in range(n):
    attrs = {name: vocab.VALUES[name][int(attributes[name][i])]
             for name in vocab.ATTRIBUTES}
    title, description = _item_text(attrs, _Dice(uniforms[i]))
    titles.append(add_typos(title, typo_rate, typo_rng))
    descriptions.append(add_typos(description, typo_rate, typo_rng))
  return np.array(titles), np.array(descriptions)
