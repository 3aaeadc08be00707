"""Image augmentations in JAX for contrastive pretraining, per image and deterministic per key.

Every function takes `images` [B, S, S, 3] with values in [0, 255] (uint8 or
float) and returns float32 [B, S, S, 3] in [0, 255]. The colour jitter is mild
and has no grey-scale step: the product's colour is an attribute the encoders
must keep, so two views of a red dress stay red (SimCLR's strong jitter and
random grey-scale would teach the encoder to ignore colour).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# RGB <-> YIQ: a rotation of the I/Q plane shifts the hue and keeps the luma Y.
_RGB_TO_YIQ = jnp.array([[0.299, 0.587, 0.114],
                         [0.596, -0.274, -0.322],
                         [0.211, -0.523, 0.312]], jnp.float32)
_YIQ_TO_RGB = jnp.linalg.inv(_RGB_TO_YIQ)
_LUMA = jnp.array([0.299, 0.587, 0.114], jnp.float32)


def _as_float(images: jax.Array) -> jax.Array:
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [B, H, W, 3], got shape {images.shape}")
  return images.astype(jnp.float32)


def random_resized_crop(key: jax.Array, images: jax.Array, *,
                        scale: Sequence[float] = (0.35, 1.0),
                        ratio: Sequence[float] = (3 / 4, 4 / 3)) -> jax.Array:
  """A random box of `scale` of the area and `ratio` aspect, resized back (bilinear)."""
  images = _as_float(images)
  return _crop(_uniforms(key, images, 4), images, scale, ratio)


def _uniforms(key: jax.Array, images: jax.Array, n: int) -> jax.Array:
  # One draw per call: each jax.random call compiles its own generator, which is slow on CPU.
  return jax.random.uniform(key, (images.shape[0], n))


def _between(u: jax.Array, low: float, high: float) -> jax.Array:
  return low + u * (high - low)


def _crop(u: jax.Array, images: jax.Array, scale: Sequence[float],
          ratio: Sequence[float]) -> jax.Array:
  _, h, w, _ = images.shape
  area = _between(u[:, 0], *scale)
  aspect = jnp.exp(_between(u[:, 1], np.log(ratio[0]), np.log(ratio[1])))
  box_w = jnp.minimum(w * jnp.sqrt(area * aspect), w)
  box_h = jnp.minimum(h * jnp.sqrt(area / aspect), h)
  top = u[:, 2] * (h - box_h)
  left = u[:, 3] * (w - box_w)
  rows = _bilinear_matrix(top, box_h, h)  # [B, h, h]
  cols = _bilinear_matrix(left, box_w, w)  # [B, w, w]
  out = jnp.einsum("bip,bjq,bpqc->bijc", rows, cols, images, precision="highest")
  return jnp.clip(out, 0.0, 255.0)


def _bilinear_matrix(start: jax.Array, length: jax.Array, size: int) -> jax.Array:
  """[B, size, size] weights resampling [start, start + length) of an axis to `size` pixels.

  Bilinear interpolation is linear and separable, so a crop-and-resize is two
  small matrix products (cheaper to compile and run than a gather);
  coordinates past the border take the edge pixel.
  """
  centres = (jnp.arange(size) + 0.5) / size  # output pixel centres in [0, 1]
  coords = start[:, None] + centres[None, :] * length[:, None] - 0.5  # [B, size]
  coords = jnp.clip(coords, 0.0, size - 1.0)
  return jnp.maximum(0.0, 1.0 - jnp.abs(coords[:, :, None] - jnp.arange(size)[None, None, :]))


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
  """Mirrors each image left-right with probability 1/2."""
  images = _as_float(images)
  return _flip(_uniforms(key, images, 1), images)


def _flip(u: jax.Array, images: jax.Array) -> jax.Array:
  return jnp.where(u[:, 0, None, None, None] < 0.5, images[:, :, ::-1], images)


def colour_jitter(key: jax.Array, images: jax.Array, *, prob: float = 0.8,
                  brightness: float = 0.25, contrast: float = 0.25, saturation: float = 0.25,
                  hue: float = 0.02) -> jax.Array:
  """With probability `prob`, random brightness, contrast, saturation and hue changes.

  Factors are drawn from [1 - x, 1 + x]; the hue turns by at most `hue` of a full
  circle (0.02: about 7 degrees, so red stays red and blue stays blue).
  """
  images = _as_float(images)
  return _jitter(_uniforms(key, images, 5), images, prob, brightness, contrast, saturation, hue)


def _jitter(u: jax.Array, x: jax.Array, prob: float, brightness: float, contrast: float,
            saturation: float, hue: float) -> jax.Array:
  factor = lambda col, amount: _between(u[:, col, None, None, None], 1 - amount, 1 + amount)
  out = x * factor(1, brightness)
  mean = (out @ _LUMA).mean((1, 2))[:, None, None, None]
  out = (out - mean) * factor(2, contrast) + mean
  grey = (out @ _LUMA)[..., None]
  out = (out - grey) * factor(3, saturation) + grey
  angle = 2 * jnp.pi * _between(u[:, 4], -hue, hue)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  zero, one = jnp.zeros_like(angle), jnp.ones_like(angle)
  rotation = jnp.stack([jnp.stack([one, zero, zero], -1),
                        jnp.stack([zero, cos, -sin], -1),
                        jnp.stack([zero, sin, cos], -1)], -2)  # [B, 3, 3] on (Y, I, Q)
  hue_shift = _YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ  # [B, 3, 3] on RGB
  out = jnp.clip(jnp.einsum("bhwc,bdc->bhwd", out, hue_shift, precision="highest"), 0.0, 255.0)
  return jnp.where(u[:, 0, None, None, None] < prob, out, x)


def gaussian_blur(key: jax.Array, images: jax.Array, *, prob: float = 0.5,
                  sigma: Sequence[float] = (0.1, 1.2), radius: int = 3) -> jax.Array:
  """With probability `prob`, a separable Gaussian blur of random std `sigma` (pixels)."""
  images = _as_float(images)
  return _blur(_uniforms(key, images, 2), images, prob, sigma, radius)


def _blur(u: jax.Array, x: jax.Array, prob: float, sigma: Sequence[float],
          radius: int) -> jax.Array:
  s = _between(u[:, 1, None], *sigma)
  weights = jnp.exp(-0.5 * (jnp.arange(-radius, radius + 1, dtype=jnp.float32) / s) ** 2)
  weights = weights / weights.sum(-1, keepdims=True)  # [B, 2r+1]
  h, w = x.shape[1:3]
  out = jnp.einsum("bip,bjq,bpqc->bijc", _blur_matrix(weights, h), _blur_matrix(weights, w), x,
                   precision="highest")
  out = jnp.clip(out, 0.0, 255.0)
  return jnp.where(u[:, 0, None, None, None] < prob, out, x)


def _blur_matrix(weights: jax.Array, size: int) -> jax.Array:
  """[B, size, size]: row i sums the taps around pixel i, edge pixels repeated past the border."""
  radius = weights.shape[1] // 2
  taps = np.clip(np.arange(size)[:, None] + np.arange(-radius, radius + 1)[None, :], 0, size - 1)
  onehot = np.eye(size, dtype=np.float32)[taps]  # [size, taps, size]
  return jnp.einsum("bk,ikp->bip", weights, onehot, precision="highest")


def augment(key: jax.Array, images: jax.Array, *, crop_scale: Sequence[float] = (0.35, 1.0),
            flip: bool = True, jitter_prob: float = 0.8, brightness: float = 0.25,
            contrast: float = 0.25, saturation: float = 0.25, hue: float = 0.02,
            blur_prob: float = 0.5, blur_sigma: Sequence[float] = (0.1, 1.2)) -> jax.Array:
  """One random view: crop and resize, flip, colour jitter, blur (float32 in [0, 255])."""
  x = _as_float(images)
  u = _uniforms(key, x, 12)
  x = _crop(u[:, 0:4], x, crop_scale, (3 / 4, 4 / 3))
  if flip:
    x = _flip(u[:, 4:5], x)
  x = _jitter(u[:, 5:10], x, jitter_prob, brightness, contrast, saturation, hue)
  return _blur(u[:, 10:12], x, blur_prob, blur_sigma, 3)
