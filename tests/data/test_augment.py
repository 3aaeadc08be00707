"""Image augmentations: shapes, value ranges, determinism, and numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmrec.data import augment


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  return rng.integers(0, 256, (6, 16, 16, 3)).astype(np.uint8)


@pytest.mark.parametrize("fn", [augment.random_resized_crop, augment.random_flip,
                                augment.colour_jitter, augment.gaussian_blur, augment.augment])
def test_shape_range_and_determinism(fn, images):
  fn = jax.jit(fn)
  out = np.asarray(fn(jax.random.key(1), images))
  assert out.shape == images.shape and out.dtype == np.float32
  assert out.min() >= 0.0 and out.max() <= 255.0
  np.testing.assert_array_equal(out, np.asarray(fn(jax.random.key(1), images)))
  assert not np.array_equal(out, np.asarray(fn(jax.random.key(2), images)))


def test_full_crop_is_the_identity(images):
  out = augment.random_resized_crop(jax.random.key(0), images, scale=(1.0, 1.0), ratio=(1.0, 1.0))
  np.testing.assert_allclose(np.asarray(out), images, atol=1e-3)


def test_crop_matches_a_bilinear_reference():
  image = np.arange(8 * 8 * 3, dtype=np.float32).reshape(1, 8, 8, 3) % 251
  # scale 1/4 with ratio 1 is a 4x4 box at offsets drawn from the same keys as the crop.
  key = jax.random.key(3)
  out = np.asarray(augment.random_resized_crop(key, image, scale=(0.25, 0.25), ratio=(1, 1)))[0]
  u = np.asarray(jax.random.uniform(key, (1, 4)))[0]  # the crop's draws: area, ratio, top, left
  top, left = 4 * u[2], 4 * u[3]
  coords = (np.arange(8) + 0.5) * 0.5 - 0.5
  expected = np.zeros((8, 8, 3))
  for i, y in enumerate(top + coords):
    for j, x in enumerate(left + coords):
      y0, x0 = int(np.floor(y)), int(np.floor(x))
      fy, fx = y - y0, x - x0
      pix = lambda r, c: image[0, min(max(r, 0), 7), min(max(c, 0), 7)]
      expected[i, j] = ((1 - fy) * (1 - fx) * pix(y0, x0) + (1 - fy) * fx * pix(y0, x0 + 1)
                        + fy * (1 - fx) * pix(y0 + 1, x0) + fy * fx * pix(y0 + 1, x0 + 1))
  np.testing.assert_allclose(out, expected, atol=1e-3)


def test_flip_mirrors_or_keeps_each_image(images):
  out = np.asarray(augment.random_flip(jax.random.key(5), images))
  flipped = [np.array_equal(o, im[:, ::-1]) for o, im in zip(out, images)]
  kept = [np.array_equal(o, im) for o, im in zip(out, images)]
  assert all(f or k for f, k in zip(flipped, kept)) and any(flipped)


def test_blur_matches_separable_gaussian_reference(images):
  sigma = 0.8
  out = np.asarray(augment.gaussian_blur(jax.random.key(0), images, prob=1.0,
                                         sigma=(sigma, sigma), radius=3))
  taps = np.exp(-0.5 * (np.arange(-3, 4) / sigma) ** 2)
  taps /= taps.sum()
  x = images.astype(np.float64)
  for axis in (1, 2):
    pad = [(0, 0)] * 4
    pad[axis] = (3, 3)
    padded = np.pad(x, pad, mode="edge")
    x = sum(t * np.take(padded, np.arange(k, k + 16), axis=axis) for k, t in enumerate(taps))
  np.testing.assert_allclose(out, x, atol=1e-3)


def test_colour_jitter_keeps_the_colour_recognisable():
  """Solid product colours stay nearest to their own colour among the shop's palette."""
  from mmrec.data.shop.vocab import COLOUR_RGB
  palette = np.array(list(COLOUR_RGB.values()), np.float32)
  chroma = palette - palette.mean(1, keepdims=True)
  strong = np.abs(chroma).max(1) > 60  # clearly chromatic colours (not black/white/grey/beige)
  solid = np.broadcast_to(palette[strong][:, None, None, :], (strong.sum(), 4, 4, 3))
  for seed in range(5):
    out = np.asarray(augment.colour_jitter(jax.random.key(seed), solid, prob=1.0))[:, 0, 0]
    # The hue (direction of the chroma) barely turns: cosine with the original stays high.
    a = out - out.mean(1, keepdims=True)
    b = chroma[strong]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.9, cos


def test_augment_rejects_images_without_channels():
  with pytest.raises(ValueError, match="B, H, W, 3"):
    augment.augment(jax.random.key(0), jnp.zeros((2, 8, 8)))
