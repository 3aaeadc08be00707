"""Product photos of the embedded shop, drawn with Pillow.

Each image is a category silhouette filled with the item colour, its pattern
drawn inside in a lighter or darker shade of that colour, on a neutral
background, with jitter in position, scale, rotation, background tone and pixel
noise. Only category, colour and pattern are visible. Shapes live in a
normalised frame (x right, y down, within [-1, 1]); they are drawn at twice the
target size and box-downsampled, which anti-aliases the edges.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from mmrec.data.shop import vocab

Shape = list[tuple[np.ndarray, bool]]  # polygons in drawing order; False cuts a hole


def _mirror(left: list[tuple[float, float]]) -> np.ndarray:
  """A left-right symmetric polygon from its left half (top centre to bottom centre)."""
  right = [(-x, y) for x, y in reversed(left)]
  return np.array(left + right, np.float64)


def _ellipse(cx: float, cy: float, rx: float, ry: float, start: float = 0.0,
             stop: float = 2 * np.pi, n: int = 24) -> np.ndarray:
  t = np.linspace(start, stop, n)
  return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], -1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
  return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64)


def _scarf() -> Shape:
  shape = [(_ellipse(0, -0.55, 0.42, 0.32), True), (_ellipse(0, -0.55, 0.25, 0.17), False),
           (np.array([(-0.36, -0.45), (-0.1, -0.45), (0.0, 0.7), (-0.26, 0.72)]), True),
           (np.array([(0.12, -0.4), (0.36, -0.45), (0.42, 0.55), (0.18, 0.58)]), True)]
  for x0, y0 in ((-0.27, 0.7), (0.17, 0.55)):  # fringes below both tails
    shape += [(_rect(x0 + k * 0.075, y0, x0 + k * 0.075 + 0.035, y0 + 0.2), True)
              for k in range(4)]
  return shape


SHAPES: dict[str, Shape] = {
    "t-shirt": [(_mirror([(0, -0.62), (-0.22, -0.8), (-0.55, -0.72), (-0.95, -0.32),
                          (-0.72, -0.1), (-0.5, -0.3), (-0.5, 0.85), (0, 0.85)]), True)],
    "shirt": [(_mirror([(0, -0.55), (-0.18, -0.86), (-0.48, -0.78), (-0.74, -0.45),
                        (-0.9, 0.55), (-0.68, 0.6), (-0.5, -0.15), (-0.46, 0.9),
                        (0, 0.9)]), True)],
    "dress": [(_mirror([(0, -0.7), (-0.12, -0.72), (-0.15, -0.95), (-0.23, -0.95),
                        (-0.32, -0.6), (-0.24, -0.15), (-0.8, 0.92), (0, 0.92)]), True)],
    "skirt": [(_mirror([(0, -0.6), (-0.42, -0.6), (-0.44, -0.45), (-0.88, 0.6),
                        (0, 0.6)]), True)],
    "trousers": [(_mirror([(0, -0.92), (-0.46, -0.92), (-0.52, 0.95), (-0.12, 0.95),
                           (0, -0.2)]), True)],
    "jacket": [(_mirror([(0, -0.96), (-0.3, -0.9), (-0.38, -0.68), (-0.64, -0.6),
                         (-0.9, -0.2), (-0.98, 0.7), (-0.74, 0.72), (-0.62, -0.05),
                         (-0.62, 0.85), (0, 0.85)]), True),
               (_ellipse(0, -0.72, 0.17, 0.15), False), (_rect(-0.04, -0.57, 0.04, 0.86), False)],
    "shoes": [(np.array([(-0.95, 0.45), (-0.96, 0.25), (-0.8, 0.1), (-0.4, 0.0), (0.05, -0.25),
                         (0.3, -0.4), (0.6, -0.33), (0.9, -0.45), (0.95, 0.2), (0.95, 0.45),
                         (-0.85, 0.5)]), True)],
    "bag": [(_ellipse(0, -0.2, 0.42, 0.62), True), (_ellipse(0, -0.2, 0.29, 0.49), False),
            (np.array([(-0.65, -0.1), (0.65, -0.1), (0.82, 0.85), (-0.82, 0.85)]), True)],
    "hat": [(_ellipse(0, 0.2, 0.52, 0.78, np.pi, 2 * np.pi), True),
            (_ellipse(0, 0.22, 0.95, 0.18), True)],
    "scarf": _scarf(),
}
assert tuple(SHAPES) == vocab.CATEGORIES


def _pattern_shapes(pattern: str, period: float, phase: np.ndarray
                    ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, float]], float]:
  """The pattern in the item frame: (polygons, (dot centre, radius) list, line width).

  Stripes and zigzags come back as polylines to stroke with the returned width.
  """
  ks = np.arange(-int(1.2 / period) - 2, int(1.2 / period) + 3)
  polys, dots, width = [], [], 0.0
  if pattern == "stripes":
    width = 0.45 * period
    polys = [np.array([(-1.3, y), (1.3, y)]) for y in ks * period + phase[0]]
  elif pattern == "zigzag":
    width = 0.22 * period
    xs = np.arange(-1.3, 1.31, period / 2)
    wiggle = np.where(np.arange(len(xs)) % 2 == 0, -period / 4, period / 4)
    polys = [np.stack([xs, y + wiggle], -1) for y in ks * period + phase[0]]
  elif pattern == "checks":
    p = 1.3 * period
    for i in ks:
      for j in ks:
        x, y = i * p + phase[0], j * p + phase[1]
        if (i + j) % 2 == 0 and abs(x) < 1.2 and abs(y) < 1.2:
          polys.append(_rect(x, y, x + p, y + p))
  elif pattern == "dots":
    for i in ks:
      for j in ks:
        x = i * period + phase[0] + (period / 2 if j % 2 else 0.0)
        y = j * period + phase[1]
        if abs(x) < 1.2 and abs(y) < 1.2:
          dots.append((np.array([x, y]), 0.24 * period))
  return polys, dots, width


def _shade(rgb: np.ndarray) -> tuple[int, ...]:
  """The pattern colour: a darker shade of light colours, a lighter one of dark colours."""
  lum = rgb @ np.array([0.299, 0.587, 0.114])
  out = rgb * 0.62 if lum > 110 else rgb + (255 - rgb) * 0.42
  return tuple(int(v) for v in out.round())


def _background(rgb: np.ndarray, grey: float, tint: np.ndarray) -> tuple[int, ...]:
  """A neutral background tone, moved darker when too close to the item colour."""
  bg = grey + tint
  if np.linalg.norm(bg - rgb) < 90:
    bg = bg - 105
  return tuple(int(v) for v in np.clip(bg, 0, 255).round())


def draw_image(category: int, colour: int, pattern: int, size: int, jitter: dict,
               noise: np.ndarray) -> bytes:
  """One PNG; `jitter` holds this item's scalars (see `draw_images`), noise [S, S, 3]."""
  big = 2 * size
  angle = np.deg2rad(jitter["angle"])
  rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  radius = jitter["scale"] * size
  centre = np.array([size + jitter["dx"] * big, size + jitter["dy"] * big])
  flip = np.array([jitter["flip"], 1.0])

  def to_px(points: np.ndarray, turn: np.ndarray = np.eye(2)) -> list[tuple[float, float]]:
    xy = centre + radius * ((points @ turn.T) * flip) @ rot.T
    return [tuple(p) for p in xy]

  mask = Image.new("L", (big, big), 0)
  draw = ImageDraw.Draw(mask)
  for poly, fill in SHAPES[vocab.CATEGORIES[category]]:
    draw.polygon(to_px(poly), fill=255 if fill else 0)

  rgb = np.array(vocab.COLOUR_RGB[vocab.COLOURS[colour]], np.float64)
  fg = Image.new("RGB", (big, big), tuple(int(v) for v in rgb))
  name = vocab.PATTERNS[pattern]
  if name != "plain":
    pdraw, shade = ImageDraw.Draw(fg), _shade(rgb)
    t = np.deg2rad(jitter["pattern_angle"])
    turn = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    polys, dots, width = _pattern_shapes(name, jitter["period"], jitter["phase"])
    for poly in polys:
      if width:
        pdraw.line(to_px(poly, turn), fill=shade, width=max(1, round(width * radius)))
      else:
        pdraw.polygon(to_px(poly, turn), fill=shade)
    for centre_xy, r in dots:
      (x, y), rr = to_px(centre_xy[None], turn)[0], r * radius
      pdraw.ellipse((x - rr, y - rr, x + rr, y + rr), fill=shade)

  bg = Image.new("RGB", (big, big), _background(rgb, jitter["grey"], jitter["tint"]))
  img = Image.composite(fg, bg, mask).reduce(2)
  pixels = np.asarray(img, np.float32) + noise
  img = Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))
  buf = io.BytesIO()
  img.save(buf, format="PNG", compress_level=1)
  return buf.getvalue()


