"""The Transformer encoder stack shared by the text encoder and the user tower.

Defaults are pre-LayerNorm with a final LayerNorm and tanh-approximated GELU;
`norm_first=False`, `gelu_approximate=False`, `layer_norm_eps=1e-12` give the
post-LayerNorm BERT layout (no final LayerNorm), so BERT weights load as they are.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class Block(nnx.Module):
  """Self-attention + MLP, LayerNorm before (pre-LN) or after (post-LN, BERT) each residual."""

  def __init__(self, width: int, heads: int, mlp_dim: int, *, norm_first: bool = True,
               gelu_approximate: bool = True, layer_norm_eps: float = 1e-6, rngs: nnx.Rngs):
    if width % heads:
      raise ValueError(f"width={width} is not divisible by heads={heads}")
    self.norm_first, self.gelu_approximate = norm_first, gelu_approximate
    self.norm1 = nnx.LayerNorm(width, epsilon=layer_norm_eps, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(heads, width, decode=False, rngs=rngs)
    self.norm2 = nnx.LayerNorm(width, epsilon=layer_norm_eps, rngs=rngs)
    self.mlp_in = nnx.Linear(width, mlp_dim, rngs=rngs)
    self.mlp_out = nnx.Linear(mlp_dim, width, rngs=rngs)

  def mlp(self, x: jax.Array) -> jax.Array:
    return self.mlp_out(jax.nn.gelu(self.mlp_in(x), approximate=self.gelu_approximate))

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    """x: [B, T, W]; mask: bool [B, T], true on real tokens."""
    attn_mask = mask[:, None, None, :]  # [B, 1, 1, T]: every query sees the real keys
    if self.norm_first:
      x = x + self.attn(self.norm1(x), mask=attn_mask)
      return x + self.mlp(self.norm2(x))
    x = self.norm1(x + self.attn(x, mask=attn_mask))
    return self.norm2(x + self.mlp(x))


class Encoder(nnx.Module):
  """`layers` blocks; pre-LN stacks end with a LayerNorm (`norm`), post-LN ones do not."""

  def __init__(self, width: int, layers: int, heads: int, mlp_dim: int, *, norm_first: bool = True,
               gelu_approximate: bool = True, layer_norm_eps: float = 1e-6, rngs: nnx.Rngs):
    self.blocks = nnx.List([
        Block(width, heads, mlp_dim, norm_first=norm_first, gelu_approximate=gelu_approximate,
              layer_norm_eps=layer_norm_eps, rngs=rngs)
        for _ in range(layers)])
    self.norm = nnx.LayerNorm(width, epsilon=layer_norm_eps, rngs=rngs) if norm_first else None

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    for block in self.blocks:
      x = block(x, mask)
    return self.norm(x) if self.norm is not None else x


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean over axis 1 of x [B, T, W] where mask [B, T] is true (zeros when none is)."""
  m = mask[..., None].astype(x.dtype)
  return (x * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
