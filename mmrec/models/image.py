"""Image encoder: a small strided CNN with global average pooling.

Cheap enough to train from pixels on a laptop CPU; colour, pattern and shape
(what the product image carries) are low-level features a CNN picks up fast.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class ImageEncoder(nnx.Module):
  def __init__(self, channels: Sequence[int], *, rngs: nnx.Rngs):
    widths = (3, *channels)
    self.convs = nnx.List([nnx.Conv(a, b, (3, 3), strides=2, rngs=rngs)
                           for a, b in zip(widths[:-1], widths[1:])])
    self.norms = nnx.List([nnx.GroupNorm(b, num_groups=min(8, b), rngs=rngs) for b in channels])
    self.width = widths[-1]

  def __call__(self, image: jax.Array) -> jax.Array:
    """image: uint8 [B, S, S, 3] -> [B, C]."""
    x = image.astype(jnp.float32) / 127.5 - 1.0
    for conv, norm in zip(self.convs, self.norms):
      x = jax.nn.gelu(norm(conv(x)))
    # Mean and max pooling: the mean keeps colour, the max keeps small motifs (dots).
    return jnp.concatenate([x.mean((1, 2)), x.max((1, 2))], axis=-1)

  @property
  def out_features(self) -> int:
    return 2 * self.width