def draw_images(attributes: dict[str, np.ndarray], size: int, noise_std: float,
                rng: np.random.Generator, progress=None) -> list[bytes]:
  """PNG bytes for every item; all jitter comes from `rng`.

  `progress` optionally wraps the item range (e.g. tqdm) to show progress.
  """
  n = len(attributes["category"])
  jitter = {
      "scale": rng.uniform(0.72, 0.9, n),
      "angle": rng.uniform(-15, 15, n),
      "dx": rng.uniform(-0.06, 0.06, n),
      "dy": rng.uniform(-0.06, 0.06, n),
      "flip": rng.choice(np.array([-1.0, 1.0]), n),
      "grey": rng.uniform(165, 245, n),
      "tint": rng.uniform(-10, 10, (n, 3)),
      "period": rng.uniform(0.17, 0.27, n),
      "phase": rng.uniform(0, 0.27, (n, 2)),
      "pattern_angle": rng.choice(np.array([0.0, 90.0, 45.0, -45.0]), n),
  }
  items = range(n) if progress is None else progress(range(n))
  out = []
  for i in items:
    noise = rng.normal(0.0, noise_std, (size, size, 3)).astype(np.float32)
    out.append(draw_image(int(attributes["category"][i]), int(attributes["colour"][i]),
                          int(attributes["pattern"][i]), size,
                          {k: v[i] for k, v in jitter.items()}, noise))
  return out
